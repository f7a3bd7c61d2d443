"""The publishing side of a process's broker connection (``BrokerLink``).

One AMQP connection and one channel with publisher confirms carry everything a process
publishes: outbox events, replies, dead letters, retries and its own requests. The same
channel consumes the direct reply-to pseudo-queue, so any number of requests can be in
flight (RabbitMQ delivers each reply to the channel that published its request).

FastStream keeps its own connection for consuming; this one is ours to reopen:
- when the broker closes the connection or the channel, it is reopened after a short,
  growing back-off (0.5 s, 1 s, 2 s, 5 s, then every 10 s), never in a tight loop;
- after ``nacks_before_reopen`` publications in a row were nacked or not confirmed in
  time, it is reopened too: RabbitMQ 3.10 keeps a connection that survived a cluster node's
  loss publishing into stale quorum queue leaders, every publish nacked, until it
  reconnects.

Publications wait for the link while it reopens, up to ``publish_timeout`` seconds, then
fail with ``BrokerUnavailable``; a caller decides whether to try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from aio_pika.exceptions import DeliveryError

from shared.runtime.logging import get_logger

log = get_logger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
RECONNECT_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)


class BrokerUnavailable(Exception):
    """A publication was not confirmed: nacked, timed out, or no connection in time."""


OnReply = Callable[[AbstractIncomingMessage], Awaitable[None]]


class BrokerLink:
    """One connection and one confirmed channel for publishing, and the direct reply-to
    consumer; reopened with back-off when lost or after repeated nacks."""

    def __init__(
        self,
        url: str,
        *,
        on_reply: OnReply,
        on_lost: Callable[[str], None] = lambda reason: None,
        publish_timeout: float = 10.0,
        nacks_before_reopen: int = 3,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        name: str = "link",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        connect: Callable[..., Awaitable[AbstractConnection]] = aio_pika.connect,
    ) -> None:
        self.url = url
        self.name = name
        self.publish_timeout = publish_timeout
        self.nacks_before_reopen = nacks_before_reopen
        self.reconnect_delays = reconnect_delays
        self._on_reply = on_reply
        self._sleep = sleep  # the back-off before each reconnection (tests record it)
        self._open_connection = connect
        self._on_lost = on_lost
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._generation = 0
        self._nacks_in_a_row = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        #: How many times the link was reopened (tests, metrics, logs).
        self.reopened = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._closing

    async def open(self) -> None:
        """Connect now (raises when the broker is unreachable, like the consumer side), then
        keep the link open until ``close``."""
        self._closing = False
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}:supervisor")

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._drop()

    def reopen(self, reason: str) -> None:
        """Drop the connection and open a new one after a short back-off."""
        if self._closing or self._lost.is_set():
            return
        self._lost_reason = reason
        self._ready.clear()
        self._lost.set()

    async def publish(self, exchange: str, message: aio_pika.Message, routing_key: str) -> None:
        """Publish and wait for the broker's confirm; ``BrokerUnavailable`` if it was not
        confirmed within ``publish_timeout`` (waiting for a reopening link included)."""
        generation = -1
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self._ready.wait()
                generation = self._generation
                target = await self._exchange(exchange)
                await target.publish(message, routing_key=routing_key, mandatory=False)
        except DeliveryError as exc:
            self._failed(generation, "publish nacked")
            raise BrokerUnavailable(f"{exchange or 'default exchange'}: nacked") from exc
        except TimeoutError as exc:
            if generation >= 0:  # connected, but no confirm in time
                self._failed(generation, "publish not confirmed in time")
            raise BrokerUnavailable(
                f"{exchange or 'default exchange'}: not confirmed within {self.publish_timeout} s"
            ) from exc
        except BrokerUnavailable:
            raise
        except Exception as exc:  # channel or connection closed under us
            if generation == self._generation and self._channel_closed():
                self.reopen(f"publish failed: {type(exc).__name__}")
            raise BrokerUnavailable(
                f"{exchange or 'default exchange'}: {type(exc).__name__}: {exc}"
            ) from exc
        if generation == self._generation:
            self._nacks_in_a_row = 0

    # --- internals -----------------------------------------------------------------

    def _failed(self, generation: int, reason: str) -> None:
        if generation != self._generation:
            return  # a publication of a connection already replaced
        self._nacks_in_a_row += 1
        if self._nacks_in_a_row >= self.nacks_before_reopen:
            self.reopen(f"{self._nacks_in_a_row} publications in a row failed ({reason})")

    def _channel_closed(self) -> bool:
        channel = self._channel
        return channel is None or channel.is_closed

    async def _exchange(self, name: str) -> AbstractExchange:
        channel = self._channel
        if channel is None:
            raise BrokerUnavailable("not connected")
        if name not in self._exchanges:
            self._exchanges[name] = (
                channel.default_exchange
                if name == ""
                else await channel.get_exchange(name, ensure=False)
            )
        return self._exchanges[name]

    async def _connect(self) -> None:
        connection = await self._open_connection(self.url, timeout=self.publish_timeout)
        try:
            channel = await connection.channel(publisher_confirms=True)
            replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
            await replies.consume(self._on_reply, no_ack=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._generation += 1
        generation = self._generation
        self._connection, self._channel = connection, channel
        self._exchanges = {}
        self._nacks_in_a_row = 0

        def lost(_: Any, exc: BaseException | None = None) -> None:
            if generation == self._generation and not self._closing:
                self.reopen(f"closed by the broker: {exc!r}" if exc else "closed")

        connection.close_callbacks.add(lost)
        channel.close_callbacks.add(lost)
        self._lost.clear()
        self._ready.set()

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._exchanges = {}
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):  # not wait_for: it may swallow a cancel (3.11)
                async with asyncio.timeout(5.0):
                    await connection.close()

    def _delay(self, attempt: int) -> float:
        base = self.reconnect_delays[min(attempt, len(self.reconnect_delays) - 1)]
        return base * random.uniform(0.8, 1.2)  # replicas do not reconnect in step

    async def _supervise(self) -> None:
        while True:
            await self._lost.wait()
            reason = self._lost_reason
            self._ready.clear()
            self._generation += 1  # what was in flight belongs to the dropped connection
            self._on_lost(reason)
            log.warning("broker_link_lost", link=self.name, reason=reason)
            await self._drop()
            attempt, failed_since, last_log = 0, time.monotonic(), 0.0
            while True:
                await self._sleep(self._delay(attempt))
                try:
                    await self._connect()
                except Exception as exc:
                    attempt += 1
                    if time.monotonic() - last_log >= 30.0:  # one line, not one per attempt
                        last_log = time.monotonic()
                        log.error(
                            "broker_link_reconnect_failed",
                            link=self.name,
                            attempts=attempt,
                            down_seconds=round(time.monotonic() - failed_since, 1),
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    continue
                break
            self.reopened += 1
            log.info(
                "broker_link_reopened",
                link=self.name,
                attempts=attempt + 1,
                down_seconds=round(time.monotonic() - failed_since, 1),
            )
