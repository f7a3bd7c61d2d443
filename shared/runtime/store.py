"""MongoDB storage patterns every service uses (DESIGN.md, Storage).

- One aggregate = one document, saved whole with an optimistic version check.
- The events a change produces travel **in the same document save** (``outbox``);
  the ``OutboxRelay`` publishes them with publisher confirms, then clears them.
- ``applied_messages`` inside the aggregate makes a state change and the record
  that it was applied one atomic write: a redelivered command changes nothing twice.
- The inbox (``shared.runtime.inbox``) binds each message id to its request and keeps
  the reply, so a resent request gets the same answer.

Only single-document operations are used: the embedded server does not isolate
multi-document transactions, and production must not need them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Self, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.basics.errors import Conflict, Refused
from shared.contracts import REGISTRY, Event
from shared.runtime import metrics
from shared.runtime.logging import get_logger

Document = dict[str, Any]
E = TypeVar("E", bound=Event)
log = get_logger(__name__)

APPLIED_MESSAGES_KEPT = 200
SAVE_ATTEMPTS = 100


def connect(url: str) -> AsyncMongoClient[Document]:
    """A client that returns aware UTC datetimes."""
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
    )


def database(
    client: AsyncMongoClient[Document], prefix: str, service: str
) -> AsyncDatabase[Document]:
    """One database per service: a service never reads another's data."""
    return client[f"{prefix}{service}"]


class OutboxEntry(BaseModel):
    """An event waiting to be published, stored inside its aggregate's document."""

    event_id: str
    routing_key: str
    body: str = Field(description="The event's JSON body, exactly as it will be published.")
    correlation_id: str | None
    occurred_at: datetime

    def event(self) -> Event:
        model = REGISTRY[self.routing_key]
        parsed = model.model_validate_json(self.body)
        assert isinstance(parsed, Event)
        return parsed


class Aggregate(BaseModel):
    """Base of every aggregate: identity, version, outbox, applied message ids."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", validate_assignment=False)

    id: str = Field(alias="_id")
    version: int = 0
    outbox: list[OutboxEntry] = Field(default_factory=list)
    applied_messages: list[str] = Field(default_factory=list)

    @classmethod
    def new(cls, aggregate_id: str) -> Self:
        """A new, empty aggregate (``DocumentStore.mutate``'s ``create`` for kinds made on
        first use, like a reseller's credit account or a customer)."""
        return cls(id=aggregate_id)

    def event_ids(self) -> dict[str, Any]:
        """The ids every event of this aggregate carries (``order_id``, ``reseller_id``,
        ``customer_email``, the workflow's ``correlation_id``...): each aggregate says its own.
        An event that has no such field ignores it."""
        return {}

    def record(self, event_type: type[E], *, at: datetime, **fields: Any) -> E:
        """Record a fact; it is published after the save that stores it.

        The one way events are built: ``event_ids()``, ``occurred_at=at``, then ``fields``
        (which may override an id, e.g. the correlation id of another workflow)."""
        event = event_type(**{**self.event_ids(), "occurred_at": at, **fields})
        self.outbox.append(
            OutboxEntry(
                event_id=str(uuid4()),
                routing_key=event.ROUTING_KEY,
                body=event.model_dump_json(),
                correlation_id=event.correlation_id,
                occurred_at=event.occurred_at,
            )
        )
        return event

    def recorded(self) -> list[Event]:
        """The events not yet published (domain tests read them here)."""
        return [entry.event() for entry in self.outbox]

    def has_applied(self, message_id: str | None) -> bool:
        return message_id is not None and message_id in self.applied_messages

    def mark_applied(self, message_id: str | None) -> None:
        if message_id is not None:
            self.applied_messages = [*self.applied_messages, message_id][-APPLIED_MESSAGES_KEPT:]

    def to_document(self) -> Document:
        doc = self.model_dump(by_alias=True, mode="python")
        doc["outbox_pending"] = bool(self.outbox)
        return doc


A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
Unknown = Callable[[str], Refused]


@dataclass(frozen=True)
class Saved(Generic[A, T]):
    """What ``DocumentStore.mutate`` did: the aggregate as saved, and what the change decided
    (``decide``'s return value; ``None`` when the message had been applied before)."""

    aggregate: A
    decision: T | None
    replayed: bool = False


class DocumentStore(Generic[A]):
    """Load and save one kind of aggregate with optimistic concurrency.

    ``unknown`` is the refusal for an id that names nothing (``unknown_order``...): each
    store says it once, instead of every handler."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        model: type[A],
        *,
        unknown: Unknown,
        on_saved: Callable[[], None] = lambda: None,
    ) -> None:
        self.collection = collection
        self.model = model
        self.unknown = unknown
        self._on_saved = on_saved

    async def get(self, aggregate_id: str) -> A | None:
        doc = await self.collection.find_one({"_id": aggregate_id})
        return None if doc is None else self.model.model_validate(doc)

    async def load(self, aggregate_id: str) -> A:
        """The aggregate, or this store's ``unknown`` refusal."""
        aggregate = await self.get(aggregate_id)
        if aggregate is None:
            raise self.unknown(aggregate_id)
        return aggregate

    async def insert(self, aggregate: A) -> bool:
        """Store a new aggregate; False if one with that id exists (the create was a replay)."""
        aggregate.version = 1
        try:
            await self.collection.insert_one(aggregate.to_document())
        except DuplicateKeyError:
            return False
        self._on_saved()
        return True

    async def save(self, aggregate: A) -> None:
        """Replace the document if nobody saved it since we loaded it; else ``Conflict``."""
        expected = aggregate.version
        doc = aggregate.to_document()
        doc["version"] = expected + 1
        result = await self.collection.replace_one({"_id": aggregate.id, "version": expected}, doc)
        if result.matched_count != 1:
            raise Conflict(f"{self.model.__name__} {aggregate.id} changed since version {expected}")
        aggregate.version = expected + 1
        self._on_saved()

    async def mutate(
        self,
        aggregate_id: str,
        decide: Callable[[A], T],
        *,
        message_id: str | None,
        create: Callable[[str], A] | None = None,
    ) -> Saved[A, T]:
        """Load, let the domain decide, save; on a lost race reload and decide again.

        The one load-change-save of every handler. A missing aggregate is built by
        ``create`` (which may also raise a refusal of its own) or refused with this store's
        ``unknown``. A message already applied to this aggregate is not applied again.
        """
        for attempt in range(SAVE_ATTEMPTS):
            aggregate = await self.get(aggregate_id)
            is_new = aggregate is None
            if aggregate is None:
                if create is None:
                    raise self.unknown(aggregate_id)
                aggregate = create(aggregate_id)
            if aggregate.has_applied(message_id):
                return Saved(aggregate, None, replayed=True)
            decision = decide(aggregate)
            aggregate.mark_applied(message_id)
            if is_new:
                if await self.insert(aggregate):
                    return Saved(aggregate, decision)
                continue
            try:
                await self.save(aggregate)
                return Saved(aggregate, decision)
            except Conflict:
                metrics.SAVE_CONFLICTS.labels(self.model.__name__).inc()
                # Jittered back-off: racing writers spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise Conflict(f"{self.model.__name__} {aggregate_id}: too many concurrent writers")


Publish = Callable[[OutboxEntry], Awaitable[None]]


class OutboxRelay:
    """Publishes the events stored in aggregates' outboxes, then clears them.

    Publishes the collections it was told to ``watch`` (a service names them in
    ``Wiring.outboxes``), nothing else. Woken right after each save (low latency) and
    by a periodic poll (recovery after a crash between the save and the publish). A
    publish that fails leaves the entry in place for the next pass: at-least-once, and
    consumers dedupe by ``message_id`` (= ``event_id``).
    """

    def __init__(self, publish: Publish, *, poll_seconds: float = 1.0) -> None:
        self.collections: list[AsyncCollection[Document]] = []
        self.publish = publish
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    async def watch(self, collections: Sequence[AsyncCollection[Document]]) -> None:
        """Publish these collections' outboxes from now on. Each pass and each save's wake-up
        looks for ``outbox_pending``, so that flag is indexed first (idempotent)."""
        for collection in collections:
            await collection.create_index("outbox_pending")
        self.collections = [*self.collections, *collections]

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("outbox_drain_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def drain(self) -> int:
        """Publish every pending event once; returns how many were published."""
        published = 0
        for collection in self.collections:
            async for doc in collection.find({"outbox_pending": True}):
                published += await self._relay(collection, doc)
        return published

    async def _relay(self, collection: AsyncCollection[Document], doc: Document) -> int:
        sent: set[str] = set()
        for raw in doc.get("outbox") or []:
            entry = OutboxEntry.model_validate(raw)
            await self.publish(entry)
            sent.add(entry.event_id)
        if sent:
            await self._clear(collection, doc["_id"], sent)
        return len(sent)

    @staticmethod
    async def _clear(collection: AsyncCollection[Document], doc_id: Any, sent: set[str]) -> None:
        """Remove the published entries with the same versioned save the aggregates use."""
        for _ in range(SAVE_ATTEMPTS):
            current = await collection.find_one({"_id": doc_id})
            if current is None:
                return
            version = current.get("version", 0)
            remaining = [e for e in current.get("outbox") or [] if e["event_id"] not in sent]
            current.update(outbox=remaining, outbox_pending=bool(remaining), version=version + 1)
            result = await collection.replace_one({"_id": doc_id, "version": version}, current)
            if result.matched_count == 1:
                return
        raise Conflict(f"could not clear the outbox of {doc_id}")
