"""The inbox: idempotency keys bound to their request (CONTRACT.md, Identities).

A consumer claims each message id **before** it applies the message, with the routing
key and a digest of the body. The same id again:
- with the same routing key and body: a resend. A command once answered gets the
  first answer again and nothing is applied; while the first delivery is still in flight
  (or died mid-way) it is applied again, which the aggregates' ``applied_messages`` make
  harmless. An event has no answer to keep, so its record is never completed: a resent
  event is always applied again, and changes nothing twice for the same reason (one
  store write per event consumed, instead of two);
- with another routing key or body: refused with ``idempotency_key_reused``, nothing
  applied (Stripe's rule). Two requests racing with one id cannot both act.

Records are purged after ``INBOX_RETENTION_DAYS``; effects stay exactly-once beyond it
through the aggregates' own ``applied_messages``.

An event route may skip the inbox (``Route(inbox=False)``) when its handler changes one
aggregate, which then keeps each event's digest beside its id (``Aggregate.has_applied``):
a resend changes nothing, an id reused on that aggregate for another event is refused
with ``MessageIdReused``, and the claim's store write is saved. The id is then bound to
its event per aggregate, not per consumer: an id reused for an event about another
aggregate is applied there, once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]


class MessageIdReused(Exception):
    """A message id already applied to another message (routing key or body): refused as
    the inbox refuses it (``idempotency_key_reused``). Raised by a handler whose route has
    no inbox (``Route.inbox=False``), or by an aggregate that keeps digests."""


def body_digest(routing_key: str, body: bytes) -> str:
    """What binds an idempotency key to its request: the routing key and the exact body."""
    return hashlib.sha256(routing_key.encode() + b"\n" + body).hexdigest()


class InboxRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    routing_key: str = ""
    digest: str = ""
    reply: str | None = None
    done: bool = False
    at: datetime

    def same_request(self, routing_key: str, digest: str) -> bool:
        return self.routing_key == routing_key and self.digest == digest


class Inbox:
    """What each consumer has claimed and applied, with the reply it gave."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    @staticmethod
    def _key(consumer: str, message_id: str) -> str:
        return f"{consumer}:{message_id}"

    async def seen(self, consumer: str, message_id: str) -> InboxRecord | None:
        doc = await self.collection.find_one({"_id": self._key(consumer, message_id)})
        return None if doc is None else InboxRecord.model_validate(doc)

    async def create_indexes(self) -> None:
        await self.collection.create_index("at")

    async def claim(
        self, consumer: str, message_id: str, *, routing_key: str, digest: str, at: datetime
    ) -> InboxRecord | None:
        """Claim ``message_id`` for this request (``digest``: ``body_digest`` of its routing
        key and body): None when it is new (go ahead), else the earlier claim (compare it
        with ``same_request``; it may be ``done``)."""
        record = InboxRecord(
            id=self._key(consumer, message_id),
            routing_key=routing_key,
            digest=digest,
            at=at,
        )
        try:
            await self.collection.insert_one(record.model_dump(by_alias=True))
            return None
        except DuplicateKeyError:
            doc = await self.collection.find_one({"_id": record.id})
            if doc is None:  # purged in between: claim again
                return await self.claim(
                    consumer, message_id, routing_key=routing_key, digest=digest, at=at
                )
            return InboxRecord.model_validate(doc)

    async def complete(
        self, consumer: str, message_id: str, *, reply: str | None, at: datetime
    ) -> None:
        """The message was applied (or refused): keep the answer for resends."""
        await self.collection.update_one(
            {"_id": self._key(consumer, message_id)},
            {"$set": {"reply": reply, "done": True, "at": at}},
        )

    async def purge(self, older_than: datetime) -> int:
        """Forget records older than the retention: a resend that late is answered from the
        aggregate's own ``applied_messages`` (effects stay exactly-once), not replayed."""
        result = await self.collection.delete_many({"at": {"$lt": older_than}})
        return result.deleted_count
