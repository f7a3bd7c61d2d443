"""The publishing link (shared/runtime/link.py) against a scripted broker: repeated nacks
reopen the connection, after a back-off that grows while reconnecting fails; publications
wait for the reopened link; calls in flight are told at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import DeliveryError
from pamqp.commands import Basic

from shared.runtime.link import BrokerLink, BrokerUnavailable


class Callbacks(set[Callable[..., Any]]):
    def fire(self, sender: Any, exc: BaseException | None) -> None:
        for callback in list(self):
            callback(sender, exc)


class Broker:
    """What the link sees of RabbitMQ: connections that ack or nack as scripted."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []  # "ack" / "nack", in order; then "ack"
        self.connections: list[Connection] = []
        self.refusals = 0  # the next connection attempts that fail
        self.published: list[tuple[int, str]] = []

    async def connect(self, url: str, **_: Any) -> Connection:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("connection refused")
        connection = Connection(self, len(self.connections) + 1)
        self.connections.append(connection)
        return connection


class Connection:
    def __init__(self, broker: Broker, number: int) -> None:
        self.broker = broker
        self.number = number
        self.is_closed = False
        self.close_callbacks = Callbacks()
        self.channels: list[Channel] = []

    async def channel(self, publisher_confirms: bool = True) -> Channel:
        assert publisher_confirms
        channel = Channel(self)
        self.channels.append(channel)
        return channel

    async def close(self) -> None:
        self.is_closed = True


class Channel:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.is_closed = False
        self.close_callbacks = Callbacks()
        self.default_exchange = Exchange(self)
        self.consumers: list[str] = []

    async def get_exchange(self, name: str, *, ensure: bool) -> Exchange:
        return Exchange(self)

    async def get_queue(self, name: str, *, ensure: bool) -> Queue:
        return Queue(self, name)


class Queue:
    def __init__(self, channel: Channel, name: str) -> None:
        self.channel, self.name = channel, name

    async def consume(self, callback: Any, *, no_ack: bool) -> str:
        self.channel.consumers.append(self.name)
        return "ctag"


class Exchange:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: Any) -> None:
        broker = self.channel.connection.broker
        outcome = broker.outcomes.pop(0) if broker.outcomes else "ack"
        await asyncio.sleep(0)
        if outcome == "nack":
            raise DeliveryError(None, Basic.Nack())
        broker.published.append((self.channel.connection.number, routing_key))


@pytest.fixture
def broker() -> Broker:
    return Broker()


async def replies(_: Any) -> None:
    return None


def opened_link(broker: Broker, lost: list[str], waits: list[float], **options: Any) -> BrokerLink:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    return BrokerLink(
        "amqp://x",
        on_reply=replies,
        on_lost=lost.append,
        publish_timeout=2.0,
        nacks_before_reopen=3,
        reconnect_delays=(0.5, 1.0, 2.0),
        sleep=sleep,
        connect=cast(Callable[..., Awaitable[AbstractConnection]], broker.connect),
        **options,
    )


async def publish(link: BrokerLink, key: str = "order.placed") -> None:
    await link.publish("reseller.events", aio_pika.Message(b"{}"), key)


async def until(condition: Callable[[], bool]) -> None:
    """Let the link's supervisor run until ``condition`` holds (no time passes)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_three_nacks_in_a_row_reopen_the_connection_after_a_short_back_off(
    broker: Broker,
) -> None:
    lost: list[str] = []
    waits: list[float] = []
    link = opened_link(broker, lost, waits)
    await link.open()
    try:
        assert broker.connections[0].channels[0].consumers == ["amq.rabbitmq.reply-to"]
        broker.outcomes = ["nack", "nack", "nack"]
        for _ in range(3):
            with pytest.raises(BrokerUnavailable, match="nacked"):
                await publish(link)
        await publish(link)  # waits for the new connection, then goes through
        assert len(broker.connections) == 2 and broker.connections[0].is_closed
        assert broker.published == [(2, "order.placed")]
        assert broker.connections[1].channels[0].consumers == ["amq.rabbitmq.reply-to"]
        assert lost == ["3 publications in a row failed (publish nacked)"]
        assert len(waits) == 1 and 0.4 <= waits[0] <= 0.6  # a little, not at once
        assert link.reopened == 1
    finally:
        await link.close()


async def test_a_confirmed_publication_resets_the_count_of_nacks(broker: Broker) -> None:
    lost: list[str] = []
    link = opened_link(broker, lost, [])
    await link.open()
    try:
        broker.outcomes = ["nack", "nack", "ack", "nack", "nack", "ack"]
        for outcome in list(broker.outcomes):
            if outcome == "nack":
                with pytest.raises(BrokerUnavailable):
                    await publish(link)
            else:
                await publish(link)
        assert len(broker.connections) == 1 and lost == []
    finally:
        await link.close()


async def test_reconnecting_backs_off_more_while_the_broker_refuses(broker: Broker) -> None:
    lost: list[str] = []
    waits: list[float] = []
    link = opened_link(broker, lost, waits)
    await link.open()
    try:
        broker.refusals = 3
        first = broker.connections[0]
        first.close_callbacks.fire(first, ConnectionError("node down"))  # the broker went away
        assert not link.ready
        await until(lambda: link.ready)
        assert len(waits) == 4  # three refused attempts, then the one that worked
        for wait, base in zip(waits, [0.5, 1.0, 2.0, 2.0], strict=True):
            assert 0.8 * base <= wait <= 1.2 * base
        assert lost == ["closed by the broker: ConnectionError('node down')"]
        await publish(link)
        assert broker.published == [(2, "order.placed")]
    finally:
        await link.close()


async def test_a_publication_waits_for_the_link_no_longer_than_its_timeout(
    broker: Broker,
) -> None:
    waits: list[float] = []
    link = opened_link(broker, [], waits)
    link.publish_timeout = 0.05
    await link.open()
    never = asyncio.Event()

    async def stuck(_: float) -> None:
        await never.wait()  # the broker stays away

    link._sleep = stuck
    try:
        first = broker.connections[0]
        first.close_callbacks.fire(first, None)
        with pytest.raises(BrokerUnavailable, match=r"not confirmed within 0\.05 s"):
            await publish(link)
    finally:
        await link.close()
