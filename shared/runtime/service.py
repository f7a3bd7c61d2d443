"""Wiring in one place: a service's broker, database, bus, outbox relay and HTTP app.

Each service's ``app.py`` only says *what* it wires (``Wiring``: routes, HTTP routes,
indexes, the outboxes to publish, periodic jobs); this module does the *how*, the same
way for all four.
"""

from __future__ import annotations

import asyncio
import gc
import sys
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
from shared.runtime.dead_letters import DeadLetter, DeadLetterKeeper, unknown_dead_letter
from shared.runtime.http import add_edge, admin_app
from shared.runtime.identity import BrokerIdentity
from shared.runtime.inbox import Inbox
from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.messaging import Bus, RetryPolicy, Route
from shared.runtime.outbox import OutboxRelay, relay_id
from shared.runtime.settings import Settings
from shared.runtime.store import (
    Aggregate,
    DocumentStore,
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
    # Routes that take files: (path regex, body limit in bytes); every other request is
    # limited to a few KB before it is read (shared.runtime.http.BodyLimit).
    large_bodies: list[tuple[str, int]] = field(default_factory=list)
    setup: Callable[[], Awaitable[None]] | None = None  # indexes, keys: run once at start
    # The stores whose outboxes the relay publishes (indexed on ``outbox_pending`` at start).
    # A store left out here never has its events published.
    outboxes: list[DocumentStore[Any]] = field(default_factory=list)
    # Periodic jobs by name: one pass each, given the time. The runtime calls them every
    # JOB_INTERVAL_SECONDS; tests call a pass directly with their clock, never sleeping.
    periodic: dict[str, Callable[[datetime], Awaitable[object]]] = field(default_factory=dict)


class Runtime:
    """The I/O a service runs on, built from settings (tests build it with their own)."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        clock: Clock | None = None,
        *,
        role: str | None = None,
    ) -> None:
        if not settings.mongodb_url:
            raise RuntimeError(
                "MONGODB_URL is not set: start the system with `make run`, which starts the "
                "embedded store, or point MONGODB_URL at a MongoDB server"
            )
        self.service = service
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # The broker role it acts as: a service's own, or a web face's (the reseller space
        # is ``storefront``); its queues are named after that role (``<role>.<key>``).
        self.role = role or service
        # Its own broker user, or no start at all (CONTRACT.md, Identities).
        self.identity = BrokerIdentity.resolve(
            role=self.role,
            amqp_url=settings.amqp_url,
            prefix=settings.amqp_user_prefix,
            users_file=settings.users_file(),
        )
        self.broker = RabbitBroker(
            self.identity.url,
            logger=None,  # per-message framework logs cost throughput; we log our own events
            apply_types=False,  # the one subscriber takes the delivery whole (messaging.py)
            default_channel=Channel(prefetch_count=settings.prefetch),
            graceful_timeout=10.0,
        )
        self.topology = Topology(
            settings.amqp_namespace,
            settings.delivery_limit,
            retry_delays=tuple(settings.retry_delays_seconds),
        )
        self.mongo = connect(settings.mongodb_url)
        self.db = database(self.mongo, settings.mongodb_db_prefix, service)
        self.inbox = Inbox(self.db["inbox"])
        self.bus = Bus(
            self.broker,
            self.topology,
            service=self.role,
            identity=self.identity,
            user_prefix=settings.amqp_user_prefix,
            inbox=self.inbox,
            clock=self.clock,
            rpc_timeout=settings.rpc_timeout_seconds,
            retry=RetryPolicy(total_seconds=settings.retry_total_seconds),
            publish_timeout=settings.publish_timeout_seconds,
            nacks_before_reopen=settings.publish_nacks_before_reopen,
        )
        self.relay = OutboxRelay(
            self.bus.publish_entry,
            clock=self.clock,
            poll_seconds=settings.outbox_poll_seconds,
            claim_seconds=settings.outbox_claim_seconds,
            settle_seconds=settings.outbox_settle_seconds,
            name=f"{self.role}:{relay_id()}",
        )
        # Every consumer keeps what it dead-letters and answers deadletter.* for its role.
        self.dead_letters = DeadLetterKeeper(
            self.store("dead_letters", DeadLetter, unknown=unknown_dead_letter),
            service=self.role,
            bus=self.bus,
            clock=self.clock,
        )
        self.bus.keeper = self.dead_letters
        self._tasks: list[asyncio.Task[Any]] = []
        self.periodic: dict[str, Callable[[datetime], Awaitable[object]]] = {}
        self.routing_keys: list[str] = []

    def store(self, collection: str, model: type[A], *, unknown: Unknown) -> DocumentStore[A]:
        """A store for one aggregate kind whose saves publish their own events (or wake the
        relay), once the service names it in ``Wiring.outboxes``."""
        return DocumentStore(self.db[collection], model, unknown=unknown, relay=self.relay)

    async def start(self, wiring: Wiring) -> None:
        await self.broker.connect()
        await self.topology.declare(self.broker)
        await self.bus.open()  # publishing and replies: before any handler runs
        await self.inbox.create_indexes()
        await self.dead_letters.create_indexes()
        if wiring.setup is not None:
            await wiring.setup()
        outboxes = [*wiring.outboxes, self.dead_letters.store]  # the replay/discard audits
        await self.relay.watch([store.collection for store in outboxes])
        routes = [*wiring.routes, *self.dead_letters.routes()]
        self.dead_letters.consumers = {route.message.ROUTING_KEY: route for route in routes}
        for route in routes:
            self.bus.subscribe(route)
        await self.broker.start()
        self.periodic = {"inbox_purge": self.purge_inbox, **wiring.periodic}
        self.routing_keys = [route.message.ROUTING_KEY for route in routes]
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.service}:relay"))
        for name, tick in self.periodic.items():
            self._tasks.append(
                asyncio.create_task(self._every(name, tick), name=f"{self.service}:{name}")
            )
        log.info("service_started", routes=self.routing_keys)

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
        await self.relay.finish()  # and the publications of their saves
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.bus.close()  # nothing publishes any more
        await self.mongo.close()
        log.info("service_stopped")

    async def readiness(self) -> dict[str, bool]:
        """What ``/ready`` reports; ready only when every check holds:
        ``broker`` the consuming connection is up; ``consumers`` every route's consumer
        is attached, on an open channel; ``publisher`` the publishing link is open;
        ``database`` the store answers a ping; ``workers`` the outbox relay and the
        periodic jobs run. Each probe gives up after ``READY_TIMEOUT_SECONDS``."""

        async def broker() -> bool:
            return await self.broker.ping(timeout=READY_TIMEOUT_SECONDS)

        async def database() -> bool:
            await asyncio.wait_for(self.db.command("ping"), timeout=READY_TIMEOUT_SECONDS)
            return True

        broker_up, database_up = await asyncio.gather(_holds(broker()), _holds(database()))
        checks = {
            "broker": broker_up,
            "consumers": broker_up and self.consumers_attached(),
            "database": database_up,
            "workers": bool(self._tasks) and not any(task.done() for task in self._tasks),
        }
        link = getattr(self.bus, "link", None)
        if link is not None:
            checks["publisher"] = bool(link.ready)
        return checks

    def consumers_attached(self) -> bool:
        """Every route has a running consumer on an open channel (a consumer is detached
        while its channel or connection is down, until the client restores it)."""
        subscribers = self.broker.subscribers
        if not self.broker.running or len(subscribers) < len(self.routing_keys):
            return False
        return all(_consuming(subscriber) for subscriber in subscribers)


READY_TIMEOUT_SECONDS = 1.0


async def _holds(probe: Awaitable[bool]) -> bool:
    try:
        return await probe
    except Exception:
        return False


def _consuming(subscriber: object) -> bool:
    queue = getattr(subscriber, "_queue_obj", None)  # FastStream's RabbitSubscriber internals
    return (
        bool(getattr(subscriber, "running", False))
        and getattr(subscriber, "_consumer_tag", None) is not None
        and queue is not None
        and not queue.channel.is_closed
    )


def http_app(runtime: Runtime, wiring: Wiring, *, title: str) -> FastAPI:
    """The service's public ASGI app; its lifespan starts and stops the runtime. Its docs
    and metrics are on the admin app only."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start(wiring)
        except Exception:
            log.exception("service_start_failed")  # the traceback as a field (uvicorn: text)
            raise
        # What start-up made (modules, the app, connections) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (some 30 ms
        # on every process here, a stall every request in flight waits for).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title,
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    add_edge(
        app,
        service=runtime.service,
        ready=runtime.readiness,
        large_bodies=wiring.large_bodies,
        trusted_proxies=runtime.settings.trusted_proxies,
    )
    if wiring.http is not None:
        app.include_router(wiring.http)
    return app


async def _serve_both(public: uvicorn.Server, admin: uvicorn.Server) -> bool:
    """Run both listeners; when one stops (SIGTERM reaches one of them), stop the other.
    False when the service never started (its runtime or a listener failed)."""
    tasks = [asyncio.create_task(public.serve()), asyncio.create_task(admin.serve())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    public.should_exit = admin.should_exit = True
    await asyncio.gather(*tasks)
    return public.started and admin.started


def serve(
    service: str, wire: Callable[[Runtime], Wiring], *, title: str, role: str | None = None
) -> None:
    """Entry point of ``python -m services.<service>``: run until SIGTERM or Ctrl-C.

    Two listeners: the public one (API, ``/health``, ``/ready``) on ``HTTP_HOST:<port>``
    and the admin one (``/metrics``, ``/docs``, ``/openapi.json``) on
    ``ADMIN_HOST:<admin port>``, 127.0.0.1 unless configured otherwise."""
    settings = Settings()
    configure_logging(service=service, fmt=settings.log_format, level=settings.log_level)
    runtime = Runtime(service, settings, role=role)
    app = http_app(runtime, wire(runtime), title=title)
    public = uvicorn.Config(
        app,
        host=settings.host_of(service),
        port=settings.port_of(service),
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # shared.runtime.http.ClientAddress decides, strictly
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
    )
    admin = uvicorn.Config(
        admin_app(app, service=service, ready=runtime.readiness),
        host=settings.admin_host,
        port=settings.admin_port_of(service),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    if not asyncio.run(_serve_both(uvicorn.Server(public), uvicorn.Server(admin))):
        sys.exit(1)  # the launcher (or any supervisor) starts it again
