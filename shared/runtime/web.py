"""What the product's web faces share (the reseller space, the operations console):
passwords, sessions, CSRF tokens and sign-in limits. One copy, so both faces keep the
same rules.

- **Passwords**: argon2id (``argon2-cffi``, its RFC 9106 low-memory profile); an unknown
  account is verified against a dummy hash, so it costs the same time as a wrong password.
- **Sessions**: a random token in a cookie (HttpOnly, SameSite=Lax, Secure behind TLS);
  only its SHA-256 is stored, with an idle and an absolute expiry. Each session has its
  own CSRF token, compared in constant time on every form.
- **Sign-in limits that an attacker cannot turn against the real user**: failures are
  counted per client address and per (account, client address) over a sliding window,
  never per account alone, so nobody can lock an account out from another address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY
from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.collection import AsyncCollection

Document = dict[str, Any]

_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)  # argon2id
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an absent hash (unknown account) costs the same time."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


class WebSession(BaseModel):
    """A signed-in session; its ``_id`` is the SHA-256 of the cookie's token."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    subject: str = Field(description="Who signed in (an account id).")
    csrf: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime = Field(description="The absolute end, whatever the activity.")


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=60)
    absolute: timedelta = timedelta(hours=12)
    cookie: str = "session"
    secure: bool = False  # set behind TLS

    def cookie_options(self) -> dict[str, Any]:
        return {
            "httponly": True,
            "samesite": "lax",
            "secure": self.secure,
            "path": "/",
            "max_age": int(self.absolute.total_seconds()),
        }


class Sessions:
    """Sessions in a collection of the face's own database."""

    def __init__(self, collection: AsyncCollection[Document], policy: SessionPolicy) -> None:
        self.collection = collection
        self.policy = policy

    async def create_indexes(self) -> None:
        await self.collection.create_index("subject")
        await self.collection.create_index("expires_at")

    async def open(self, subject: str, now: datetime) -> tuple[str, WebSession]:
        """A new session: the cookie's token (returned once) and what is stored."""
        token = new_token()
        session = WebSession(
            id=digest(token),
            subject=subject,
            csrf=new_token(),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.policy.absolute,
        )
        await self.collection.insert_one(session.model_dump(by_alias=True))
        return token, session

    async def find(self, token: str | None, now: datetime) -> WebSession | None:
        """The live session of this cookie token (its idle time restarts), or None."""
        if not token:
            return None
        doc = await self.collection.find_one({"_id": digest(token)})
        if doc is None:
            return None
        session = WebSession.model_validate(doc)
        if now >= session.expires_at or now - session.last_seen_at >= self.policy.idle:
            await self.collection.delete_one({"_id": session.id})
            return None
        if now - session.last_seen_at > timedelta(seconds=30):  # fewer writes
            await self.collection.update_one({"_id": session.id}, {"$set": {"last_seen_at": now}})
        return session

    async def close(self, token: str | None) -> None:
        if token:
            await self.collection.delete_one({"_id": digest(token)})

    async def close_all(self, subject: str) -> int:
        """End every session of ``subject`` (account disabled, password changed)."""
        result = await self.collection.delete_many({"subject": subject})
        return result.deleted_count

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count


@dataclass(frozen=True)
class SignInPolicy:
    window: timedelta = timedelta(minutes=15)
    per_source: int = 20  # failures from one address, whatever the account
    per_account_source: int = 10  # failures for one account from one address


class SignInLimits:
    """Failed sign-ins counted per address and per (account, address), in fixed windows
    of one document each (``$inc`` upserts: the limit holds across processes)."""

    def __init__(self, collection: AsyncCollection[Document], policy: SignInPolicy) -> None:
        self.collection = collection
        self.policy = policy

    async def create_indexes(self) -> None:
        await self.collection.create_index("until")

    def _keys(self, account: str, source: str, now: datetime) -> list[tuple[str, int, datetime]]:
        seconds = max(1, int(self.policy.window.total_seconds()))
        start = int(now.timestamp()) // seconds * seconds
        until = datetime.fromtimestamp(start + seconds, tz=now.tzinfo)
        return [
            (f"s:{source}:{start}", self.policy.per_source, until),
            (f"a:{account}:{source}:{start}", self.policy.per_account_source, until),
        ]

    async def retry_after(self, account: str, source: str, now: datetime) -> int | None:
        """Seconds until this address may try this account again, or None (go ahead)."""
        for key, limit, until in self._keys(account, source, now):
            doc = await self.collection.find_one({"_id": key})
            if doc is not None and doc.get("failures", 0) >= limit:
                return max(1, int((until - now).total_seconds()))
        return None

    async def failed(self, account: str, source: str, now: datetime) -> None:
        for key, _, until in self._keys(account, source, now):
            await self.collection.update_one(
                {"_id": key}, {"$inc": {"failures": 1}, "$set": {"until": until}}, upsert=True
            )

    async def succeeded(self, account: str, source: str, now: datetime) -> None:
        """A right password clears this account's count from this address."""
        _, (key, _, _) = self._keys(account, source, now)
        await self.collection.delete_one({"_id": key})

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many({"until": {"$lte": now}})
        return result.deleted_count
