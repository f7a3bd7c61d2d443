"""Base classes of the public messages and the reply envelope (CONTRACT.md, Conventions).

Every message class names its routing key and schema version; the registry in
``shared.contracts`` is built from them, and so is the AsyncAPI document.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.basics.errors import ErrorCode

Space = Literal["reseller", "personal"]
Billing = Literal["monthly", "annual"]


class Message(BaseModel):
    """A public message. ``ROUTING_KEY`` is its name on the wire."""

    ROUTING_KEY: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    REGISTRY: ClassVar[dict[str, type[Message]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        key = cls.__dict__.get("ROUTING_KEY")
        if key is not None:
            if key in Message.REGISTRY:
                raise TypeError(f"two messages share the routing key {key!r}")
            Message.REGISTRY[key] = cls


class Command(Message):
    """Something asked of the system. Unknown fields are refused: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    RESULT: ClassVar[type[BaseModel] | None] = None


class Query(Command):
    """A question answered by request/reply only; it changes nothing."""


class Event(Message):
    """A fact that happened. Readers ignore fields they don't know (tolerant reader)."""

    model_config = ConfigDict(extra="ignore")

    occurred_at: AwareDatetime
    correlation_id: str | None = Field(
        default=None, description="The order line's id for everything in that line's workflow."
    )


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str


ResultT = TypeVar("ResultT", bound=BaseModel)


class Reply(BaseModel, Generic[ResultT]):
    """``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {code, message}}``."""

    ok: bool
    result: ResultT | None = None
    error: ErrorBody | None = None


__all__ = ["Billing", "Command", "ErrorBody", "Event", "Message", "Query", "Reply", "Space"]
