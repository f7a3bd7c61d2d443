"""A client that knows only CONTRACT.md: raw AMQP (aio-pika) and HTTP (httpx).

It imports nothing from the product, so the end-to-end tests drive the system exactly
as another internal system or an appliance would.

Identities (CONTRACT.md): given the broker users (``broker-users.json``), it sends each
command as the role the contract names for it (``operations`` for the operations
commands, ``storefront`` for the rest) and can publish an event as its owner; its main
connection (``amqp_url``) only observes events and dead letters.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

Body = dict[str, Any]
Users = Mapping[str, Mapping[str, str]]
# The commands only operations may send (CONTRACT.md, Identities); the rest are the
# storefront's (internal systems acting for a reseller).
OPERATIONS_COMMANDS = frozenset(
    {
        "proof.review",
        "license.suspend",
        "license.reinstate",
        "registration.reissue",
        "deadletter.replay",
        "deadletter.discard",
    }
)
OPERATIONS_QUERIES = frozenset({"license.status", "deadletter.list"})


def read_users(path: Path) -> dict[str, dict[str, str]]:
    users: dict[str, dict[str, str]] = json.loads(path.read_text())
    return users


def url_as(amqp_url: str, user: Mapping[str, str]) -> str:
    """``amqp_url``'s broker and virtual host, connecting as ``user``."""
    parts = urlsplit(amqp_url)
    auth = f"{quote(user['username'], safe='')}:{quote(user['password'], safe='')}"
    netloc = f"{auth}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Sender:
    """One identity's connection: publishes with its ``user_id`` and takes its replies."""

    def __init__(self, user_id: str | None, client: ContractClient) -> None:
        self.user_id = user_id
        self.client = client

    async def open(self, url: str) -> _Sender:
        self.connection = await aio_pika.connect_robust(url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.commands = await self.channel.get_exchange(
            self.client.ns + "reseller.commands", ensure=False
        )
        self.events = await self.channel.get_exchange(
            self.client.ns + "reseller.events", ensure=False
        )
        reply_queue = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(self.client._on_reply, no_ack=True)
        return self


class ContractClient:
    def __init__(self, amqp_url: str, namespace: str = "", users: Users | None = None) -> None:
        self.amqp_url = amqp_url
        self.ns = namespace
        self.users = dict(users or {})
        self.events: list[tuple[str, Body, AbstractIncomingMessage]] = []
        self._pending: dict[str, asyncio.Future[Body]] = {}
        self._event_arrived = asyncio.Condition()
        self._senders: dict[str, _Sender] = {}

    async def __aenter__(self) -> ContractClient:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        # Declared with the contract's arguments (idempotent), so the client may start first.
        await self.channel.declare_exchange(
            self.ns + "reseller.commands", aio_pika.ExchangeType.TOPIC, durable=True
        )
        events = await self.channel.declare_exchange(
            self.ns + "reseller.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key="#")
        await queue.consume(self._on_event, no_ack=True)
        self._senders[""] = await _Sender(None, self).open(self.amqp_url)
        return self

    async def __aexit__(self, *_: object) -> None:
        for sender in self._senders.values():
            await sender.connection.close()
        await self.connection.close()

    def role_for(self, routing_key: str) -> str:
        """The role the contract lets send ``routing_key``."""
        if routing_key in OPERATIONS_COMMANDS | OPERATIONS_QUERIES:
            return "operations"
        return "storefront"

    async def sender(self, role: str | None) -> _Sender:
        """``role``'s connection; the main (observer) identity when no users are known."""
        key = role if role and self.users else ""
        if key not in self._senders:
            user = self.users[key]
            self._senders[key] = await _Sender(user["username"], self).open(
                url_as(self.amqp_url, user)
            )
        return self._senders[key]

    def forget(self, role: str) -> None:
        """Drop ``role``'s connection (the broker closed its channel): the next use opens
        a new one."""
        sender = self._senders.pop(role, None)
        if sender is not None:
            asyncio.get_running_loop().create_task(sender.connection.close())

    def expect_reply(self, correlation_id: str) -> asyncio.Future[Body]:
        """A future for the reply carrying ``correlation_id``."""
        future: asyncio.Future[Body] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        return future

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
        as_role: str | None = None,
    ) -> str:
        """Publish a command (persistent, confirmed) as ``as_role`` (default: the role the
        contract names for it); returns its message id."""
        message_id = message_id or str(uuid.uuid4())
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        sender = await self.sender(as_role or self.role_for(routing_key))
        await sender.commands.publish(
            aio_pika.Message(
                payload,
                message_id=message_id,
                correlation_id=correlation_id or str(uuid.uuid4()),
                content_type="application/json",
                reply_to=reply_to,
                user_id=sender.user_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )
        return message_id

    async def publish_event(
        self,
        routing_key: str,
        body: Body | bytes,
        *,
        message_id: str,
        correlation_id: str | None = None,
        as_role: str | None = None,
    ) -> None:
        """Publish an event as its owner (or a redelivery, or a forger) would; ``bytes`` are
        sent as they are (a redelivery of the very body)."""
        sender = await self.sender(as_role)
        await sender.events.publish(
            aio_pika.Message(
                body if isinstance(body, bytes) else json.dumps(body).encode(),
                message_id=message_id,
                correlation_id=correlation_id,
                content_type="application/json",
                user_id=sender.user_id,
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
        as_role: str | None = None,
    ) -> Body:
        """Request/reply over direct reply-to; returns the ``{ok, result|error}`` envelope."""
        correlation_id = str(uuid.uuid4())
        future = self.expect_reply(correlation_id)
        await self.send(
            routing_key,
            body,
            message_id=message_id,
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=correlation_id,
            as_role=as_role,
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
