"""What the product's web faces share (the reseller space, the operations console):
passwords, sign-in limits, sessions and CSRF tokens. One copy, so both faces keep the
same rules (issue 10's, first written for the reseller space); each face keeps only its
own account (a partner, an operator), its pages and its templates.

- **Passwords**: argon2id (``argon2-cffi``, its RFC 9106 low-memory profile), hashed and
  verified off the event loop (``asyncio.to_thread``: it is CPU work, and a page waiting
  on it must not stall every other request). An unknown account is verified against a
  dummy hash, so it costs the same time as a wrong password.
- **Sign-in limits that an attacker cannot turn against the real user**: attempts are
  counted per source first (an IPv4 address, an IPv6 /64): a source past its limit is
  refused before anything else and counted for no account, so it cannot use up the
  account's attempts. Attempts of sources under their limit are counted for the account;
  past the account's limit a wrong password is refused (``too_many_attempts``) but the
  right one still signs in: the account's limit stops guessing, and guesses sent from
  many sources cannot lock the real user out (the registration lesson of the trust
  issue). Counters are fixed windows from the epoch, one document each, ``$inc``
  upserts: every replica counts against the same number.
- **Sessions** are server-side; the cookie holds a random id (HttpOnly, SameSite=Lax,
  Secure behind TLS), the store only its SHA-256. A session ends when idle too long
  (60 minutes), when too old (12 hours), on sign-out, or when its account is disabled.
- **CSRF**: each session has its own token, compared in constant time on every form
  post; before sign-in, the form's token must match a cookie of its own (login CSRF).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar, Generic, Self, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY
from pydantic import AwareDatetime, BaseModel, ValidationError
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.basics.attempts import source_key
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.runtime.attempts import AttemptCounters
from shared.runtime.logging import get_logger
from shared.runtime.settings import Settings

log = get_logger(__name__)
Document = dict[str, Any]
A = TypeVar("A")
NOBODY = "nobody@invalid.invalid"  # counted and checked like any email, never an account
MAX_TOKEN = 128  # a longer cookie or link secret is nobody's: no digest, no read


def new_token() -> str:
    """256 random bits, URL-safe: session ids, CSRF tokens, link secrets."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """SHA-256 (hex) of a random secret: what is stored of session ids and links."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a submitted token with the expected one (never equal
    when either is missing or empty)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# --- passwords -----------------------------------------------------------------------------


class Passwords:
    """argon2id hashes, computed off the event loop. An unknown account is checked against
    a dummy hash: it costs the same as a wrong password."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
        self.dummy = self.hasher.hash(new_token())

    def hash_blocking(self, password: str) -> str:
        """For scripts (the CLI); a web face awaits ``hash``."""
        return self.hasher.hash(password)

    def verify_blocking(self, password_hash: str | None, password: str) -> bool:
        """For scripts and tests; a web face awaits ``verify``."""
        try:
            ok = self.hasher.verify(password_hash or self.dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and password_hash is not None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hash_blocking, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify_blocking, password_hash, password)


@cache
def _passwords() -> Passwords:
    return Passwords()


def hash_password(password: str) -> str:
    """argon2id, blocking: for scripts (the CLI hashes an operator's password)."""
    return _passwords().hash_blocking(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Blocking; an absent hash (unknown account) costs the same time as a wrong password."""
    return _passwords().verify_blocking(password_hash, password)


# --- sign-in limits ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInLimits:
    window: timedelta = timedelta(minutes=15)
    per_source: int = 20  # attempts from one source, whatever the account
    per_account: int = 10  # attempts for one account, from sources under their limit

    @classmethod
    def of(cls, settings: Settings) -> SignInLimits:
        return cls(
            window=timedelta(seconds=settings.sign_in_window_seconds),
            per_source=settings.sign_in_attempts_per_source,
            per_account=settings.sign_in_attempts_per_account,
        )


def sign_in_name(raw: str) -> str:
    """The email an attempt is counted for: normalised, or ``NOBODY`` when it is not one."""
    try:
        return normalise_email(raw)
    except Refused:
        return NOBODY


def invalid_credentials() -> Refused:
    return Refused(ErrorCode.INVALID_CREDENTIALS, "wrong email or password")


def too_many_attempts(wait: int) -> RateLimited:
    minutes = max(1, math.ceil(wait / 60))
    return RateLimited(
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"too many sign-in attempts; try again in {minutes} minute{'s' if minutes > 1 else ''}",
        retry_after=wait,
    )


@dataclass(frozen=True)
class Attempt(Generic[A]):
    """One counted sign-in attempt of a source under its limit: the account the email
    names (None: nobody's), whether the password is its own, and ``account_wait``
    (``None`` under the account's limit)."""

    account: A | None
    password_ok: bool
    account_wait: int | None


async def attempt_sign_in(
    *,
    email: str,
    password: str,
    source: str,
    find: Callable[[str], Awaitable[A | None]],
    password_hash: Callable[[A], str | None],
    counters: AttemptCounters,
    limits: SignInLimits,
    passwords: Passwords,
    now: datetime,
) -> Attempt[A]:
    """1. counted for the source; past its limit, refused before anything else;
    2. counted for the account, and the password checked (a dummy hash for an unknown
       email). The face then ``admit``s: past the account's limit only the right password
       signs in."""
    source_wait = await counters.wait(
        f"source:{source_key(source)}", limit=limits.per_source, now=now, window=limits.window
    )
    if source_wait is not None:
        log.warning("sign_in_rate_limited", limit="source", source=source)
        raise too_many_attempts(source_wait)
    name = sign_in_name(email)
    account_wait, account = await asyncio.gather(
        counters.wait(f"account:{name}", limit=limits.per_account, now=now, window=limits.window),
        find(name),
    )
    hashed = password_hash(account) if account is not None else None
    password_ok = await passwords.verify(hashed, password)
    if account_wait is not None:
        log.warning("sign_in_rate_limited", limit="account", source=source, admitted=password_ok)
    return Attempt(account=account, password_ok=password_ok, account_wait=account_wait)


def admit(attempt: Attempt[A], *, closed: Callable[[A], Refused | None] = lambda _: None) -> A:
    """The right password signs in even past the account's limit (unless the account is
    ``closed``: its own refusal); anything else gets ``too_many_attempts`` past it and
    ``invalid_credentials`` under it, the same for an unknown email."""
    if attempt.password_ok and attempt.account is not None:
        refusal = closed(attempt.account)
        if refusal is not None:
            raise refusal
        return attempt.account
    if attempt.account_wait is not None:
        raise too_many_attempts(attempt.account_wait)
    raise invalid_credentials()


# --- sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(hours=1)
    longest: timedelta = timedelta(hours=12)
    secure_cookie: bool = False  # set behind TLS

    @classmethod
    def of(cls, settings: Settings) -> SessionPolicy:
        return cls(
            idle=timedelta(minutes=settings.session_idle_minutes),
            longest=timedelta(hours=settings.session_max_hours),
            secure_cookie=settings.session_cookie_secure,
        )

    def cookie_options(self) -> dict[str, Any]:
        """Every cookie of a face (its session, its pre-sign-in form token): HttpOnly,
        SameSite=Lax, Secure behind TLS, gone when the browser closes."""
        return {"httponly": True, "samesite": "lax", "secure": self.secure_cookie, "path": "/"}


class WebSession(BaseModel):
    """A signed-in browser (stored under the digest of its cookie's id, never the id). A
    face's session names its account in the field ``ACCOUNT``."""

    ACCOUNT: ClassVar[str]

    id_digest: str
    csrf_token: str
    created_at: AwareDatetime
    idle_until: AwareDatetime
    expires_at: AwareDatetime

    @classmethod
    def start(
        cls,
        *,
        session_id: str,
        csrf_token: str,
        now: datetime,
        policy: SessionPolicy,
        **account: Any,
    ) -> Self:
        return cls(
            id_digest=digest(session_id),
            csrf_token=csrf_token,
            created_at=now,
            idle_until=now + policy.idle,
            expires_at=now + policy.longest,
            **account,
        )

    @property
    def subject(self) -> str:
        """Who signed in (the account's id)."""
        return str(getattr(self, self.ACCOUNT))

    def alive(self, now: datetime) -> bool:
        return now < self.idle_until and now < self.expires_at

    def touched(self, now: datetime, policy: SessionPolicy) -> datetime | None:
        """The new idle deadline, when it is worth writing (a minute or more later)."""
        wanted = min(now + policy.idle, self.expires_at)
        return wanted if wanted - self.idle_until >= timedelta(minutes=1) else None

    def csrf_ok(self, given: str | None) -> bool:
        return same(given, self.csrf_token)


S = TypeVar("S", bound=WebSession)


class Sessions(Generic[S]):
    """``{_id: <digest of the cookie's id>, <ACCOUNT>, csrf_token, idle_until, expires_at,
    ...}`` in a collection of the face's own database; the id itself is never stored."""

    def __init__(self, collection: AsyncCollection[Document], model: type[S]) -> None:
        self.collection = collection
        self.model = model

    async def create_indexes(self) -> None:
        await self.collection.create_index([(self.model.ACCOUNT, ASCENDING)])
        await self.collection.create_index([("expires_at", ASCENDING)])

    @staticmethod
    def _document(session: WebSession) -> Document:
        doc = session.model_dump(mode="python")
        doc["_id"] = doc.pop("id_digest")
        return doc

    async def open(self, *, now: datetime, policy: SessionPolicy, **account: Any) -> tuple[str, S]:
        """A new session: its id for the cookie (returned once) and what is stored."""
        session_id = new_token()
        session = self.model.start(
            session_id=session_id, csrf_token=new_token(), now=now, policy=policy, **account
        )
        await self.add(session)
        return session_id, session

    async def add(self, session: S) -> None:
        await self.collection.insert_one(self._document(session))

    async def get(self, session_id: str) -> S | None:
        doc = await self.collection.find_one({"_id": digest(session_id)})
        if doc is None:
            return None
        doc["id_digest"] = doc.pop("_id")
        try:
            return self.model.model_validate(doc)
        except ValidationError:  # a session of an older shape: signed out
            await self.collection.delete_one({"_id": doc["id_digest"]})
            return None

    async def live(
        self, session_id: str | None, *, now: datetime, policy: SessionPolicy
    ) -> S | None:
        """The live session a cookie names, its idle deadline moved on; None otherwise."""
        if not session_id or len(session_id) > MAX_TOKEN:
            return None
        session = await self.get(session_id)
        if session is None:
            return None
        if not session.alive(now):
            await self.end(session_id)
            return None
        idle_until = session.touched(now, policy)
        if idle_until is not None:
            await self.update(session, idle_until=idle_until)
        return session

    async def update(self, session: S, **fields: object) -> None:
        """The session with ``fields`` changed, saved whole (a ``$set`` of a datetime comes
        back as text from the embedded server; whole documents keep their types)."""
        changed = session.model_copy(update=fields)
        await self.collection.replace_one({"_id": session.id_digest}, self._document(changed))

    async def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= MAX_TOKEN:
            await self.collection.delete_one({"_id": digest(session_id)})

    async def end_all_of(self, account: str) -> int:
        """End every session of ``account`` (disabled, its password changed)."""
        result = await self.collection.delete_many({self.model.ACCOUNT: account})
        return result.deleted_count

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many(
            {"$or": [{"idle_until": {"$lte": now}}, {"expires_at": {"$lte": now}}]}
        )
        return result.deleted_count


# --- CSRF before sign-in ---------------------------------------------------------------------


def form_token(cookie: str | None) -> str:
    """The pre-sign-in form's token: its cookie's, or a new one (set it with the page)."""
    return cookie if cookie and len(cookie) <= MAX_TOKEN else new_token()


def form_token_ok(cookie: str | None, given: str | None) -> bool:
    """A form posted before sign-in carries the token of its own cookie (login CSRF)."""
    return same(given, cookie)
