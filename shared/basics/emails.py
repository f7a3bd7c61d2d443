"""Customer emails: validated and normalised once, compared case-insensitively (CONTRACT.md)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from shared.basics.errors import ErrorCode, Refused


def normalise_email(raw: str) -> str:
    """The canonical form of an email address, or ``Refused(invalid_email)``.

    Syntax only (no DNS lookup: the service must not depend on the network to
    accept an order); the whole address is lower-cased because the contract compares
    emails case-insensitively.
    """
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise Refused(
            ErrorCode.INVALID_EMAIL, f"{raw!r} is not a valid email address: {exc}"
        ) from exc
    return valid.normalized.lower()
