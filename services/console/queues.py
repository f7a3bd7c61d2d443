"""Queue depths for operators (the queues page and ``xo-reseller queues``).

RabbitMQ's management HTTP API when it answers (depth, unacknowledged, consumers, rates;
``make run`` enables the plugin on a local broker), else AMQP passive declarations of the
queues the topology names (depth and consumers only; the rate is then the change of
depth between two looks).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import httpx
from pydantic import BaseModel

from shared.contracts import REGISTRY
from shared.contracts.identities import SERVICE_ROLES, WEB_FACE_ROLES
from shared.runtime.topology import DEAD_LETTERS_QUEUE, DEFAULT_RETRY_DELAYS, Topology


class QueueView(BaseModel):
    name: str
    messages: int
    unacked: int | None = None
    consumers: int
    publish_rate: float | None = None  # messages per second, over the last minutes
    deliver_rate: float | None = None
    depth_rate: float | None = None  # change of depth per minute (passive fallback)

    @property
    def idle_without_consumer(self) -> bool:
        return self.consumers == 0 and not self.name.endswith(DEAD_LETTERS_QUEUE)


class QueuesView(BaseModel):
    source: str  # "management" or "amqp"
    queues: list[QueueView]
    note: str | None = None


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def default_management_url(amqp_url: str) -> str:
    return f"http://{urlsplit(amqp_url).hostname or '127.0.0.1'}:15672"


@dataclass
class QueueWatcher:
    amqp_url: str  # with the operations user's credentials
    namespace: str = ""
    management_url: str | None = None
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    _known: list[str] = field(default_factory=list)
    _known_at: float = 0.0
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)

    async def look(self) -> QueuesView:
        url = self.management_url or default_management_url(self.amqp_url)
        try:
            return await self._management(url)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            view = await self._passive()
            view.note = (
                f"RabbitMQ's management API did not answer at {url} ({type(exc).__name__}): "
                "depth and consumers from AMQP passive declarations; no unacked count"
            )
            return view

    async def _management(self, url: str) -> QueuesView:
        parts = urlsplit(self.amqp_url)
        auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        vhost = quote(vhost_of(self.amqp_url), safe="")
        async with httpx.AsyncClient(base_url=url, auth=auth, timeout=5.0) as client:
            response = await client.get(
                f"/api/queues/{vhost}",
                params={
                    "columns": "name,messages,messages_unacknowledged,consumers,message_stats",
                    "msg_rates_age": 300,
                    "msg_rates_incr": 60,
                },
            )
            response.raise_for_status()
            rows: list[dict[str, Any]] = response.json()
        queues = []
        for row in rows:
            if not str(row["name"]).startswith(self.namespace):
                continue
            stats = row.get("message_stats") or {}
            queues.append(
                QueueView(
                    name=row["name"],
                    messages=int(row.get("messages") or 0),
                    unacked=int(row.get("messages_unacknowledged") or 0),
                    consumers=int(row.get("consumers") or 0),
                    publish_rate=(stats.get("publish_details") or {}).get("rate"),
                    deliver_rate=(stats.get("deliver_get_details") or {}).get("rate"),
                )
            )
        return QueuesView(source="management", queues=sorted(queues, key=lambda q: q.name))

    def candidates(self) -> list[str]:
        """Every queue the topology may declare (consumers' queues, dead letters, delays)."""
        topology = Topology(namespace=self.namespace, retry_delays=self.retry_delays)
        return topology.queue_names((*SERVICE_ROLES, *WEB_FACE_ROLES, "mailer"), REGISTRY)

    async def _passive(self) -> QueuesView:
        now = time.monotonic()
        names = self._known if self._known and now - self._known_at < 300 else self.candidates()
        connection = await aio_pika.connect(self.amqp_url, timeout=5)
        found: list[QueueView] = []
        async with connection:
            channel = await connection.channel()
            for name in names:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    channel = await connection.channel()
                    continue
                result = queue.declaration_result
                depth = int(result.message_count or 0)
                rate = None
                if name in self._last:
                    then, before = self._last[name]
                    minutes = max((now - then) / 60, 1e-6)
                    rate = round((depth - before) / minutes, 2)
                self._last[name] = (now, depth)
                found.append(
                    QueueView(
                        name=name,
                        messages=depth,
                        consumers=int(result.consumer_count or 0),
                        depth_rate=rate,
                    )
                )
            with contextlib.suppress(Exception):
                await channel.close()
        self._known = [q.name for q in found]
        self._known_at = now
        return QueuesView(source="amqp", queues=sorted(found, key=lambda q: q.name))
