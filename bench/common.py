"""Shared by the benchmarks: the system under test, the steps of a sale, its metrics, and
the raw aio-pika baselines (a request/reply round trip, a 3-hop pipeline).

Benchmarks print ratios against a baseline measured in the same run: absolute times
do not carry between noisy machines, ratios do (DESIGN.md, Performance method).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import REGISTRY, Event
from shared.runtime.settings import SERVICES
from testkit.broker import delete_namespace
from testkit.contract_client import Body, ContractClient, read_users
from testkit.processes import LaunchedSystem, launched_system, services_only
from testkit.proofs import minimal_pdf
from tools.embedded_mongo import free_port

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


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


# --- the system under test -------------------------------------------------------------


def http_request(
    method: str, host: str, port: int, path: str, headers: Sequence[str] = (), body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request as sent on a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join([*lines, "", ""]).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (names in lower case) and body of one answer; a body with a
    ``Content-Length`` only (what uvicorn sends for JSON)."""
    status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines if line)
    }
    if "content-length" not in headers:
        raise RuntimeError(f"{status_line}: no Content-Length ({headers})")
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


class ApplianceHttp:
    """What an appliance is to licensing: one keep-alive HTTP/1.1 connection, JSON in and
    out, nothing on top. The raw baseline is AMQP with nothing on top; timing the
    appliance's requests through httpx would add about 1 ms of the client's own per
    request (measured here against a raw socket on ``/health``: 1.30 against 0.23 ms).
    Answers with a ``Content-Length`` only (``read_response``)."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, *, body: object = None, token: str | None = None
    ) -> tuple[int, Body]:
        """The status and the JSON body of one request."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        headers = [] if token is None else [f"Authorization: Bearer {token}"]
        payload = b""
        if body is not None:
            headers.append("Content-Type: application/json")
            payload = json.dumps(body).encode()
        writer.write(http_request(method, self.host, self.port, path, headers, payload))
        status, answer_headers, answer = await read_response(reader)
        if answer_headers.get("connection") == "close":
            await self.close()
        return status, json.loads(answer)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


@dataclass(frozen=True)
class Bench:
    """A launched system (``testkit.processes``), with each service's admin port."""

    system: LaunchedSystem
    admin_ports: dict[str, int]

    def admin_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.admin_ports[service]}"


@contextmanager
def bench_system(
    settings: Mapping[str, str] | None = None, *, web_faces: bool = True
) -> Iterator[Bench]:
    """The system as `make run` starts it, with its own data directory, broker namespace
    and admin ports; its queues and exchanges are deleted once it has stopped.
    ``web_faces=False``: the four domain services only (no reseller space, no console
    and its event log), to compare with trees that had no web faces."""
    admin_ports = {service: free_port() for service in SERVICES}
    env = {f"{s.upper()}_ADMIN_PORT": str(port) for s, port in admin_ports.items()}
    namespace = ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with launched_system(
                AMQP_URL,
                Path(tmp),
                settings={**env, **(settings or {})},
                replicas=None if web_faces else services_only(),
            ) as sut:
                namespace = sut.namespace
                yield Bench(sut, admin_ports)
        finally:
            if namespace:
                asyncio.run(_delete_namespace(namespace))


async def _delete_namespace(namespace: str) -> None:
    await delete_namespace(AMQP_URL, namespace)
    await settle()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (Linux ``/proc``; None elsewhere or
    once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _broker_pids() -> list[int]:
    """The local RabbitMQ node's Erlang VM(s), when the broker runs on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass
class CpuBudget:
    """Where a measured window's CPU went, per process: every process of the system, the
    local broker and this benchmark's own client share the machine's cores, so a sale's
    CPU, not a queue, is what bounds throughput once they are all busy."""

    start: dict[str, float]
    pids: dict[str, list[int]]
    started: float

    @classmethod
    def begin(cls, system: LaunchedSystem) -> CpuBudget:
        pids: dict[str, list[int]] = {"broker (local)": _broker_pids()}
        for name, count in system.replicas.items():
            pids[name] = [p for k in range(count) if (p := system.pid(name, k)) is not None]
        pids["store (embedded)"] = [p for p in [system.pid("store")] if p is not None]
        pids["launcher"] = [system.process.pid]  # it relays the children's log lines
        budget = cls({}, pids, time.perf_counter())
        budget.start = budget._now()
        return budget

    def _now(self) -> dict[str, float]:
        spent = {
            name: sum(s for p in pids if (s := _cpu_seconds(p)) is not None)
            for name, pids in self.pids.items()
        }
        times = os.times()
        spent["bench client"] = times.user + times.system
        return spent

    def report(self, sales: int) -> list[str]:
        """Lines: CPU ms per sale per process, largest first, and how busy the cores were."""
        wall = time.perf_counter() - self.started
        spent = {name: s - self.start.get(name, 0.0) for name, s in self._now().items()}
        total = sum(spent.values())
        cores = os.cpu_count() or 1
        lines = [
            f"CPU per sale: {total / sales * 1000:.0f} ms over all processes; the {cores} cores "
            f"were {total / (wall * cores):.0%} busy with them"
        ]
        for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name}: {seconds / sales * 1000:.1f} ms")
        return lines


def load_average() -> str:
    """The machine's load (1, 5, 15 minutes): other work shares these cores."""
    return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


async def settle() -> None:
    """Let the close callbacks aio-pika schedules when a connection closes run before the
    event loop ends (else Python reports each as a task destroyed while pending)."""
    for _ in range(3):
        await asyncio.sleep(0)  # the done-callbacks already scheduled create their tasks
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if not others:
            return
        await asyncio.wait(others, timeout=2)


# --- the steps of a sale, as an outside system performs them ----------------------------

PROOF = minimal_pdf("Wire transfer proof (bench)")


class BenchClient(ContractClient):
    """The contract client, acting as the contract names, with waits keyed by order.

    ``ContractClient.wait_event`` rescans every event seen on each arrival, for every
    waiter: with hundreds of sales in flight the client, not the system, would be
    measured. Here an event is handed to its waiter by ``(routing key, order_id)``."""

    def __init__(self, system: LaunchedSystem) -> None:
        super().__init__(
            AMQP_URL, system.namespace, read_users(system.data_dir / "broker-users.json")
        )
        self._unclaimed: dict[tuple[str, str], Body] = {}
        self._awaited: dict[tuple[str, str], asyncio.Future[Body]] = {}

    async def __aenter__(self) -> BenchClient:
        await super().__aenter__()
        # Each role's connection opened now, before sales run at once: the base class
        # opens one per concurrent first use and keeps only the last.
        for role in ("storefront", "operations"):
            await self.sender(role)
        return self

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        key = (message.routing_key or "", str(body.get("order_id") or ""))
        future = self._awaited.pop(key, None)
        if future is not None and not future.done():
            future.set_result(body)
        elif key[1]:
            self._unclaimed.setdefault(key, body)

    async def order_event(self, routing_key: str, order_id: str, *, wait_s: float = 30) -> Body:
        """The first ``routing_key`` event about ``order_id`` (already arrived or awaited)."""
        key = (routing_key, order_id)
        if key in self._unclaimed:
            return self._unclaimed.pop(key)
        future: asyncio.Future[Body] = asyncio.get_running_loop().create_future()
        self._awaited[key] = future
        try:
            return await asyncio.wait_for(future, wait_s)
        finally:
            self._awaited.pop(key, None)


async def upload_proof(
    http: httpx.AsyncClient, system: LaunchedSystem, order_id: str, reseller: str
) -> None:
    """``POST /v1/orders/{id}/proofs`` with the internal token, acting for ``reseller``."""
    response = await http.post(
        f"{system.url('orders')}/v1/orders/{order_id}/proofs",
        headers={"Authorization": f"Bearer {system.api_token}", "X-Reseller-Id": reseller},
        files={"file": ("proof.pdf", PROOF, "application/pdf")},
    )
    assert response.status_code == 201, response.text


async def paid_order(
    client: ContractClient,
    http: httpx.AsyncClient,
    system: LaunchedSystem,
    reseller: str,
    order: Body,
) -> str:
    """``order.place`` (with ``order``'s fields), the proof uploaded, accepted by
    operations; returns the order id."""
    placed = await client.ok("order.place", {"reseller_id": reseller, "space": "reseller", **order})
    order_id: str = placed["order_id"]
    await upload_proof(http, system, order_id, reseller)
    await client.ok(
        "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "bench"}
    )
    return order_id


# --- what went through the broker (the services' own counters) --------------------------


@dataclass(frozen=True)
class BrokerCounts:
    """Publications, from the services' ``/metrics``: events from the outboxes, and the
    commands and queries their services took (the bench's and the internal calls); each
    of those is a request, answered by one reply."""

    events: int = 0
    requests: int = 0

    @property
    def published(self) -> int:
        return self.events + 2 * self.requests

    def __sub__(self, other: BrokerCounts) -> BrokerCounts:
        return BrokerCounts(self.events - other.events, self.requests - other.requests)


def _is_event(routing_key: str) -> bool:
    model = REGISTRY.get(routing_key)
    return model is not None and issubclass(model, Event)


async def broker_counts(http: httpx.AsyncClient, bench: Bench) -> BrokerCounts:
    events = requests = 0.0
    for service in SERVICES:
        response = await http.get(bench.admin_url(service) + "/metrics")
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "xo_events_published_total":
                    events += sample.value
                elif (
                    sample.name == "xo_messages_total"
                    and sample.labels["outcome"] != "failed"  # a redelivery, not a publication
                    and not _is_event(sample.labels["routing_key"])
                ):
                    requests += sample.value
    return BrokerCounts(round(events), round(requests))


# --- raw aio-pika baselines --------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    items: int
    hops: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        """Broker publications per second: each item is published once per hop."""
        return self.items * self.hops / self.seconds


async def raw_pipeline(
    amqp_url: str, items: int, *, hops: int = 3, prefetch: int = 256
) -> Pipeline:
    """Ceiling: ``items`` persistent messages through ``hops`` durable quorum queues, each
    publication confirmed; every stage (its own connection, prefetch ``prefetch``) consumes
    one queue and publishes to the next before acking; the last acks. Raw aio-pika, no
    validation, no storage (DESIGN.md, Performance method)."""
    tag = uuid.uuid4().hex[:8]
    names = [f"bench.pipeline.{tag}.{hop}" for hop in range(hops)]
    body = json.dumps({"order_id": "ol_" + "0" * 24, "padding": "x" * 300}).encode()
    connections = [await aio_pika.connect(amqp_url) for _ in range(hops + 1)]
    arrived = 0
    all_arrived = asyncio.Event()
    try:
        channels = []
        for connection in connections:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=prefetch)
            channels.append(channel)
        producer = channels[0]
        for name in names:
            await producer.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

        def stage(
            hop: int, channel: aio_pika.abc.AbstractChannel
        ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
            async def forward(message: AbstractIncomingMessage) -> None:
                nonlocal arrived
                if hop + 1 < hops:
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                        ),
                        routing_key=names[hop + 1],
                    )
                await message.ack()
                if hop + 1 == hops:
                    arrived += 1
                    if arrived == items:
                        all_arrived.set()

            return forward

        for hop, name in enumerate(names):
            channel = channels[hop + 1]
            queue = await channel.get_queue(name, ensure=False)
            await queue.consume(stage(hop, channel))
        window = asyncio.Semaphore(prefetch)

        async def publish() -> None:
            async with window:
                await producer.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=names[0],
                )

        started = time.perf_counter()
        await asyncio.gather(*(publish() for _ in range(items)))
        await asyncio.wait_for(all_arrived.wait(), 120)
        seconds = time.perf_counter() - started
    finally:
        for connection in connections[1:]:  # the stages stop consuming first
            await connection.close()
        cleanup = await connections[0].channel()
        for name in names:
            await cleanup.queue_delete(name)
        await connections[0].close()
    return Pipeline(items, hops, seconds)
