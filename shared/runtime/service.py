"""Wiring in one place: a service's broker, database, bus, outbox relay and HTTP app.

Each service's ``app.py`` only says *what* it wires (``Wiring``: routes, HTTP routes,
indexes, the outboxes to publish, periodic jobs); this module does the *how*, the same
way for all four.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel

from shared.basics.clock import Clock, SystemClock
from shared.runtime.http import add_edge
from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.messaging import Bus, Route
from shared.runtime.settings import Settings
from shared.runtime.store import (
    Aggregate,
    DocumentStore,
    Inbox,
    OutboxRelay,
    Unknown,
    connect,
    database,
)
from shared.runtime.topology import Topology

A = TypeVar("A", bound=Aggregate)
log = get_logger(__name__)


@dataclass
class Wiring:
    """What one service plugs into the runtime."""

    routes: list[Route]
    http: APIRouter | None = None
    setup: Callable[[], Awaitable[None]] | None = None  # indexes, keys: run once at start
    # The stores whose outboxes the relay publishes (indexed on ``outbox_pending`` at start).
    # A store left out here never has its events published.
    outboxes: list[DocumentStore[Any]] = field(default_factory=list)
    # Periodic jobs by name: one pass each, given the time. The runtime calls them every
    # JOB_INTERVAL_SECONDS; tests call a pass directly with their clock, never sleeping.
    periodic: dict[str, Callable[[datetime], Awaitable[object]]] = field(default_factory=dict)


class Runtime:
    """The I/O a service runs on, built from settings (tests build it with their own)."""

    def __init__(self, service: str, settings: Settings, clock: Clock | None = None) -> None:
        if not settings.mongodb_url:
            raise RuntimeError(
                "MONGODB_URL is not set: start the system with `make run`, which starts the "
                "embedded store, or point MONGODB_URL at a MongoDB server"
            )
        self.service = service
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.broker = RabbitBroker(
            settings.amqp_url,
            logger=None,  # per-message framework logs cost throughput; we log our own events
            default_channel=Channel(prefetch_count=settings.prefetch),
            graceful_timeout=10.0,
        )
        self.topology = Topology(settings.amqp_namespace, settings.delivery_limit)
        self.mongo = connect(settings.mongodb_url)
        self.db = database(self.mongo, settings.mongodb_db_prefix, service)
        self.inbox = Inbox(self.db["inbox"])
        self.bus = Bus(
            self.broker,
            self.topology,
            service=service,
            inbox=self.inbox,
            clock=self.clock,
            rpc_timeout=settings.rpc_timeout_seconds,
        )
        self.relay = OutboxRelay(self.bus.publish_entry, poll_seconds=settings.outbox_poll_seconds)
        self._tasks: list[asyncio.Task[Any]] = []
        self.periodic: dict[str, Callable[[datetime], Awaitable[object]]] = {}
        self.routing_keys: list[str] = []

    def store(self, collection: str, model: type[A], *, unknown: Unknown) -> DocumentStore[A]:
        """A store for one aggregate kind; each save wakes the relay. Its outbox is published
        once the service names it in ``Wiring.outboxes``."""
        return DocumentStore(self.db[collection], model, unknown=unknown, on_saved=self.relay.wake)

    async def start(self, wiring: Wiring) -> None:
        await self.broker.connect()
        await self.topology.declare(self.broker)
        await self.inbox.collection.create_index("at")
        if wiring.setup is not None:
            await wiring.setup()
        await self.relay.watch([store.collection for store in wiring.outboxes])
        for route in wiring.routes:
            self.bus.subscribe(route)
        await self.broker.start()
        self.periodic = {"inbox_purge": self.purge_inbox, **wiring.periodic}
        self.routing_keys = [route.message.ROUTING_KEY for route in wiring.routes]
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.service}:relay"))
        for name, tick in self.periodic.items():
            self._tasks.append(
                asyncio.create_task(self._every(name, tick), name=f"{self.service}:{name}")
            )
        log.info("service_started", routes=[r.message.ROUTING_KEY for r in wiring.routes])

    async def purge_inbox(self, now: datetime) -> int:
        retention = timedelta(days=self.settings.inbox_retention_days)
        return await self.inbox.purge(older_than=now - retention)

    async def _every(self, name: str, tick: Callable[[datetime], Awaitable[object]]) -> None:
        while True:
            try:
                await tick(self.clock.now())
            except Exception:
                log.exception("periodic_job_failed", job=name)
            await asyncio.sleep(self.settings.job_interval_seconds)

    async def stop(self) -> None:
        await self.broker.stop()  # stop consuming first: in-flight handlers finish
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.mongo.close()
        log.info("service_stopped")

    async def readiness(self) -> dict[str, bool]:
        checks = {"broker": False, "database": False}
        with suppress(Exception):
            checks["broker"] = await self.broker.ping(timeout=2.0)
        with suppress(Exception):
            await asyncio.wait_for(self.db.command("ping"), timeout=2.0)
            checks["database"] = True
        return checks


def http_app(runtime: Runtime, wiring: Wiring, *, title: str) -> FastAPI:
    """The service's ASGI app; its lifespan starts and stops the runtime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start(wiring)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, version="1", lifespan=lifespan)
    add_edge(app, service=runtime.service, ready=runtime.readiness)
    if wiring.http is not None:
        app.include_router(wiring.http)
    return app


def serve(service: str, wire: Callable[[Runtime], Wiring], *, title: str) -> None:
    """Entry point of ``python -m services.<service>``: run until SIGTERM or Ctrl-C."""
    settings = Settings()
    configure_logging(service=service, fmt=settings.log_format, level=settings.log_level)
    runtime = Runtime(service, settings)
    app = http_app(runtime, wire(runtime), title=title)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.port_of(service),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()
