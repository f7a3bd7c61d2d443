"""Error codes (one enum) and the domain error that carries them to the edge.

Domain code raises ``Refused(code, message)``; the messaging runtime turns it into
``{"ok": false, "error": {...}}`` or ``command.rejected``, the HTTP edge into a 4xx.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every refusal code the product can answer with (snake_case, stable)."""

    INVALID_MESSAGE = "invalid_message"
    # trust boundary (CONTRACT.md, Identities)
    FORBIDDEN = "forbidden"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # quotes
    UNKNOWN_EDITION = "unknown_edition"
    UNKNOWN_QUOTE = "unknown_quote"
    QUOTE_EXPIRED = "quote_expired"
    QUOTE_ALREADY_USED = "quote_already_used"
    NOT_YOUR_QUOTE = "not_your_quote"
    SPACE_MISMATCH = "space_mismatch"
    # orders
    UNKNOWN_ORDER = "unknown_order"
    NOT_YOUR_ORDER = "not_your_order"
    ORDER_NOT_AWAITING_PROOF = "order_not_awaiting_proof"
    NO_PROOF_SUBMITTED = "no_proof_submitted"
    REJECTION_REASON_REQUIRED = "rejection_reason_required"
    ORDER_NOT_PAID = "order_not_paid"
    ALREADY_BOUND = "already_bound"
    PERSONAL_SPACE_BINDS_ITSELF = "personal_space_binds_itself"
    RESELLER_EMAIL_REQUIRED = "reseller_email_required"
    INVALID_EMAIL = "invalid_email"
    ORDER_NOT_CANCELLABLE = "order_not_cancellable"
    UNSUPPORTED_PROOF_TYPE = "unsupported_proof_type"
    PROOF_TOO_LARGE = "proof_too_large"
    EMPTY_PROOF = "empty_proof"
    INVALID_PROOF = "invalid_proof"
    TOO_MANY_PROOFS = "too_many_proofs"
    NOT_AN_UPGRADE = "not_an_upgrade"
    ORDER_NOT_BOUND = "order_not_bound"
    PLAN_EXPIRED = "plan_expired"
    UPGRADE_IN_PROGRESS = "upgrade_in_progress"
    ORDER_SUPERSEDED = "order_superseded"
    # reseller API keys
    UNKNOWN_API_KEY = "unknown_api_key"
    API_KEY_SHOWN_ONCE = "api_key_shown_once"
    # licensing
    UNKNOWN_CUSTOMER = "unknown_customer"
    INVALID_REGISTRATION = "invalid_registration"
    PLAN_IN_USE = "plan_in_use"
    NO_ACTIVE_PLAN = "no_active_plan"
    INVALID_APPLIANCE_CREDENTIALS = "invalid_appliance_credentials"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    MOVE_LIMIT_REACHED = "move_limit_reached"
    LICENSE_SUSPENDED = "license_suspended"
    # partner accounts (the reseller space)
    UNKNOWN_PARTNER = "unknown_partner"
    PARTNER_EXISTS = "partner_exists"
    EMAIL_IN_USE = "email_in_use"
    PARTNER_DISABLED = "partner_disabled"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_LINK = "invalid_link"
    WEAK_PASSWORD = "weak_password"
    # dead letters kept by every consumer (operations)
    UNKNOWN_DEAD_LETTER = "unknown_dead_letter"
    DEAD_LETTER_SETTLED = "dead_letter_settled"
    # transport
    UNAUTHORISED = "unauthorised"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    BUSY = "busy"
    # HTTP edge: the framework's own errors, in the same envelope
    BAD_REQUEST = "bad_request"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL_ERROR = "internal_error"


class Refused(Exception):
    """A business rule refused a request: an answer, not a failure (never retried)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RateLimited(Refused):
    """A refusal that may be retried after ``retry_after`` seconds (HTTP 429 + ``Retry-After``)."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = max(1, retry_after)


class Conflict(Exception):
    """An optimistic save lost to a concurrent writer; the caller reloads and decides again."""
