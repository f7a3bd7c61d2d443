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
   with ``idempotency_key_reused``, nothing applied;
5. the handler's ``Refused`` -> ``{"ok": false, ...}`` reply, or ``command.rejected``
   when there is no ``reply_to``;
6. any other exception is transient -> nack and redelivery, until the queue's
   delivery limit dead-letters it. The consumer never crash-loops.

Everything this runtime publishes carries the service's own ``user_id``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

import structlog
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from pydantic import BaseModel, ValidationError

from shared.basics.clock import Clock
from shared.basics.errors import ErrorCode, Refused
from shared.contracts import REGISTRY, Command, ErrorBody, Event, Message, Query, Reply
from shared.contracts.identities import allowed_publishers, may_publish, role_of
from shared.contracts.system import CommandRejected
from shared.runtime import metrics
from shared.runtime.identity import BrokerIdentity
from shared.runtime.inbox import Inbox, body_digest
from shared.runtime.logging import get_logger
from shared.runtime.store import OutboxEntry
from shared.runtime.topology import Topology

log = get_logger(__name__)
JSON = "application/json"
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class Delivery:
    """What a handler knows of the message it handles, besides its body."""

    message_id: str
    correlation_id: str | None
    routing_key: str
    publisher: str | None = None  # the validated broker user (``user_id``) that sent it


Handler = Callable[[Any, Delivery], Awaitable[BaseModel | None]]


@dataclass(frozen=True)
class Route:
    message: type[Message]
    handler: Handler


class UpstreamUnavailable(Exception):
    """Another service did not answer in time: transient, so the message is redelivered."""


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    """Hand the raw bytes to the runtime, which validates them itself to dead-letter precisely."""
    return message.body


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
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.service = service
        self.identity = identity
        self.user_prefix = user_prefix
        self.inbox = inbox
        self.clock = clock
        self.rpc_timeout = rpc_timeout

    # --- publishing ------------------------------------------------------------------

    async def publish_entry(self, entry: OutboxEntry) -> None:
        """Publish one outbox entry, persistent, and wait for the broker's confirm."""
        await self.broker.publish(
            entry.body.encode(),
            exchange=self.topology.events,
            routing_key=entry.routing_key,
            message_id=entry.event_id,
            correlation_id=entry.correlation_id,
            content_type=JSON,
            message_type=entry.routing_key,
            timestamp=entry.occurred_at,
            headers={"schema-version": REGISTRY[entry.routing_key].SCHEMA_VERSION},
            user_id=self.identity.user_id,
            persist=True,
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

    async def call(
        self, command: Command, result: type[R], *, message_id: str, correlation_id: str | None
    ) -> R:
        """Request/reply to the owning service; its refusal is raised here as ``Refused``."""
        try:
            response = await self.broker.request(
                command.model_dump_json().encode(),
                exchange=self.topology.commands,
                routing_key=command.ROUTING_KEY,
                message_id=message_id,
                correlation_id=correlation_id,
                content_type=JSON,
                user_id=self.identity.user_id,
                timeout=self.rpc_timeout,
            )
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"{command.ROUTING_KEY}: no answer in time") from exc
        reply = Reply[result].model_validate_json(response.body)  # type: ignore[valid-type]
        if reply.error is not None:
            raise Refused(reply.error.code, reply.error.message)
        assert reply.result is not None
        return reply.result

    # --- consuming -------------------------------------------------------------------

    def subscribe(self, route: Route) -> None:
        queue = self.topology.queue(self.service, route.message.ROUTING_KEY)
        exchange = self.topology.exchange_of(route.message)

        async def on_message(body: bytes, message: RabbitMessage) -> None:
            await self.consume(route, message)

        self.broker.subscriber(
            queue,
            exchange,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            decoder=_raw_body,
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
            outcome = await self._handle(route, message)
        except Exception:
            outcome = "failed"
            log.exception("message_failed", delivery_count=_delivery_count(message))
            # Back off a little before the redelivery; the queue's delivery limit ends it.
            await asyncio.sleep(min(0.2 * (_delivery_count(message) + 1), 2.0))
            await message.nack(requeue=True)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "correlation_id", "routing_key")
        metrics.MESSAGES.labels(self.service, key, outcome).inc()
        metrics.HANDLING_SECONDS.labels(self.service, key).observe(time.perf_counter() - started)

    async def _handle(self, route: Route, message: RabbitMessage) -> str:
        raw = message.raw_message
        key = route.message.ROUTING_KEY
        message_id = (raw.message_id or "").strip()
        if not message_id:  # aiormq always sets one; other AMQP clients may not, or send blanks
            reason = "missing message_id: every message needs a unique one"
            await self._refuse(message, route, ErrorCode.INVALID_MESSAGE, reason, message_id="")
            await self.dead_letter(message, reason)
            return "invalid"
        role = role_of(raw.user_id, self.user_prefix)
        if not may_publish(role, route.message):
            allowed = ", ".join(sorted(allowed_publishers(route.message))) or "nobody"
            reason = f"{raw.user_id or 'a publisher with no user_id'} may not publish {key}"
            await self._refuse(message, route, ErrorCode.FORBIDDEN, reason, message_id=message_id)
            await self.dead_letter(
                message, f"unauthorized_publisher: {reason} (allowed: {allowed})"
            )
            return "unauthorized"
        try:
            payload = route.message.model_validate_json(raw.body)
        except ValidationError as exc:
            reason = _validation_reason(exc)
            await self.dead_letter(message, reason)
            if raw.reply_to:
                await self._reply(
                    message,
                    reply_body(error=ErrorBody(code=ErrorCode.INVALID_MESSAGE, message=reason)),
                )
            return "invalid"

        remembers = not issubclass(route.message, Query)
        if remembers:
            earlier = await self.inbox.claim(
                self.service, message_id, routing_key=key, body=raw.body, at=self.clock.now()
            )
            if earlier is not None and not earlier.same_request(key, body_digest(key, raw.body)):
                reason = (
                    f"message_id {message_id} was already used for another request "
                    f"({earlier.routing_key or 'unknown'}); use a new id for a new request"
                )
                await self._refuse(
                    message, route, ErrorCode.IDEMPOTENCY_KEY_REUSED, reason, message_id=message_id
                )
                if not issubclass(route.message, Command):  # nobody to answer: keep it
                    await self.dead_letter(message, f"idempotency_key_reused: {reason}")
                else:
                    await message.ack()
                return "refused"
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
            publisher=raw.user_id,
        )
        outcome = "ok"
        try:
            result = await route.handler(payload, delivery)
            body = reply_body(result=result) if result is not None else None
        except Refused as refusal:
            outcome = "refused"
            error = ErrorBody(code=refusal.code, message=refusal.message)
            body = reply_body(error=error)
            log.info("command_refused", code=str(refusal.code), reason=refusal.message)
            if not raw.reply_to and isinstance(payload, Command):
                await self._publish_rejection(key, message_id, error, raw.correlation_id)
        if raw.reply_to and body is not None:
            await self._reply(message, body)
        if remembers:
            await self.inbox.complete(
                self.service,
                message_id,
                reply=body.decode() if body else None,
                at=self.clock.now(),
            )
        await message.ack()
        return outcome

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
        raw = message.raw_message
        await self.broker.publish(
            body,
            routing_key=raw.reply_to or "",
            correlation_id=raw.correlation_id,
            content_type=JSON,
            user_id=self.identity.user_id,
            mandatory=False,
        )

    async def dead_letter(self, message: RabbitMessage, reason: str) -> None:
        """Move a message to ``reseller.dlx`` with the reason in its headers, then ack it."""
        raw = message.raw_message
        key = raw.routing_key or ""
        headers = dict(raw.headers or {})
        headers.update(
            {
                "x-death-reason": reason[:4000],
                "x-original-publisher": raw.user_id or "",
                "x-original-exchange": raw.exchange or "",
                "x-original-routing-key": key,
                "x-rejected-by": self.service,
                "x-rejected-at": self.clock.now().isoformat(),
            }
        )
        await self.broker.publish(
            raw.body,
            exchange=self.topology.dead_letters,
            routing_key=key,
            message_id=raw.message_id,
            correlation_id=raw.correlation_id,
            content_type=raw.content_type,
            headers=headers,
            user_id=self.identity.user_id,
            persist=True,
        )
        await message.ack()
        metrics.DEAD_LETTERED.labels(self.service, key).inc()
        log.warning("message_dead_lettered", reason=reason)


def _delivery_count(message: RabbitMessage) -> int:
    value = (message.raw_message.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int | str) else 0


def _validation_reason(exc: ValidationError) -> str:
    """A precise, bounded reason: which field, what was wrong."""
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "invalid message: " + "; ".join(parts)
