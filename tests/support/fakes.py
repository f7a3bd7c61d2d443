"""In-memory stand-ins for the store and the bus: handler tests without a broker or a database.

- ``MemoryStore`` is a ``DocumentStore`` over a dict. Documents are kept as the real store
  keeps them (``to_document``, read back with ``model_validate``: a handler never holds
  the stored object itself), with the same optimistic version check; ``load`` and
  ``mutate`` are ``DocumentStore``'s own, so a handler test runs the real
  load-decide-save loop with only the database replaced. ``interfere`` plays a concurrent
  writer; ``writes`` lists every write, in order.
- ``FakeBus`` answers ``Bus.call`` from a table (routing key -> an answer, a refusal, or
  a function of the command), records every call, and, as the services' inboxes do,
  answers a message id it has seen with the first answer.
- ``MemoryOrderStore``, ``MemoryLicensingStore``: each service's store over them.

They replace the I/O only. The real-broker tests (tests/integration) stay the proof that
the pieces fit; these make a rule's orchestration readable on its own.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection

from services.licensing.domain.customer import Customer, unknown_customer
from services.licensing.domain.licence_view import LicenceView
from services.licensing.store import LicensingStore
from services.orders.api_keys import ApiKey, unknown_api_key
from services.orders.domain import OrderLine, unknown_order
from services.orders.store import OrderStore
from shared.basics.errors import Conflict, Refused
from shared.contracts import Command, Event
from shared.runtime.attempts import AttemptCounters
from shared.runtime.messaging import Bus
from shared.runtime.store import Aggregate, Document, DocumentStore, OutboxEntry, Unknown

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R", bound=BaseModel)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _NoCollection:
    """What a ``MemoryStore`` has instead of a collection: any use of it is a test error."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(
            f"a MemoryStore has no collection (asked for {name!r}): fake the query that needs it"
        )


class MemoryStore(DocumentStore[A]):
    """A ``DocumentStore`` whose collection is a dict of documents."""

    def __init__(self, model: type[A], *, unknown: Unknown) -> None:
        super().__init__(cast(AsyncCollection[Document], _NoCollection()), model, unknown=unknown)
        self.documents: dict[str, Document] = {}
        self.writes: list[tuple[str, str]] = []  # ("insert" | "save", id), in order
        self._interference: dict[str, list[Callable[[A], object]]] = {}

    def add(self, aggregate: A) -> A:
        """Store ``aggregate`` as it stands (a test's given state); returns it."""
        aggregate.version = max(aggregate.version, 1)
        self.documents[aggregate.id] = aggregate.to_document()
        return aggregate

    def stored(self, aggregate_id: str) -> A:
        """The aggregate as stored now (the test's view, not a handler's)."""
        return self.model.model_validate(copy.deepcopy(self.documents[aggregate_id]))

    def all(self) -> list[A]:
        return [self.stored(aggregate_id) for aggregate_id in self.documents]

    def interfere(self, aggregate_id: str, change: Callable[[A], object]) -> None:
        """Just before the next save of ``aggregate_id``, another writer loads it, applies
        ``change`` and saves first: that save then loses the race, as it would in MongoDB."""
        self._interference.setdefault(aggregate_id, []).append(change)

    async def get(self, aggregate_id: str) -> A | None:
        doc = self.documents.get(aggregate_id)
        return None if doc is None else self.model.model_validate(copy.deepcopy(doc))

    async def find_ahead(self, aggregate_id: str) -> Document | None:
        """A copy of the document; nothing kept (every ``get`` reads the dict anyway)."""
        doc = self.documents.get(aggregate_id)
        return None if doc is None else copy.deepcopy(doc)

    async def insert(self, aggregate: A) -> bool:
        aggregate.version = 1
        if aggregate.id in self.documents:
            return False
        self.documents[aggregate.id] = aggregate.to_document()
        self.writes.append(("insert", aggregate.id))
        return True

    async def save(self, aggregate: A) -> None:
        for change in self._interference.pop(aggregate.id, []):
            other = self.stored(aggregate.id)
            change(other)
            self._replace(other, expected=other.version)
        self._replace(aggregate, expected=aggregate.version)
        self.writes.append(("save", aggregate.id))

    def _replace(self, aggregate: A, *, expected: int) -> None:
        current = self.documents.get(aggregate.id)
        if current is None or current["version"] != expected:
            raise Conflict(f"{self.model.__name__} {aggregate.id} changed since version {expected}")
        doc = aggregate.to_document()
        doc["version"] = expected + 1
        self.documents[aggregate.id] = doc
        aggregate.version = expected + 1


# --- the bus ---------------------------------------------------------------------------

Answer = BaseModel | Refused | Callable[[Any], BaseModel]


@dataclass(frozen=True)
class Call:
    """One request the handler made: what, with which ids."""

    command: Command
    message_id: str
    correlation_id: str | None

    @property
    def routing_key(self) -> str:
        return self.command.ROUTING_KEY


class FakeBus(Bus):
    """``Bus.call`` answered from ``answers`` (routing key -> a reply, a ``Refused``, or a
    function of the command that returns one or raises ``Refused``).

    Replies cross a JSON boundary as on the wire; a message id already answered gets the
    same answer again without asking (the other service's inbox). Nothing else of the
    bus is available: a handler that needs more needs a real-broker test."""

    def __init__(self, answers: Mapping[str, Answer] | None = None) -> None:
        # No broker: Bus.__init__ is deliberately not run.
        self.answers: dict[str, Answer] = dict(answers or {})
        self.calls: list[Call] = []
        self.published: list[Event] = []
        self._replies: dict[str, BaseModel | Refused] = {}

    @property
    def routing_keys(self) -> list[str]:
        """The routing keys called, in order."""
        return [call.routing_key for call in self.calls]

    async def call(
        self, command: Command, result: type[R], *, message_id: str, correlation_id: str | None
    ) -> R:
        self.calls.append(Call(command, message_id, correlation_id))
        if message_id not in self._replies:
            self._replies[message_id] = self._answer(command)
        reply = self._replies[message_id]
        if isinstance(reply, Refused):
            raise Refused(reply.code, reply.message)
        return result.model_validate_json(reply.model_dump_json())

    def _answer(self, command: Command) -> BaseModel | Refused:
        answer = self.answers.get(command.ROUTING_KEY)
        if answer is None:
            raise AssertionError(f"the test gave no answer for {command.ROUTING_KEY}")
        if isinstance(answer, BaseModel | Refused):
            return answer
        try:
            return answer(command)
        except Refused as refusal:
            return refusal

    async def publish_entry(self, entry: OutboxEntry) -> None:
        self.published.append(entry.event())

    async def publish_event(self, event: Event, *, message_id: str | None = None) -> None:
        self.published.append(event)


# --- each service's store ------------------------------------------------------------------


class MemoryOrderStore(OrderStore):
    """Orders' store: order lines and API keys in ``MemoryStore``s, proof files in a dict."""

    def __init__(self) -> None:
        # No database: OrderStore.__init__ (GridFS) is deliberately not run.
        self.lines: MemoryStore[OrderLine] = MemoryStore(OrderLine, unknown=unknown_order)
        self.keys: MemoryStore[ApiKey] = MemoryStore(ApiKey, unknown=unknown_api_key)
        self.files: dict[str, bytes] = {}
        self.files_stored: list[str] = []  # every file id ever stored, deleted ones too

    async def create_indexes(self) -> None:
        return None

    async def unpaid_due(self, now: datetime) -> list[str]:
        return [
            line.id
            for line in self.lines.all()
            if line.status == "awaiting_proof"
            and line.unpaid_expires_at is not None
            and line.unpaid_expires_at <= now
        ]

    async def list_for(self, reseller_id: str) -> list[OrderLine]:
        mine = [line for line in self.lines.all() if line.reseller_id == reseller_id]
        return sorted(mine, key=lambda line: line.placed_at, reverse=True)

    async def store_proof_file(
        self, *, filename: str, content: bytes, content_type: str, sha256: str, order_id: str
    ) -> str:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = content
        self.files_stored.append(file_id)
        return file_id

    async def delete_proof_file(self, file_id: str) -> None:
        del self.files[file_id]

    async def keys_of(self, reseller_id: str) -> list[ApiKey]:
        mine = [key for key in self.keys.all() if key.reseller_id == reseller_id]
        return sorted(mine, key=lambda key: key.created_at, reverse=True)

    async def forget_shown_keys(self, *, answered_before: datetime, instead: str) -> int:
        return 0  # no inbox in memory: the real-broker tests check it


class MemoryAttemptCounters(AttemptCounters):
    """Registration attempts per key and fixed window, counted in a dict."""

    def __init__(self) -> None:
        # No database: AttemptCounters.__init__ is deliberately not run.
        self.counts: dict[tuple[str, int], int] = {}

    async def count_sliding(self, key: str, *, now: datetime, window: timedelta) -> tuple[int, int]:
        index = (now - EPOCH) // window
        self.counts[key, index] = self.counts.get((key, index), 0) + 1
        return self.counts.get((key, index - 1), 0), self.counts[key, index]

    async def purge(self, now: datetime) -> int:
        return 0


class MemoryLicensingStore(LicensingStore):
    """Licensing's store: customers in a ``MemoryStore``, attempts in a dict."""

    def __init__(self) -> None:
        # No database: LicensingStore.__init__ is deliberately not run.
        self.customers: MemoryStore[Customer] = MemoryStore(Customer, unknown=unknown_customer)
        self.attempts: MemoryAttemptCounters = MemoryAttemptCounters()
        self.licence_reads = 0  # store reads of the licence check (the cache's misses)

    async def create_indexes(self) -> None:
        return None

    async def tokens_of(self, email: str) -> Customer | None:
        doc = self.customers.documents.get(email)
        return None if doc is None else Customer(id=email, tokens=copy.deepcopy(doc["tokens"]))

    async def licence_view(self, key: str) -> LicenceView | None:
        self.licence_reads += 1
        found = [doc for doc in self.customers.documents.values() if doc["key"] == key]
        return LicenceView.model_validate(copy.deepcopy(found[0])) if found else None

    async def due_for_check(self, now: datetime, *, batch: int = 500) -> AsyncIterator[str]:
        due = [c for c in self.customers.all() if c.next_check_at and c.next_check_at <= now]
        for customer in sorted(due, key=lambda c: c.next_check_at or now)[:batch]:
            yield customer.id
