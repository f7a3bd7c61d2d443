"""The reseller space's own rules: partner accounts, their links, passwords, sign-in limits,
sessions and CSRF tokens. No I/O: hashing a password is the handlers' (argon2id is CPU
work run off the event loop); this module decides with its result.

- A partner account is created by operations (``partner.create``): ``invited`` until its
  password is set through the invitation link, then ``active``; ``disabled`` by operations.
- Links (invitation, password reset) carry a random secret; the account keeps only its
  SHA-256 digest, the kind and the expiry, and one live link at a time: a new link kills
  the previous one, and using a link (once) kills it.
- Sign-in attempts are counted per source first: a source past its limit is refused
  before anything else and counted for no account, so it cannot use up the account's
  attempts. Attempts of sources under their limit are counted for the account; past the
  account's limit a wrong password is refused (``too_many_attempts``) but the right one
  still signs in: the account's limit stops guessing, and guesses sent from many sources
  cannot lock the real reseller out (the registration lesson of the trust issue).
- Sessions are server-side; the cookie holds a random id, the store its digest. Each
  session has its CSRF token, checked on every form post; a session ends when idle too
  long, when too old, on sign-out, or when the account is disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from shared.basics.errors import ErrorCode, RateLimited, Refused
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

PASSWORD_MIN = 12
PASSWORD_MAX = 256  # argon2 hashes any length; a bound keeps one request's work bounded
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LINK_PATH = "/set-password/"


def digest(secret: str) -> str:
    """SHA-256 (hex) of a random secret: what is stored of links and session ids."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def unknown_partner(reseller_id: str) -> Refused:
    return Refused(ErrorCode.UNKNOWN_PARTNER, f"no partner account {reseller_id}")


def invalid_link() -> Refused:
    return Refused(
        ErrorCode.INVALID_LINK,
        "this link is not valid any more (used, replaced by a newer one, or expired); "
        "ask for a new one with “Forgot your password?”",
    )


def invalid_credentials() -> Refused:
    return Refused(ErrorCode.INVALID_CREDENTIALS, "wrong email or password")


def too_many_attempts(wait: int) -> RateLimited:
    minutes = max(1, math.ceil(wait / 60))
    return RateLimited(
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"too many sign-in attempts; try again in {minutes} minute{'s' if minutes > 1 else ''}",
        retry_after=wait,
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


# --- sign-in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInLimits:
    window: timedelta = timedelta(minutes=15)
    per_source: int = 20
    per_account: int = 10


def window_index(now: datetime, window: timedelta) -> int:
    """Fixed windows of ``window`` counted from the epoch."""
    return (now - EPOCH) // window


def wait_if_over(count: int, *, limit: int, now: datetime, window: timedelta) -> int | None:
    """``None`` if the ``count``-th attempt of this window is within ``limit``, else the
    seconds until the next window opens (``Retry-After``)."""
    if count <= limit:
        return None
    window_end = EPOCH + window * (window_index(now, window) + 1)
    return max(1, math.ceil((window_end - now).total_seconds()))


def admit_sign_in(
    *, password_ok: bool, account_wait: int | None, partner: Partner | None
) -> Partner:
    """Once the attempt's source is under its limit and the attempt was counted for the
    account (``account_wait``: ``None`` under the account's limit). The right password
    signs in even past the account's limit; anything else gets ``too_many_attempts`` past
    it and ``invalid_credentials`` under it, the same for an unknown email."""
    if password_ok and partner is not None:
        if partner.status == "disabled":
            raise Refused(
                ErrorCode.PARTNER_DISABLED,
                "this partner account is disabled; contact us to reopen it",
            )
        return partner
    if account_wait is not None:
        raise too_many_attempts(account_wait)
    raise invalid_credentials()


# --- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(hours=1)
    longest: timedelta = timedelta(hours=12)
    secure_cookie: bool = False


class Session(BaseModel):
    """A signed-in browser (stored under the digest of its cookie's id)."""

    id_digest: str
    reseller_id: str
    company: str = ""
    email: str = Field(default="", description="The partner's email: personal lines bind to it.")
    csrf_token: str
    space: Space = "reseller"
    created_at: AwareDatetime
    idle_until: AwareDatetime
    expires_at: AwareDatetime

    @classmethod
    def open(
        cls,
        *,
        session_id: str,
        partner: Partner,
        csrf_token: str,
        now: datetime,
        policy: SessionPolicy,
    ) -> Session:
        return cls(
            id_digest=digest(session_id),
            reseller_id=partner.id,
            company=partner.company,
            email=partner.contact_email,
            csrf_token=csrf_token,
            created_at=now,
            idle_until=now + policy.idle,
            expires_at=now + policy.longest,
        )

    def alive(self, now: datetime) -> bool:
        return now < self.idle_until and now < self.expires_at

    def touched(self, now: datetime, policy: SessionPolicy) -> datetime | None:
        """The new idle deadline, when it is worth writing (a minute or more later)."""
        wanted = min(now + policy.idle, self.expires_at)
        return wanted if wanted - self.idle_until >= timedelta(minutes=1) else None

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token.encode())
