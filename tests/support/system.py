"""The four services run in-process on the real broker and the real store, for integration tests.

Each test gets its own broker namespace and databases, so tests never see each
other's messages or documents; HTTP goes through the services' ASGI apps.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
from fastapi import FastAPI

from shared.runtime.service import Runtime, Wiring, http_app
from shared.runtime.settings import SERVICES, Settings
from shared.runtime.topology import DEAD_LETTERS_QUEUE
from testkit.broker import BrokerSession, purge_queues
from testkit.contract_client import ContractClient, read_users
from tests.support.clock import FixedClock

WIRES: dict[str, Callable[[Runtime], Wiring]] = {
    name: importlib.import_module(f"services.{name}.app").wire for name in SERVICES
}
API_TOKEN = "test-api-token"


def make_settings(
    *, broker: BrokerSession, mongo_url: str, data_dir: Path, **overrides: object
) -> Settings:
    """Settings of one test: the session's virtual host and broker users, databases of
    its own."""
    run = uuid4().hex[:10]
    values: dict[str, object] = {
        "amqp_url": broker.admin_url,
        "amqp_namespace": "",
        "amqp_user_prefix": broker.prefix,
        "broker_users_file": broker.users_file,
        "mongodb_url": mongo_url,
        "mongodb_db_prefix": f"t{run}_",
        "data_dir": data_dir,
        "reseller_api_token": API_TOKEN,
        "rpc_timeout_seconds": 5.0,
        "outbox_poll_seconds": 0.2,
        "delivery_limit": 3,
        "log_format": "console",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class System:
    settings: Settings
    clock: FixedClock
    client: ContractClient
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    apps: dict[str, FastAPI] = field(default_factory=dict)

    def http(self, service: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.apps[service])
        return httpx.AsyncClient(transport=transport, base_url=f"http://{service}")

    async def start(self, service: str) -> Runtime:
        runtime = Runtime(service, self.settings, self.clock)
        wiring = WIRES[service](runtime)
        self.apps[service] = http_app(runtime, wiring, title=service)
        await runtime.start(wiring)
        self.runtimes[service] = runtime
        return runtime

    @asynccontextmanager
    async def stopped(self, service: str) -> AsyncIterator[None]:
        """``service`` is down (its process gone, its queues and data kept) while the block
        runs; then a fresh process of it starts, as the launcher would restart it."""
        await self.runtimes.pop(service).stop()
        try:
            yield
        finally:
            await self.start(service)


@asynccontextmanager
async def running_system(
    settings: Settings, *, services: tuple[str, ...] = tuple(WIRES), start: datetime | None = None
) -> AsyncIterator[System]:
    clock = FixedClock(start or datetime.now(UTC))
    running: dict[str, Runtime] = {}  # the system's own: what runs now (System.stopped)
    started: list[Runtime] = []
    try:
        users = read_users(settings.users_file())
        async with ContractClient(settings.amqp_url, settings.amqp_namespace, users) as client:
            system = System(settings=settings, clock=clock, client=client, runtimes=running)
            for name in services:
                started.append(await system.start(name))
            yield system
    finally:
        for runtime in reversed(list(running.values())):
            await runtime.stop()
        consumed = [
            runtime.topology.queue(runtime.service, route).name
            for runtime in started
            for route in runtime.routing_keys
        ]
        dead_letters = settings.amqp_namespace + DEAD_LETTERS_QUEUE
        retries = [q.name for runtime in started[:1] for q in runtime.topology.delay_queues()]
        await purge_queues(settings.amqp_url, [*consumed, dead_letters, *retries])
