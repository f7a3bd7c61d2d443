"""The messaging runtime: consume routes, reply, dead-letter, publish, call (DESIGN.md, Messages).

A service declares ``Route(MessageModel, handler)`` pairs; for each, a quorum queue
is consumed with manual acknowledgement and this runtime does, per delivery:

1. no ``message_id`` -> dead-lettered, and an ``invalid_message`` reply if one was asked;
2. a publisher whose role may not send this message (``shared.contracts.identities``;
   its ``user_id`` is validated by RabbitMQ) -> never applied: a ``forbidden`` reply or
   ``command.rejected``, and dead-lettered with reason ``unauthorized_publisher``;
3. body not JSON or not valid for the model -> dead-lettered to ``reseller.dlx``
   with the reason in its headers (and an ``invalid_message`` reply if asked);
4. the message id is claimed in the inbox with its routing key and body digest: a
   resend gets the first answer again, the same id with another request is refused
   with ``idempotency_key_reused``, nothing applied. A route's ``read_ahead`` reads the
   handler's aggregate during the claim (one store round trip fewer per message); the
   handler itself starts only once the claim is settled;
5. the handler's ``Refused`` -> ``{"ok": false, ...}`` reply, or ``command.rejected``
   when there is no ``reply_to``;
6. any other exception is transient -> a copy waits in a delay queue (``reseller.retry.*``,
   shared.runtime.topology) and comes back to the same queue, with growing delays, until
   ``retry_total`` seconds of delays have passed; then it is dead-lettered with reason
   ``retries_exhausted``. The original is acked once the copy is confirmed, so failures
   never use up the queue's delivery limit (left to guard against crash loops), and the
   consumer never sleeps.

Everything this runtime publishes goes through its ``BrokerLink`` (shared.runtime.link:
confirmed, reopened when lost or nacked again and again) and carries the service's own
``user_id``. Requests to other services (``Bus.call``) are many in flight at once: each
carries a call id (header ``x-call-id``, echoed by the reply) over direct reply-to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import uuid4

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.message import RabbitMessage as KeptMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from pydantic import BaseModel, ValidationError

from shared.basics.clock import Clock
from shared.basics.errors import ErrorCode, Refused
from shared.contracts import REGISTRY, Command, ErrorBody, Event, Message, Query, Reply
from shared.contracts.identities import allowed_publishers, may_publish, role_of
from shared.contracts.system import CommandRejected
from shared.runtime import metrics
from shared.runtime.identity import BrokerIdentity
from shared.runtime.inbox import Inbox, InboxRecord, MessageIdReused, body_digest
from shared.runtime.link import DIRECT_REPLY_TO, BrokerLink, BrokerUnavailable
from shared.runtime.logging import get_logger
from shared.runtime.store import OutboxEntry, reading_ahead
from shared.runtime.topology import RETRY_DELAY_HEADER, Topology, delay_label

log = get_logger(__name__)
JSON = "application/json"
R = TypeVar("R", bound=BaseModel)

#: A request's call id, echoed by its reply: how a caller matches replies to its calls.
CALL_ID_HEADER = "x-call-id"
#: On a retry copy: how many retries so far, and the milliseconds of delay they waited.
RETRY_COUNT_HEADER = "x-retry-count"
RETRY_WAITED_HEADER = "x-retry-waited-ms"
RETRY_ERROR_HEADER = "x-retry-last-error"
#: Where a message came from; on a retry copy (published by the service itself) they name
#: the original publication, which the consumer then judges.
ORIGINAL_PUBLISHER = "x-original-publisher"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
#: Headers RabbitMQ sets on delivery or dead-lettering: never copied into a new publication.
_BROKER_HEADERS = ("x-death", "x-delivery-count", RETRY_DELAY_HEADER)
_BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
#: How long a dead letter's copy may take to be kept before the runtime goes on without it.
KEEP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Delivery:
    """What a handler knows of the message it handles, besides its body."""

    message_id: str
    correlation_id: str | None
    routing_key: str
    publisher: str | None = None  # the validated broker user (``user_id``) that sent it
    # The routing key and body's digest (``body_digest``): what binds the id to this message
    # for an aggregate that keeps it (``DocumentStore.mutate(digest=...)``).
    digest: str | None = None


Handler = Callable[[Any, Delivery], Awaitable[BaseModel | None]]


@dataclass(frozen=True)
class Route:
    """A message the service consumes, and its handler.

    ``inbox=False``: the runtime does not claim the message id in the inbox first. Only for
    an event whose handler keys what it writes by the message id itself, so a redelivery
    changes nothing, and that raises ``MessageIdReused`` for an id it already holds for
    another message: the console's event log, and the handlers that change one aggregate
    with ``mutate(message_id=..., digest=delivery.digest)``. One store write fewer per event.

    ``read_ahead``: reads what the handler loads first (``DocumentStore.read_ahead`` of the
    message's aggregate), at the same time as the inbox's claim. Only a read: whatever it
    raises is ignored, and the handler loads for itself."""

    message: type[Message]
    handler: Handler
    inbox: bool = True
    read_ahead: Callable[[Any], Awaitable[object]] | None = None


class UpstreamUnavailable(Exception):
    """Another service did not answer in time: transient, so the message is retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures are retried after ``Topology.retry_delay(n)`` until ``total``
    seconds of delays have passed; the next failure dead-letters (``retries_exhausted``)."""

    total_seconds: float = 900.0


@dataclass(frozen=True)
class Origin:
    """Who published a delivery, and where to: the delivery's own properties, or, on a
    retry copy the service made itself, the original publication's (from its headers)."""

    publisher: str | None
    exchange: str
    routing_key: str
    retries: int = 0
    waited_ms: int = 0


class DeadLetterKeeping(Protocol):
    """Where a service keeps a copy of what it dead-letters (shared.runtime.dead_letters)."""

    async def keep(
        self,
        raw: AbstractIncomingMessage,
        origin: Origin,
        reason: str,
        *,
        route: str,
        attempts: int,
    ) -> None: ...


async def _whole_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """Hand the delivery itself to the runtime, which validates the body to dead-letter
    precisely. The broker runs without FastStream's dependency injection
    (``apply_types=False``): resolving a ``Context`` parameter ran in a worker thread and a
    task group per message, about a sixth of a consuming service's CPU."""
    return message


def reply_body(result: BaseModel | None = None, error: ErrorBody | None = None) -> bytes:
    reply: Reply[BaseModel] = Reply(ok=error is None, result=result, error=error)
    return reply.model_dump_json(exclude_none=True).encode()


class Bus:
    """One service's side of the broker."""

    def __init__(
        self,
        broker: RabbitBroker,
        topology: Topology,
        *,
        service: str,
        identity: BrokerIdentity,
        user_prefix: str,
        inbox: Inbox,
        clock: Clock,
        rpc_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        publish_timeout: float = 10.0,
        nacks_before_reopen: int = 3,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.service = service
        self.identity = identity
        self.user_prefix = user_prefix
        self.inbox = inbox
        self.clock = clock
        self.rpc_timeout = rpc_timeout
        self.retry = retry or RetryPolicy()
        self.link = BrokerLink(
            identity.url,
            on_reply=self._on_reply,
            on_lost=self._fail_calls,
            publish_timeout=publish_timeout,
            nacks_before_reopen=nacks_before_reopen,
            name=f"{service}:publisher",
        )
        self._calls: dict[str, asyncio.Future[bytes]] = {}
        # Keeps a copy of each dead letter (set by Runtime; None: the queue copy only).
        self.keeper: DeadLetterKeeping | None = None

    async def open(self) -> None:
        """Open the publishing link (before consuming: handlers reply and publish)."""
        await self.link.open()

    async def close(self) -> None:
        """Close the publishing link (after consuming stopped and in-flight handlers ended)."""
        await self.link.close()
        self._fail_calls("closing")

    # --- publishing ------------------------------------------------------------------

    async def publish_entry(self, entry: OutboxEntry) -> None:
        """Publish one outbox entry, persistent, and wait for the broker's confirm."""
        await self.link.publish(
            self.topology.events.name,
            aio_pika.Message(
                entry.body.encode(),
                message_id=entry.event_id,
                correlation_id=entry.correlation_id,
                content_type=JSON,
                type=entry.routing_key,
                timestamp=entry.occurred_at,
                headers={"schema-version": REGISTRY[entry.routing_key].SCHEMA_VERSION},
                user_id=self.identity.user_id,
                delivery_mode=PERSISTENT,
            ),
            entry.routing_key,
        )
        metrics.EVENTS_PUBLISHED.labels(self.service, entry.routing_key).inc()

    async def publish_event(self, event: Event, *, message_id: str | None = None) -> None:
        """Publish an event not tied to an aggregate (``command.rejected``)."""
        await self.publish_entry(
            OutboxEntry(
                event_id=message_id or str(uuid4()),
                routing_key=event.ROUTING_KEY,
                body=event.model_dump_json(),
                correlation_id=event.correlation_id,
                occurred_at=event.occurred_at,
            )
        )

    # --- request/reply ---------------------------------------------------------------

    async def call(
        self, command: Command, result: type[R], *, message_id: str, correlation_id: str | None
    ) -> R:
        """Request/reply to the owning service; its refusal is raised here as ``Refused``.

        Any number of calls may be in flight: each has its own call id, which the reply
        echoes. No reply within ``rpc_timeout`` (the confirmed publication included) ->
        ``UpstreamUnavailable``; a reply arriving later is dropped."""
        call_id = uuid4().hex
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = answer
        try:
            async with asyncio.timeout(self.rpc_timeout):
                await self.link.publish(
                    self.topology.commands.name,
                    aio_pika.Message(
                        command.model_dump_json().encode(),
                        message_id=message_id,
                        correlation_id=correlation_id,
                        content_type=JSON,
                        reply_to=DIRECT_REPLY_TO,
                        headers={CALL_ID_HEADER: call_id},
                        user_id=self.identity.user_id,
                        delivery_mode=PERSISTENT,
                    ),
                    command.ROUTING_KEY,
                )
                response = await answer
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"{command.ROUTING_KEY}: no answer in time") from exc
        except BrokerUnavailable as exc:
            raise UpstreamUnavailable(f"{command.ROUTING_KEY}: {exc}") from exc
        finally:
            self._calls.pop(call_id, None)
        reply = Reply[result].model_validate_json(response)  # type: ignore[valid-type]
        if reply.error is not None:
            raise Refused(reply.error.code, reply.error.message)
        assert reply.result is not None
        return reply.result

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        call_id = (message.headers or {}).get(CALL_ID_HEADER)
        answer = self._calls.pop(call_id, None) if isinstance(call_id, str) else None
        if answer is None or answer.done():
            log.info("late_reply_dropped", correlation_id=message.correlation_id)
            return
        answer.set_result(message.body)

    def _fail_calls(self, reason: str) -> None:
        """The link was lost: replies to the calls in flight will never come."""
        calls, self._calls = self._calls, {}
        for answer in calls.values():
            if not answer.done():
                answer.set_exception(UpstreamUnavailable(f"connection lost: {reason}"))

    # --- consuming -------------------------------------------------------------------

    def subscribe(self, route: Route) -> None:
        queue = self.topology.queue(self.service, route.message.ROUTING_KEY)
        exchange = self.topology.exchange_of(route.message)

        async def on_message(message: RabbitMessage) -> None:
            await self.consume(route, message)

        self.broker.subscriber(
            queue,
            exchange,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            decoder=_whole_message,
            title=f"{self.service}:{route.message.ROUTING_KEY}",
            description=route.handler.__doc__,
        )(on_message)

    async def consume(self, route: Route, message: RabbitMessage) -> None:
        raw = message.raw_message
        key = route.message.ROUTING_KEY
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(
            message_id=raw.message_id, correlation_id=raw.correlation_id, routing_key=key
        )
        try:
            outcome = await self._run(route, message)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "correlation_id", "routing_key")
        metrics.MESSAGES.labels(self.service, key, outcome).inc()
        metrics.HANDLING_SECONDS.labels(self.service, key).observe(time.perf_counter() - started)

    async def rerun(self, route: Route, message: RabbitMessage) -> str:
        """Run a kept dead letter again (``deadletter.replay``), as ``replayed_delivery``
        rebuilt it, through the very path a delivery takes; returns the outcome."""
        raw = message.raw_message
        with structlog.contextvars.bound_contextvars(
            replayed_message_id=raw.message_id, replayed_routing_key=route.message.ROUTING_KEY
        ):
            outcome = await self._run(route, message)
        metrics.MESSAGES.labels(self.service, route.message.ROUTING_KEY, outcome).inc()
        return outcome

    async def _run(self, route: Route, message: RabbitMessage) -> str:
        try:
            with reading_ahead():
                return await self._handle(route, message)
        except Exception as exc:
            return await self._retry_later(route, message, exc)

    async def _claim(
        self, route: Route, payload: Message, message_id: str, digest: str
    ) -> InboxRecord | None:
        """The inbox's claim of ``message_id``, and the route's read-ahead beside it."""
        key = route.message.ROUTING_KEY
        claim = self.inbox.claim(
            self.service, message_id, routing_key=key, digest=digest, at=self.clock.now()
        )
        if route.read_ahead is None:
            return await claim
        earlier, _ = await asyncio.gather(claim, _quietly(route.read_ahead, payload))
        return earlier

    def origin(self, raw: AbstractIncomingMessage, routing_key: str) -> Origin:
        return origin_of(raw, own_user_id=self.identity.user_id, routing_key=routing_key)

    async def _retry_later(self, route: Route, message: RabbitMessage, exc: Exception) -> str:
        """A transient failure: publish a copy into the delay queue of the next retry and ack
        this delivery once the copy is confirmed; or dead-letter it when the retries have
        waited ``retry.total_seconds``. Returns the outcome for the metrics."""
        raw = message.raw_message
        origin = self.origin(raw, route.message.ROUTING_KEY)
        error = f"{type(exc).__name__}: {exc}"[:500]
        if origin.waited_ms >= self.retry.total_seconds * 1000:
            log.error("message_failed", attempt=origin.retries + 1, error=error, final=True)
            try:
                await self.dead_letter(
                    message,
                    f"retries_exhausted: {origin.retries + 1} attempts over "
                    f"{origin.waited_ms / 1000:.1f} s; last error: {error}",
                    route=route.message.ROUTING_KEY,
                )
            except BrokerUnavailable as publish_error:
                # Neither kept nor parked: RabbitMQ redelivers it (dead_letter did not ack).
                log.error("message_dead_letter_failed", error=str(publish_error))
                await message.nack(requeue=True)
                return "failed"
            return "exhausted"
        attempt = origin.retries + 1
        delay = self.topology.retry_delay(attempt)
        log.warning(
            "message_failed",
            attempt=attempt,
            retry_in_seconds=delay,
            error=error,
            exc_info=exc if attempt == 1 else None,  # the traceback once, not every retry
        )
        headers = copied_headers(raw.headers)
        headers.update(
            {
                RETRY_DELAY_HEADER: delay_label(delay),
                RETRY_COUNT_HEADER: attempt,
                RETRY_WAITED_HEADER: origin.waited_ms + round(delay * 1000),
                RETRY_ERROR_HEADER: error,
                ORIGINAL_PUBLISHER: origin.publisher or "",
                ORIGINAL_EXCHANGE: origin.exchange,
                ORIGINAL_ROUTING_KEY: origin.routing_key,
            }
        )
        try:
            await self.link.publish(
                self.topology.retry.name,
                _copy(raw, headers=headers, user_id=self.identity.user_id),
                # back to the queue it failed in, by name (topology: delay queues)
                self.topology.queue(self.service, route.message.ROUTING_KEY).name,
            )
        except BrokerUnavailable as publish_error:
            # No copy: let RabbitMQ redeliver it (this one does count towards the limit).
            log.error("message_retry_not_scheduled", error=str(publish_error))
            await message.nack(requeue=True)
            return "failed"
        await message.ack()
        return "retried"

    async def _handle(self, route: Route, message: RabbitMessage) -> str:
        raw = message.raw_message
        key = route.message.ROUTING_KEY
        message_id = (raw.message_id or "").strip()
        if not message_id:  # aiormq always sets one; other AMQP clients may not, or send blanks
            reason = "missing message_id: every message needs a unique one"
            await self._refuse(message, route, ErrorCode.INVALID_MESSAGE, reason, message_id="")
            await self.dead_letter(message, reason, route=key)
            return "invalid"
        publisher = self.origin(raw, key).publisher
        role = role_of(publisher, self.user_prefix)
        if not may_publish(role, route.message):
            allowed = ", ".join(sorted(allowed_publishers(route.message))) or "nobody"
            reason = f"{publisher or 'a publisher with no user_id'} may not publish {key}"
            await self._refuse(message, route, ErrorCode.FORBIDDEN, reason, message_id=message_id)
            await self.dead_letter(
                message, f"unauthorized_publisher: {reason} (allowed: {allowed})", route=key
            )
            return "unauthorized"
        try:
            payload = route.message.model_validate_json(raw.body)
        except ValidationError as exc:
            reason = _validation_reason(exc)
            await self.dead_letter(message, reason, route=key)
            if raw.reply_to:
                await self._reply(
                    message,
                    reply_body(error=ErrorBody(code=ErrorCode.INVALID_MESSAGE, message=reason)),
                )
            return "invalid"

        digest = body_digest(key, raw.body)
        remembers = route.inbox and not issubclass(route.message, Query)
        if remembers:
            earlier = await self._claim(route, payload, message_id, digest)
            if earlier is not None and not earlier.same_request(key, digest):
                reason = (
                    f"message_id {message_id} was already used for another request "
                    f"({earlier.routing_key or 'unknown'}); use a new id for a new request"
                )
                return await self._refuse_reused(message, route, reason, message_id=message_id)
            if earlier is not None and earlier.done:
                if raw.reply_to and earlier.reply is not None:
                    await self._reply(message, earlier.reply.encode())
                await message.ack()
                log.info("message_duplicate_skipped")
                return "duplicate"

        delivery = Delivery(
            message_id=message_id,
            correlation_id=raw.correlation_id,
            routing_key=key,
            publisher=publisher,
            digest=digest,
        )
        outcome = "ok"
        try:
            result = await route.handler(payload, delivery)
            body = reply_body(result=result) if result is not None else None
        except MessageIdReused as reused:
            return await self._refuse_reused(message, route, str(reused), message_id=message_id)
        except Refused as refusal:
            outcome = "refused"
            error = ErrorBody(code=refusal.code, message=refusal.message)
            body = reply_body(error=error)
            log.info("command_refused", code=str(refusal.code), reason=refusal.message)
            if not raw.reply_to and isinstance(payload, Command):
                await self._publish_rejection(key, message_id, error, raw.correlation_id)
        if raw.reply_to and body is not None:
            await self._reply(message, body)
        if remembers and issubclass(route.message, Command):  # an event has no answer to keep
            await self.inbox.complete(
                self.service,
                message_id,
                reply=body.decode() if body else None,
                at=self.clock.now(),
            )
        await message.ack()
        return outcome

    async def _refuse_reused(
        self, message: RabbitMessage, route: Route, reason: str, *, message_id: str
    ) -> str:
        """A message id already used for another message: refused, and an event (nobody
        to answer) is dead-lettered with the reason; a command is answered and acked."""
        await self._refuse(
            message, route, ErrorCode.IDEMPOTENCY_KEY_REUSED, reason, message_id=message_id
        )
        if not issubclass(route.message, Command):  # nobody to answer: keep it
            await self.dead_letter(
                message, f"idempotency_key_reused: {reason}", route=route.message.ROUTING_KEY
            )
        else:
            await message.ack()
        return "refused"

    async def _refuse(
        self, message: RabbitMessage, route: Route, code: ErrorCode, reason: str, *, message_id: str
    ) -> None:
        """Answer a refusal decided before any handler ran: the reply if one was asked,
        else ``command.rejected`` for a command that has an id to name."""
        raw = message.raw_message
        error = ErrorBody(code=code, message=reason)
        log.warning("message_refused", code=str(code), reason=reason, publisher=raw.user_id)
        if raw.reply_to:
            await self._reply(message, reply_body(error=error))
        elif issubclass(route.message, Command) and message_id:
            await self._publish_rejection(
                route.message.ROUTING_KEY, message_id, error, raw.correlation_id
            )

    async def _publish_rejection(
        self, command: str, message_id: str, error: ErrorBody, correlation_id: str | None
    ) -> None:
        await self.publish_event(
            CommandRejected(
                command=command,
                message_id=message_id,
                error=error,
                occurred_at=self.clock.now(),
                correlation_id=correlation_id,
            ),
            message_id=f"{message_id}/rejected",
        )

    async def _reply(self, message: RabbitMessage, body: bytes) -> None:
        """Answer on the default exchange to the requester's ``reply_to``, echoing its call
        id (``Bus.call`` matches replies by it).

        Best effort: a reply that cannot be published is logged and dropped, never a reason
        to handle the message again. The requester sends the same request again when no
        answer comes, and the inbox gives it the same reply. Retrying instead looped: on
        RabbitMQ 3.10, a reply to a requester whose cluster node died closes our connection
        (541 INTERNAL_ERROR) until that node is back, so each retry of the message brought
        the publishing link down again, and a long enough outage dead-lettered it."""
        raw = message.raw_message
        call_id = (raw.headers or {}).get(CALL_ID_HEADER)
        try:
            await self.link.publish(
                "",
                aio_pika.Message(
                    body,
                    message_id=str(uuid4()),
                    correlation_id=raw.correlation_id,
                    content_type=JSON,
                    headers={CALL_ID_HEADER: call_id} if isinstance(call_id, str) else None,
                    user_id=self.identity.user_id,
                ),
                raw.reply_to or "",
            )
        except BrokerUnavailable as exc:
            metrics.REPLIES_DROPPED.labels(self.service).inc()
            log.warning("reply_not_delivered", reply_to=raw.reply_to, error=str(exc))

    async def dead_letter(self, message: RabbitMessage, reason: str, *, route: str) -> None:
        """Move a message to ``reseller.dlx`` with the reason in its headers, keep a copy
        (``keeper``: what operations list, replay and discard, with ``route``, the routing
        key of the route that consumed it), then ack it.

        Order: keep, publish, ack. The kept copy comes first because it is the one
        operations act on; if the store is down (or slow: it gives up after
        ``KEEP_TIMEOUT_SECONDS``) the failure is logged and the publication still happens,
        and the ack waits for the broker's confirm. If the publication fails after the copy
        was kept, the kept copy is enough and the delivery is acked; if both fail,
        ``BrokerUnavailable`` is raised and nothing is acked: RabbitMQ keeps the message.
        A crash between the steps leaves it unacked: redelivered, kept again (the same
        document) and published again (the record may show it twice, never zero times)."""
        raw = message.raw_message
        origin = origin_of(
            raw, own_user_id=self.identity.user_id, routing_key=raw.routing_key or ""
        )
        kept = await keep_copy(self.keeper, raw, origin, reason, route=route)
        headers = copied_headers(raw.headers)
        headers.update(
            {
                "x-death-reason": reason[:4000],
                ORIGINAL_PUBLISHER: origin.publisher or "",
                ORIGINAL_EXCHANGE: origin.exchange,
                ORIGINAL_ROUTING_KEY: origin.routing_key,
                "x-rejected-by": self.service,
                "x-rejected-at": self.clock.now().isoformat(),
            }
        )
        try:
            await self.link.publish(
                self.topology.dead_letters.name,
                _copy(raw, headers=headers, user_id=self.identity.user_id),
                origin.routing_key,
            )
        except BrokerUnavailable as exc:
            if not kept:
                raise
            log.error("dead_letter_not_parked", error=str(exc), kept=True)
        await message.ack()
        metrics.DEAD_LETTERED.labels(self.service, origin.routing_key).inc()
        log.warning("message_dead_lettered", reason=reason, kept=kept)


async def _quietly(read_ahead: Callable[[Any], Awaitable[object]], payload: Message) -> None:
    """A read ahead that fails is as if not made: the handler's own load reports it."""
    try:
        await read_ahead(payload)
    except Exception as exc:
        log.debug("read_ahead_failed", error=str(exc))


async def keep_copy(
    keeper: DeadLetterKeeping | None,
    raw: AbstractIncomingMessage,
    origin: Origin,
    reason: str,
    *,
    route: str,
) -> bool:
    """Keep a copy of a dead letter; False (logged) when there is no keeper or the store
    failed: the dead letter then lives in ``reseller.dead-letters`` only."""
    if keeper is None:
        return False
    try:
        async with asyncio.timeout(KEEP_TIMEOUT_SECONDS):
            await keeper.keep(raw, origin, reason, route=route, attempts=origin.retries + 1)
    except Exception as exc:
        log.error("dead_letter_not_kept", error=f"{type(exc).__name__}: {exc}"[:500])
        return False
    return True


def origin_of(raw: AbstractIncomingMessage, *, own_user_id: str, routing_key: str) -> Origin:
    """Who published this delivery. A retry copy is published by the consuming service
    itself (RabbitMQ validates ``user_id``), so only then are its headers about the original
    publication believed; anyone else's are ignored."""
    headers = raw.headers or {}
    if raw.user_id == own_user_id and RETRY_COUNT_HEADER in headers:
        publisher = headers.get(ORIGINAL_PUBLISHER)
        return Origin(
            publisher=str(publisher) if publisher else None,
            exchange=str(headers.get(ORIGINAL_EXCHANGE, "")),
            routing_key=str(headers.get(ORIGINAL_ROUTING_KEY, routing_key)),
            retries=_int(headers.get(RETRY_COUNT_HEADER)),
            waited_ms=_int(headers.get(RETRY_WAITED_HEADER)),
        )
    return Origin(
        publisher=raw.user_id, exchange=raw.exchange or "", routing_key=raw.routing_key or ""
    )


def copied_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A delivery's headers without those the broker set (``x-death``...)."""
    return {
        name: value
        for name, value in (headers or {}).items()
        if name not in _BROKER_HEADERS and not name.startswith(_BROKER_HEADER_PREFIXES)
    }


def _copy(
    raw: AbstractIncomingMessage, *, headers: dict[str, Any], user_id: str
) -> aio_pika.Message:
    """A new publication of a delivery: same body and properties, persistent, published by
    ``user_id`` (RabbitMQ accepts only the connection's own user)."""
    timestamp: datetime | None = raw.timestamp
    return aio_pika.Message(
        raw.body,
        headers=headers,
        content_type=raw.content_type,
        content_encoding=raw.content_encoding,
        delivery_mode=PERSISTENT,
        priority=raw.priority,
        correlation_id=raw.correlation_id,
        reply_to=raw.reply_to,
        message_id=raw.message_id,
        timestamp=timestamp,
        type=raw.type,
        user_id=user_id,
        app_id=raw.app_id,
    )


def replayed_delivery(
    *,
    body: bytes,
    message_id: str,
    correlation_id: str | None,
    publisher: str | None,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
    content_type: str | None,
) -> RabbitMessage:
    """The delivery RabbitMQ made of a kept dead letter, to run it again (``Bus.rerun``).

    ``user_id`` is the publisher RabbitMQ validated the first time (never anyone's say-so
    now), so the consumer judges it exactly as it judged the original. No ``reply_to``: the
    requester is long gone (a refused command publishes ``command.rejected`` instead). It
    is built with ``no_ack``: acking or nacking it is a no-op, there being no delivery to
    settle; a retry it needs goes through the delay queues like any other."""
    properties = Basic.Properties(
        content_type=content_type,
        headers=headers,
        delivery_mode=PERSISTENT.value,
        correlation_id=correlation_id,
        message_id=message_id or None,
        user_id=publisher,
    )
    delivered = DeliveredMessage(
        delivery=Basic.Deliver(
            consumer_tag="replay",
            delivery_tag=0,
            redelivered=True,
            exchange=exchange,
            routing_key=routing_key,
        ),
        header=ContentHeader(body_size=len(body), properties=properties),
        body=body,
        channel=cast(Any, None),  # never used: a no_ack delivery is never settled
    )
    raw = aio_pika.IncomingMessage(delivered, no_ack=True)
    return KeptMessage(raw, body, headers=headers, message_id=message_id or None)


def _int(value: object) -> int:
    if isinstance(value, int | str):
        with contextlib.suppress(ValueError):
            return int(value)
    return 0


def _validation_reason(exc: ValidationError) -> str:
    """A precise, bounded reason: which field, what was wrong."""
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "invalid message: " + "; ".join(parts)
