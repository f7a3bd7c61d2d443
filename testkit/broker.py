"""Keep the shared RabbitMQ clean between tests and after a run.

Quorum queues are Raft clusters: creating and deleting thousands of them in one run
wedged a RabbitMQ 3.10 node here. So a test session declares its queues once, in one
namespace; between tests they are purged, and the namespace is deleted at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import aio_pika

from shared.contracts import REGISTRY
from shared.runtime.settings import SERVICES
from shared.runtime.topology import COMMANDS, DEAD_LETTERS_EXCHANGE, DEAD_LETTERS_QUEUE, EVENTS


async def _each_queue(amqp_url: str, names: Iterable[str], *, delete: bool) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                if delete:
                    await channel.queue_delete(name)
                else:
                    await (await channel.get_queue(name, ensure=False)).purge()
            if channel.is_closed:  # the queue did not exist: the broker closed the channel
                channel = await connection.channel()


async def purge_queues(amqp_url: str, names: Iterable[str]) -> None:
    """Empty these queues (a test's leftovers must not reach the next test)."""
    await _each_queue(amqp_url, names, delete=False)


async def delete_queues(amqp_url: str, names: Iterable[str]) -> None:
    await _each_queue(amqp_url, names, delete=True)


async def delete_namespace(
    amqp_url: str, namespace: str, extra_services: tuple[str, ...] = ()
) -> None:
    """Delete every queue and exchange the topology may have declared under ``namespace``."""
    assert namespace, "refusing to delete the production (empty) namespace"
    names = [f"{namespace}{s}.{key}" for s in (*SERVICES, *extra_services) for key in REGISTRY]
    await delete_queues(amqp_url, [*names, namespace + DEAD_LETTERS_QUEUE])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for exchange in (COMMANDS, EVENTS, DEAD_LETTERS_EXCHANGE):
            await channel.exchange_delete(namespace + exchange)
