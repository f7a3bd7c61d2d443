"""The dead letters a service keeps, and what operations may do with them.

Every message the runtime dead-letters (``Bus.dead_letter``: invalid, unauthorized,
retries exhausted, an idempotency key reused by an event) is also kept here, in the
service's own ``dead_letters`` collection, one document each (``DeadLetter``): the
publisher as RabbitMQ validated it (or, for the service's own retry copies, the original
publisher those carry), the routing key and exchange it was published to, the reason,
the attempts, the correlation id, the headers and the raw body. ``reseller.dead-letters``
still receives every dead letter as before: it is the record; this copy is what
operations can act on.

Each keeper answers ``deadletter.list``, ``deadletter.replay`` and ``deadletter.discard``
for the ``service`` they name, on queues of its own, and ignores the others (no reply):
``Runtime`` wires it for every service and web face, nothing is copied per service.

- A **replay** builds the delivery RabbitMQ made (same body, message id, exchange and
  routing key; ``user_id`` = the kept publisher; no ``reply_to``: its requester is long
  gone) and hands it to the consumer's own path (``Bus.rerun``): the same route, the same
  validation, the same identities check against the *original* publisher, the inbox
  deduplicating by the *original* message id. Operations replay; they cannot forge: a
  replayed message can do nothing its publisher could not. The outcome (``ok``,
  ``refused``, ``duplicate``, ``invalid``, ``unauthorized``, ``retried``...) is recorded and
  answered; if the message died again the keeper kept it again and its status is
  ``dead`` once more.
- A **discard** marks a dead letter deliberately dropped, with the operator and a reason.

Both are audited by ``deadletter.replayed`` / ``deadletter.discarded`` naming the
operator, recorded in the dead letter's own outbox by the same save that records the
action (one command applied once, its event published at least once by the relay).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from shared.basics.clock import Clock
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.operations import (
    DeadLetterDiscarded,
    DeadLetterList,
    DeadLetterReplayed,
    DeadLetterResult,
    DeadLetterStatus,
    DeadLetterView,
    DiscardDeadLetter,
    ListDeadLetters,
    ReplayDeadLetter,
)
from shared.runtime.logging import get_logger
from shared.runtime.messaging import (
    ORIGINAL_EXCHANGE,
    ORIGINAL_PUBLISHER,
    ORIGINAL_ROUTING_KEY,
    RETRY_COUNT_HEADER,
    RETRY_ERROR_HEADER,
    RETRY_WAITED_HEADER,
    Bus,
    Delivery,
    Origin,
    Route,
    copied_headers,
    replayed_delivery,
)
from shared.runtime.store import Aggregate, Document, DocumentStore

log = get_logger(__name__)

PREVIEW_CHARS = 2000
#: How many documents a filtered list reads at most to find ``limit`` matches.
LIST_SCAN = 5000
#: Headers about the message's earlier journey: never replayed (a replay starts afresh).
_JOURNEY_HEADERS = frozenset(
    {
        RETRY_COUNT_HEADER,
        RETRY_WAITED_HEADER,
        RETRY_ERROR_HEADER,
        ORIGINAL_PUBLISHER,
        ORIGINAL_EXCHANGE,
        ORIGINAL_ROUTING_KEY,
    }
)


def unknown_dead_letter(key: str) -> Refused:
    return Refused(ErrorCode.UNKNOWN_DEAD_LETTER, f"no dead letter {key} is kept here")


class DeadLetter(Aggregate):
    """One kept dead letter; its id is its message id (see ``DeadLetterKeeper.key_for``)."""

    message_id: str
    routing_key: str  # as published (a queue's name when sent through the default exchange)
    exchange: str
    route: str  # the routing key of the route that consumed it: where a replay goes
    publisher: str = ""
    reason: str
    dead_at: datetime
    status: DeadLetterStatus = "dead"
    attempts: int = 1
    deaths: int = 1
    correlation_id: str | None = None
    content_type: str | None = None
    headers: dict[str, Any] = {}
    # The raw body, base64: binary fields do not survive every store's replace (the embedded
    # server refuses them there), text does.
    body_base64: str
    digest: str
    preview: str = ""
    replays: int = 0
    last_outcome: str | None = None
    operator: str | None = None
    discard_reason: str | None = None

    def body(self) -> bytes:
        return base64.b64decode(self.body_base64)

    def died_again(self, *, reason: str, attempts: int, at: datetime) -> None:
        self.status = "dead"
        self.reason = reason
        self.attempts = attempts
        self.dead_at = at
        self.deaths += 1

    def replayed(
        self, *, service: str, outcome: str, operator: str, deaths_before: int, at: datetime
    ) -> None:
        """Record a replay the consumer has run. A message that died again was kept again
        meanwhile (``died_again``: its status is ``dead`` already); one that could not even
        be retried (``failed``: the broker was away) stays ``dead`` too."""
        if self.deaths == deaths_before and outcome != "failed":
            self.status = "replayed"
        self.replays += 1
        self.last_outcome = outcome
        self.operator = operator
        self.record(DeadLetterReplayed, at=at, outcome=outcome, **self._audit(service, operator))

    def discarded(self, *, service: str, operator: str, reason: str, at: datetime) -> None:
        if self.status != "dead":
            raise Refused(
                ErrorCode.DEAD_LETTER_SETTLED,
                f"dead letter {self.id} is {self.status} (by {self.operator}): nothing to discard",
            )
        self.status = "discarded"
        self.operator = operator
        self.discard_reason = reason
        self.record(DeadLetterDiscarded, at=at, reason=reason, **self._audit(service, operator))

    def _audit(self, service: str, operator: str) -> dict[str, Any]:
        return {
            "service": service,
            "message_id": self.id,
            "routing_key": self.routing_key,
            "operator": operator,
            "correlation_id": self.correlation_id,
        }


class DeadLetterKeeper:
    """One service's kept dead letters and its answers to ``deadletter.*``."""

    def __init__(
        self, store: DocumentStore[DeadLetter], *, service: str, bus: Bus, clock: Clock
    ) -> None:
        self.store = store
        self.service = service
        self.bus = bus
        self.clock = clock
        self.consumers: dict[str, Route] = {}  # routing key -> route (set at start)

    def routes(self) -> list[Route]:
        return [
            Route(ListDeadLetters, self.list),
            Route(ReplayDeadLetter, self.replay),
            Route(DiscardDeadLetter, self.discard),
        ]

    async def create_indexes(self) -> None:
        # Single-field: the embedded store uses no compound index (ConsoleStore says more).
        await self.store.collection.create_index("status")
        await self.store.collection.create_index("dead_at")

    # --- keeping (called by Bus.dead_letter) -------------------------------------------

    async def keep(
        self,
        raw: AbstractIncomingMessage,
        origin: Origin,
        reason: str,
        *,
        route: str,
        attempts: int,
    ) -> None:
        """Keep a copy of a message being dead-lettered (again, if it was kept before)."""
        message_id = (raw.message_id or "").strip()
        digest = hashlib.sha256(origin.routing_key.encode() + b"\n" + raw.body).hexdigest()
        key = await self.key_for(message_id, digest)
        now = self.clock.now()

        def kept(letter: DeadLetter) -> None:
            if letter.version:  # kept before: the same message died again
                letter.died_again(reason=reason, attempts=attempts, at=now)

        def new(key: str) -> DeadLetter:
            return DeadLetter(
                id=key,
                message_id=message_id,
                routing_key=origin.routing_key,
                exchange=origin.exchange,
                route=route,
                publisher=origin.publisher or "",
                reason=reason[:4000],
                dead_at=now,
                attempts=attempts,
                correlation_id=raw.correlation_id,
                content_type=raw.content_type,
                headers=_storable(copied_headers(raw.headers), drop=_JOURNEY_HEADERS),
                body_base64=base64.b64encode(raw.body).decode(),
                digest=digest,
                preview=raw.body[:PREVIEW_CHARS].decode("utf-8", "replace")[:PREVIEW_CHARS],
            )

        await self.store.mutate(key, kept, message_id=None, create=new)

    async def key_for(self, message_id: str, digest: str) -> str:
        """The message id, unless another message was kept under it (a forger, or a client
        reusing an id for another request): then the id and a digest of this one, so
        that a later message never overwrites what an earlier one left to replay."""
        key = message_id or f"@{digest[:16]}"
        kept = await self.store.get(key)
        if kept is None or kept.digest == digest:
            return key
        return f"{message_id}@{digest[:16]}"

    # --- answering operations ----------------------------------------------------------

    async def list(self, query: ListDeadLetters, _: Delivery) -> DeadLetterList | None:
        """``deadletter.list``: newest first; ``reason`` keeps those whose reason starts so."""
        if query.service != self.service:
            return None
        where: Document = {} if query.status is None else {"status": query.status}
        cursor = (
            self.store.collection.find(where, {"body_base64": 0, "headers": 0, "outbox": 0})
            .sort("dead_at", -1)
            .limit(LIST_SCAN if query.reason else query.limit)
        )
        views: list[DeadLetterView] = []
        async for doc in cursor:
            if query.reason and not str(doc.get("reason", "")).startswith(query.reason):
                continue
            views.append(self.view(doc))
            if len(views) == query.limit:
                break
        return DeadLetterList(service=self.service, dead_letters=views)

    async def replay(
        self, command: ReplayDeadLetter, delivery: Delivery
    ) -> DeadLetterResult | None:
        """``deadletter.replay``: run the kept message again through its consumer."""
        if command.service != self.service:
            return None
        letter = await self.store.load(command.message_id)
        if letter.status == "discarded":
            raise Refused(
                ErrorCode.DEAD_LETTER_SETTLED,
                f"dead letter {letter.id} was discarded by {letter.operator}: "
                f"{letter.discard_reason}",
            )
        route = self.consumers.get(letter.route)
        if route is None:
            raise Refused(
                ErrorCode.UNKNOWN_DEAD_LETTER,
                f"{self.service} no longer consumes {letter.route}: nothing to replay to",
            )
        outcome = await self.bus.rerun(
            route,
            replayed_delivery(
                body=letter.body(),
                message_id=letter.message_id,
                correlation_id=letter.correlation_id,
                publisher=letter.publisher or None,
                exchange=letter.exchange,
                routing_key=letter.routing_key,
                headers=letter.headers,
                content_type=letter.content_type,
            ),
        )
        log.info(
            "dead_letter_replayed",
            dead_letter=letter.id,
            outcome=outcome,
            operator=command.operator,
        )
        saved = await self.store.mutate(
            letter.id,
            lambda kept: kept.replayed(
                service=self.service,
                outcome=outcome,
                operator=command.operator,
                deaths_before=letter.deaths,
                at=self.clock.now(),
            ),
            message_id=delivery.message_id,
        )
        return self.result(saved.aggregate, saved.aggregate.last_outcome or outcome)

    async def discard(
        self, command: DiscardDeadLetter, delivery: Delivery
    ) -> DeadLetterResult | None:
        """``deadletter.discard``: drop a dead letter deliberately, saying who and why."""
        if command.service != self.service:
            return None
        saved = await self.store.mutate(
            command.message_id,
            lambda kept: kept.discarded(
                service=self.service,
                operator=command.operator,
                reason=command.reason,
                at=self.clock.now(),
            ),
            message_id=delivery.message_id,
        )
        log.info("dead_letter_discarded", dead_letter=command.message_id, operator=command.operator)
        return self.result(saved.aggregate, "discarded")

    def result(self, letter: DeadLetter, outcome: str) -> DeadLetterResult:
        return DeadLetterResult(
            service=self.service, message_id=letter.id, status=letter.status, outcome=outcome
        )

    def view(self, doc: Document) -> DeadLetterView:
        return DeadLetterView(
            message_id=doc["_id"],
            service=self.service,
            routing_key=doc["routing_key"],
            reason=doc["reason"],
            publisher=doc.get("publisher", ""),
            dead_at=doc["dead_at"],
            status=doc["status"],
            body_preview=doc.get("preview", ""),
            correlation_id=doc.get("correlation_id"),
            attempts=doc.get("attempts", 1),
            replays=doc.get("replays", 0),
            last_outcome=doc.get("last_outcome"),
            operator=doc.get("operator"),
            discard_reason=doc.get("discard_reason"),
        )


Scalar = str | int | float | bool | None


def _storable(headers: Mapping[str, Any], *, drop: frozenset[str]) -> dict[str, Scalar]:
    """AMQP headers as a document holds them: scalars kept, anything else as text."""
    kept: dict[str, Scalar] = {}
    for name, value in headers.items():
        if name in drop:
            continue
        if isinstance(value, bytes):
            kept[name] = value.decode("utf-8", "replace")
        elif value is None or isinstance(value, str | int | float | bool):
            kept[name] = value
        else:
            kept[name] = str(value)
    return kept
