"""Shared by the benchmarks: the raw aio-pika baseline and percentiles.

Benchmarks print ratios against a baseline measured in the same run: absolute times
do not carry between noisy machines, ratios do (DESIGN.md, Performance method).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import aio_pika


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(name: str, samples_ms: list[float]) -> str:
    return (
        f"{name}: n={len(samples_ms)} p50={statistics.median(samples_ms):.2f} ms "
        f"p95={percentile(samples_ms, 95):.2f} ms p99={percentile(samples_ms, 99):.2f} ms"
    )


async def raw_round_trips(amqp_url: str, count: int) -> list[float]:
    """Baseline: one persistent, confirmed request and its reply through a durable queue,
    with raw aio-pika and a consumer that answers at once (no validation, no storage)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        name = f"bench.echo.{uuid.uuid4().hex[:8]}"
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )

        async def echo(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await channel.default_exchange.publish(
                    aio_pika.Message(message.body, correlation_id=message.correlation_id),
                    routing_key=message.reply_to or "",
                )

        consumer_tag = await queue.consume(echo)
        replies: dict[str, asyncio.Future[bytes]] = {}

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            future = replies.pop(message.correlation_id or "", None)
            if future is not None:
                future.set_result(message.body)

        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(on_reply, no_ack=True)
        samples = []
        for _ in range(count):
            correlation_id = uuid.uuid4().hex
            replies[correlation_id] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    b"{}",
                    correlation_id=correlation_id,
                    reply_to="amq.rabbitmq.reply-to",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=name,
            )
            await replies[correlation_id]
            samples.append((time.perf_counter() - started) * 1000)
        await queue.cancel(consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)
    return samples
