"""Keep the shared RabbitMQ clean between tests and after a run.

Quorum queues are Raft clusters: creating and deleting thousands of them in one run
wedged a RabbitMQ 3.10 node here. So a test session declares its queues once, in one
virtual host of its own with its own broker users (CONTRACT.md, Identities); between
tests the queues are purged, and the virtual host and users are deleted at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import uuid4

import aio_pika

from shared.contracts import REGISTRY
from shared.runtime.identity import Credentials, read_users
from shared.runtime.settings import SERVICES
from shared.runtime.topology import (
    COMMANDS,
    DEAD_LETTERS_EXCHANGE,
    DEAD_LETTERS_QUEUE,
    DEFAULT_RETRY_DELAYS,
    EVENTS,
    RETRY_EXCHANGE,
    delay_queue_names,
)
from tools import broker_users


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
    amqp_url: str,
    namespace: str,
    extra_services: tuple[str, ...] = (),
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
) -> None:
    """Delete every queue and exchange the topology may have declared under ``namespace``
    (the delay queues of ``retry_delays``: those of RETRY_DELAYS_SECONDS)."""
    assert namespace, "refusing to delete the production (empty) namespace"
    names = [f"{namespace}{s}.{key}" for s in (*SERVICES, *extra_services) for key in REGISTRY]
    delays = delay_queue_names(namespace, retry_delays)
    await delete_queues(amqp_url, [*names, namespace + DEAD_LETTERS_QUEUE, *delays])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for exchange in (COMMANDS, EVENTS, DEAD_LETTERS_EXCHANGE, RETRY_EXCHANGE):
            await channel.exchange_delete(namespace + exchange)


@dataclass(frozen=True)
class BrokerSession:
    """A test session's own corner of the broker: a virtual host, every role's user
    (``<prefix><role>``), and ``guest`` with all rights there, standing for anyone with
    broker access (the observer of events and dead letters, and the attacker)."""

    admin_url: str
    vhost: str
    prefix: str
    users_file: Path

    def users(self) -> dict[str, Credentials]:
        return read_users(self.users_file)

    def url_of(self, role: str) -> str:
        """An AMQP URL connecting as ``role``'s user."""
        credentials = self.users()[role]
        parts = urlsplit(self.admin_url)
        auth = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}"
        netloc = f"{auth}@{parts.hostname}:{parts.port or 5672}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def open_session(amqp_url: str, workdir: Path, *, kind: str = "t") -> BrokerSession:
    """Create a virtual host and the users of every role (one rabbitmqctl call)."""
    run = uuid4().hex[:10]
    vhost = f"xo-{kind}{run}"
    prefix = f"{kind}{run}-"
    users_file = workdir / "broker-users.json"
    users = broker_users.credentials_for(users_file, prefix=prefix)
    document = broker_users.definitions(users, vhost=vhost, namespace="")
    guest = urlsplit(amqp_url).username or "guest"
    document["permissions"].append(
        {"user": guest, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    )
    broker_users.import_definitions(document)
    return BrokerSession(with_vhost(amqp_url, vhost), vhost, prefix, users_file)


def close_session(session: BrokerSession) -> None:
    """Delete the virtual host (its queues and exchanges with it) and the users."""
    if broker_users.rabbitmqctl() is not None:
        broker_users.run_ctl(["delete_vhost", session.vhost])
    broker_users.delete_users(session.users().values())
