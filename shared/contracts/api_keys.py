"""Reseller API keys (CONTRACT.md, Identities): the orders HTTP API acts as a key's reseller.

Created and revoked on the broker by ``operations`` (and ``storefront``, for the reseller
space), owned by the orders service. The key itself is in ``apikey.create``'s reply only,
once; orders keeps its SHA-256 digest, and nothing else ever shows the key or its digest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts.base import Command, Event, Query

_RESELLER = Field(min_length=1, max_length=128)
_KEY_ID = Field(min_length=1, max_length=64, pattern=r"^ak_[0-9a-f]{24}$")
# A label is shown to people: printable text only (no control characters).
_LABEL = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")

ApiKeyStatus = Literal["active", "revoked"]


class ApiKeyView(BaseModel):
    """A key as listed: never the key, never its digest."""

    key_id: str
    reseller_id: str
    label: str
    status: ApiKeyStatus
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None = None


class ApiKeyList(BaseModel):
    keys: list[ApiKeyView]


class ApiKeyCreatedResult(BaseModel):
    key_id: str
    reseller_id: str
    label: str
    key: str = Field(
        description=(
            "The key, `xo_<key_id>_<secret>`, shown this once: send it as "
            "`Authorization: Bearer <key>`. Only its digest is kept; a lost key is revoked "
            "and replaced."
        )
    )
    created_at: AwareDatetime


class CreateApiKey(Command):
    """``apikey.create``: a new API key acting as ``reseller_id`` on the orders HTTP API."""

    ROUTING_KEY = "apikey.create"
    RESULT = ApiKeyCreatedResult
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reseller_id": "r-42", "label": "accounting script"}]}
    )

    reseller_id: str = _RESELLER
    label: str = _LABEL


class RevokeApiKey(Command):
    """``apikey.revoke``: the key stops working at once (401); revoking twice changes nothing."""

    ROUTING_KEY = "apikey.revoke"
    RESULT = ApiKeyView

    reseller_id: str = _RESELLER
    key_id: str = _KEY_ID


class ListApiKeys(Query):
    """``apikey.list``: the reseller's keys, newest first, without the keys themselves."""

    ROUTING_KEY = "apikey.list"
    RESULT = ApiKeyList

    reseller_id: str = _RESELLER


class _ApiKeyEvent(Event):
    key_id: str
    reseller_id: str


class ApiKeyCreated(_ApiKeyEvent):
    ROUTING_KEY = "apikey.created"
    label: str


class ApiKeyRevoked(_ApiKeyEvent):
    ROUTING_KEY = "apikey.revoked"
