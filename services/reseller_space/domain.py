"""The reseller space's own rules: partner accounts, their links, their passwords, and who
of them may sign in. No I/O: hashing a password is the handlers' (argon2id is CPU work run
off the event loop); this module decides with its result. Sign-in limits, sessions and
CSRF tokens are the web faces' shared rules (``shared.runtime.web``); the partner's part
of them is here (``admit_sign_in``, ``Session``).

- A partner account is created by operations (``partner.create``): ``invited`` until its
  password is set through the invitation link, then ``active``; ``disabled`` by operations.
- Links (invitation, password reset) carry a random secret; the account keeps only its
  SHA-256 digest, the kind and the expiry, and one live link at a time: a new link kills
  the previous one, and using a link (once) kills it.
- Sign-in attempts are counted per source, then per account; past the account's limit
  the right password still signs in, so guesses sent from many sources cannot lock the
  real reseller out (``shared.runtime.web`` says how). A disabled partner learns it only
  with its right password.
- Sessions are server-side (``shared.runtime.web``); a partner's session also carries its
  company, its email (personal lines bind to it) and the space it is in, and ends when
  the account is disabled or its password is set again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import AwareDatetime, Field

from shared.basics.attempts import EPOCH
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.base import Space
from shared.contracts.partners import (
    LinkKind,
    PartnerCreated,
    PartnerDisabled,
    PartnerInvited,
    PartnerNotification,
    PartnerStatus,
    PartnerView,
)
from shared.runtime.store import Aggregate
from shared.runtime.web import Attempt, WebSession, admit, digest

PASSWORD_MIN = 12
PASSWORD_MAX = 256  # argon2 hashes any length; a bound keeps one request's work bounded
LINK_PATH = "/set-password/"


def unknown_partner(reseller_id: str) -> Refused:
    return Refused(ErrorCode.UNKNOWN_PARTNER, f"no partner account {reseller_id}")


def invalid_link() -> Refused:
    return Refused(
        ErrorCode.INVALID_LINK,
        "this link is not valid any more (used, replaced by a newer one, or expired); "
        "ask for a new one with “Forgot your password?”",
    )


def check_password_rules(password: str, *, email: str) -> None:
    """A password a person can choose and an attacker cannot guess from the account."""
    if len(password) < PASSWORD_MIN:
        raise Refused(
            ErrorCode.WEAK_PASSWORD, f"choose a password of at least {PASSWORD_MIN} characters"
        )
    if len(password) > PASSWORD_MAX:
        raise Refused(ErrorCode.WEAK_PASSWORD, f"a password has at most {PASSWORD_MAX} characters")
    lowered = password.lower()
    if len(set(password)) < 5 or email.lower() in lowered or email.split("@")[0] in lowered:
        raise Refused(
            ErrorCode.WEAK_PASSWORD,
            "this password is too easy to guess: avoid your email and repeated characters",
        )


@dataclass(frozen=True)
class LinkPolicy:
    base_url: str
    invitation_valid: timedelta = timedelta(hours=72)
    reset_valid: timedelta = timedelta(hours=1)

    def valid_for(self, kind: LinkKind) -> timedelta:
        return self.invitation_valid if kind == "invitation" else self.reset_valid

    def url(self, secret: str) -> str:
        return self.base_url.rstrip("/") + LINK_PATH + secret


class Partner(Aggregate):
    """One partner account (``_id`` = reseller id). ``contact_email`` (normalised) is the
    sign-in email, unique; ``link_digest`` is top-level so a link finds its account by one
    indexed read."""

    company: str = ""
    contact_email: str = ""
    status: PartnerStatus = "invited"
    created_at: AwareDatetime = EPOCH
    password_hash: str | None = None
    password_set_at: AwareDatetime | None = None
    link_digest: str | None = None
    link_kind: LinkKind | None = None
    link_expires_at: AwareDatetime | None = None
    disabled_reason: str | None = None

    @classmethod
    def create(cls, reseller_id: str, *, company: str, email: str, now: datetime) -> Partner:
        partner = cls(id=reseller_id, company=company.strip(), contact_email=email, created_at=now)
        partner.record(PartnerCreated, at=now, company=partner.company, contact_email=email)
        return partner

    def event_ids(self) -> dict[str, Any]:
        return {"reseller_id": self.id}

    def view(self) -> PartnerView:
        return PartnerView(
            reseller_id=self.id,
            company=self.company,
            contact_email=self.contact_email,
            status=self.status,
            created_at=self.created_at,
        )

    # --- links ---------------------------------------------------------------------------

    def issue_link(self, kind: LinkKind, *, secret: str, policy: LinkPolicy, now: datetime) -> str:
        """A new single-use link (the previous one dies); the mailer gets it through
        ``partner.notification``. Returns the link."""
        if self.status == "disabled":
            raise Refused(ErrorCode.PARTNER_DISABLED, f"partner {self.id} is disabled")
        expires_at = now + policy.valid_for(kind)
        self.link_digest = digest(secret)
        self.link_kind = kind
        self.link_expires_at = expires_at
        link = policy.url(secret)
        if kind == "invitation":
            self.record(
                PartnerInvited, at=now, contact_email=self.contact_email, expires_at=expires_at
            )
        self.record(
            PartnerNotification,
            at=now,
            email=self.contact_email,
            kind=kind,
            link=link,
            expires_at=expires_at,
        )
        return link

    def link_usable(self, secret: str, now: datetime) -> bool:
        """The link is this account's live one, unexpired, and the account may sign in."""
        if self.link_digest is None or self.link_expires_at is None:
            return False
        same = hmac.compare_digest(digest(secret), self.link_digest)
        return same and now < self.link_expires_at and self.status != "disabled"

    def set_password(self, secret: str, *, password_hash: str, now: datetime) -> None:
        """Use the link (once): the password is set and the account active."""
        if not self.link_usable(secret, now):
            raise invalid_link()
        self.password_hash = password_hash
        self.password_set_at = now
        self.status = "active"
        self.link_digest = self.link_kind = self.link_expires_at = None

    # --- operations ----------------------------------------------------------------------

    def disable(self, reason: str, now: datetime) -> None:
        if self.status == "disabled":
            return
        self.status = "disabled"
        self.disabled_reason = reason
        self.link_digest = self.link_kind = self.link_expires_at = None
        self.record(PartnerDisabled, at=now, reason=reason)

    def same_account(self, *, company: str, email: str) -> bool:
        return self.company == company.strip() and self.contact_email == email


# --- sign-in and sessions: the partner's part of ``shared.runtime.web`` -------------------


def partner_closed(partner: Partner) -> Refused | None:
    if partner.status == "disabled":
        return Refused(
            ErrorCode.PARTNER_DISABLED, "this partner account is disabled; contact us to reopen it"
        )
    return None


def admit_sign_in(
    *, password_ok: bool, account_wait: int | None, partner: Partner | None
) -> Partner:
    """Once the attempt's source is under its limit and the attempt was counted for the
    account (``account_wait``: ``None`` under the account's limit). The right password
    signs in even past the account's limit; anything else gets ``too_many_attempts`` past
    it and ``invalid_credentials`` under it, the same for an unknown email. A disabled
    partner learns it only with its right password."""
    attempt = Attempt(account=partner, password_ok=password_ok, account_wait=account_wait)
    return admit(attempt, closed=partner_closed)


class Session(WebSession):
    """A partner's signed-in browser."""

    ACCOUNT: ClassVar[str] = "reseller_id"

    reseller_id: str
    company: str = ""
    email: str = Field(default="", description="The partner's email: personal lines bind to it.")
    space: Space = "reseller"


def session_fields(partner: Partner) -> dict[str, str]:
    """What a partner's session keeps of its account."""
    return {
        "reseller_id": partner.id,
        "company": partner.company,
        "email": partner.contact_email,
    }
