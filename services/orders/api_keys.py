"""Reseller API keys (CONTRACT.md, Identities): the ``ApiKey`` aggregate. No I/O.

A key is ``xo_<key_id>_<secret>``: the ``key_id`` finds its document, the secret (256
random bits, drawn by the caller) proves it. Only the key's SHA-256 digest is stored,
compared in constant time; the key is shown once, in ``apikey.create``'s reply. A key
acts as its own reseller only, until it is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from pydantic import AwareDatetime

from shared.basics.errors import ErrorCode, Refused
from shared.contracts.api_keys import (
    ApiKeyCreated,
    ApiKeyCreatedResult,
    ApiKeyRevoked,
    ApiKeyStatus,
    ApiKeyView,
)
from shared.runtime.store import Aggregate

KEY_FORMAT = re.compile(r"xo_(ak_[0-9a-f]{24})_([A-Za-z0-9_-]{32,128})")
# Compared against when no key has the presented id: an unknown id costs the same time.
_NO_DIGEST = hashlib.sha256(b"no such key").hexdigest()


def unknown_api_key(key_id: str) -> Refused:
    return Refused(ErrorCode.UNKNOWN_API_KEY, f"no API key {key_id}")


def key_id_for(reseller_id: str, message_id: str) -> str:
    """The key id one ``apikey.create`` message creates: a redelivery creates no second key."""
    return "ak_" + uuid5(NAMESPACE_URL, f"xo-reseller:apikey:{reseller_id}:{message_id}").hex[:24]


def key_id_of(presented: str) -> str | None:
    """The key id of something shaped like an API key; None for anything else (such as
    the internal-system token)."""
    match = KEY_FORMAT.fullmatch(presented)
    return match.group(1) if match else None


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def refuse_unknown_key(presented: str) -> Refused:
    """The answer to a key whose id names no key, after the same comparison a real key gets."""
    hmac.compare_digest(digest_of(presented), _NO_DIGEST)
    return Refused(ErrorCode.UNAUTHORISED, "missing or wrong API key")


class ApiKey(Aggregate):
    """One reseller API key; its id is the document's id."""

    reseller_id: str
    label: str
    digest: str  # SHA-256 of the whole key; never shown
    created_at: AwareDatetime
    created_by: str | None = None  # the broker identity that asked for it
    revoked_at: AwareDatetime | None = None
    revoked_by: str | None = None

    @classmethod
    def issue(
        cls,
        *,
        key_id: str,
        reseller_id: str,
        label: str,
        secret: str,
        now: datetime,
        by: str | None,
    ) -> tuple[ApiKey, ApiKeyCreatedResult]:
        """A new active key, and the reply that shows it, once."""
        key = f"xo_{key_id}_{secret}"
        if key_id_of(key) != key_id:
            raise ValueError("a key id is ak_ and 24 hex digits; a secret is 32+ URL-safe chars")
        api_key = cls(
            id=key_id,
            reseller_id=reseller_id,
            label=label,
            digest=digest_of(key),
            created_at=now,
            created_by=by,
        )
        api_key.record(ApiKeyCreated, at=now, label=label)
        shown = ApiKeyCreatedResult(
            key_id=key_id, reseller_id=reseller_id, label=label, key=key, created_at=now
        )
        return api_key, shown

    @property
    def key_id(self) -> str:
        """The views' name for ``id``."""
        return self.id

    @property
    def status(self) -> ApiKeyStatus:
        return "active" if self.revoked_at is None else "revoked"

    def check_owner(self, reseller_id: str) -> None:
        """A reseller manages its own keys only; another's key id names nothing for it."""
        if reseller_id != self.reseller_id:
            raise unknown_api_key(self.id)

    def revoke(self, *, reseller_id: str, now: datetime, by: str | None) -> None:
        """The key stops working at once; revoking it again changes nothing."""
        self.check_owner(reseller_id)
        if self.revoked_at is not None:
            return
        self.revoked_at = now
        self.revoked_by = by
        self.record(ApiKeyRevoked, at=now)

    def authenticate(self, presented: str, *, acting_for: str | None) -> str:
        """The reseller ``presented`` acts as, or a refusal: a wrong or revoked key is 401,
        a valid key sent for another reseller (``X-Reseller-Id``) is 403."""
        if not hmac.compare_digest(digest_of(presented), self.digest):
            raise Refused(ErrorCode.UNAUTHORISED, "missing or wrong API key")
        if self.revoked_at is not None:
            raise Refused(ErrorCode.UNAUTHORISED, "this API key was revoked")
        if acting_for is not None and acting_for != self.reseller_id:
            raise Refused(
                ErrorCode.FORBIDDEN,
                "an API key acts for its own reseller only: X-Reseller-Id names another",
            )
        return self.reseller_id

    def view(self) -> ApiKeyView:
        return ApiKeyView.model_validate(self, from_attributes=True)

    def event_ids(self) -> dict[str, Any]:
        return {"key_id": self.id, "reseller_id": self.reseller_id}
