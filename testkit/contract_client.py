"""A client that knows only CONTRACT.md: raw AMQP (aio-pika) and HTTP (httpx).

It imports nothing from the product, so the end-to-end tests drive the system exactly
as another internal system or an appliance would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

Body = dict[str, Any]


class ContractClient:
    def __init__(self, amqp_url: str, namespace: str = "") -> None:
        self.amqp_url = amqp_url
        self.ns = namespace
        self.events: list[tuple[str, Body, AbstractIncomingMessage]] = []
        self._pending: dict[str, asyncio.Future[Body]] = {}
        self._event_arrived = asyncio.Condition()

    async def __aenter__(self) -> ContractClient:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        # Declared with the contract's arguments (idempotent), so the client may start first.
        self.commands = await self.channel.declare_exchange(
            self.ns + "reseller.commands", aio_pika.ExchangeType.TOPIC, durable=True
        )
        events = await self.channel.declare_exchange(
            self.ns + "reseller.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.events_exchange = events
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key="#")
        await queue.consume(self._on_event, no_ack=True)
        reply_queue = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body))

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        async with self._event_arrived:
            body = json.loads(message.body)
            body.setdefault("_message_id", message.message_id)  # for tests that resend it
            self.events.append((message.routing_key or "", body, message))
            self._event_arrived.notify_all()

    async def send(
        self,
        routing_key: str,
        body: Body | bytes,
        *,
        message_id: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish a command (persistent, confirmed); returns its message id."""
        message_id = message_id or str(uuid.uuid4())
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.commands.publish(
            aio_pika.Message(
                payload,
                message_id=message_id,
                correlation_id=correlation_id or str(uuid.uuid4()),
                content_type="application/json",
                reply_to=reply_to,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )
        return message_id

    async def publish_event(self, routing_key: str, body: Body, *, message_id: str) -> None:
        """Publish an event as another system (or a redelivery) would."""
        await self.events_exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )

    async def request(
        self,
        routing_key: str,
        body: Body | bytes,
        *,
        message_id: str | None = None,
        timeout: float = 15,
    ) -> Body:
        """Request/reply over direct reply-to; returns the ``{ok, result|error}`` envelope."""
        correlation_id = str(uuid.uuid4())
        future: asyncio.Future[Body] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        await self.send(
            routing_key,
            body,
            message_id=message_id,
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=correlation_id,
        )
        return await asyncio.wait_for(future, timeout)

    async def ok(self, routing_key: str, body: Body, **kwargs: Any) -> Body:
        reply = await self.request(routing_key, body, **kwargs)
        assert reply["ok"] is True, reply
        result: Body = reply["result"]
        return result

    async def wait_event(
        self, routing_key: str, where: Callable[[Body], bool] = lambda _: True, timeout: float = 15
    ) -> Body:
        def found() -> Body | None:
            return next((b for k, b, _ in self.events if k == routing_key and where(b)), None)

        async with self._event_arrived:
            await asyncio.wait_for(
                self._event_arrived.wait_for(lambda: found() is not None), timeout
            )
        result = found()
        assert result is not None
        return result

    async def dead_letters(
        self, *, wait_for: int = 1, timeout: float = 15
    ) -> list[AbstractIncomingMessage]:
        """Take the messages in ``reseller.dead-letters`` (at least ``wait_for`` of them)."""
        queue = await self.channel.get_queue(self.ns + "reseller.dead-letters", ensure=False)
        taken: list[AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(taken) < wait_for and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                taken.append(message)
        return taken
