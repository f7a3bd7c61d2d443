"""Remove what a test run declared on the shared RabbitMQ, so runs leave nothing behind."""

from __future__ import annotations

import contextlib

import aio_pika

from shared.contracts import REGISTRY
from shared.settings import SERVICES
from shared.topology import COMMANDS, DEAD_LETTERS_EXCHANGE, DEAD_LETTERS_QUEUE, EVENTS


async def delete_namespace(
    amqp_url: str, namespace: str, extra_services: tuple[str, ...] = ()
) -> None:
    """Delete every queue and exchange the topology may have declared under ``namespace``."""
    assert namespace, "refusing to delete the production (empty) namespace"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        names = [f"{namespace}{s}.{key}" for s in (*SERVICES, *extra_services) for key in REGISTRY]
        for name in [*names, namespace + DEAD_LETTERS_QUEUE]:
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.queue_delete(name)
            if channel.is_closed:
                channel = await connection.channel()
        for exchange in (COMMANDS, EVENTS, DEAD_LETTERS_EXCHANGE):
            await channel.exchange_delete(namespace + exchange)
