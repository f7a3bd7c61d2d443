"""The operations console in-process beside the four services (console tests only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from services.console.app import ROLE, wire
from services.console.store import ConsoleStore
from shared.runtime.service import Runtime, http_app
from testkit.broker import purge_queues
from tests.support.system import System


@dataclass
class Console:
    runtime: Runtime
    app: FastAPI
    store: ConsoleStore

    def http(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://console")


@asynccontextmanager
async def running_console(system: System) -> AsyncIterator[Console]:
    runtime = Runtime("console", system.settings, system.clock, role=ROLE)
    wiring = wire(runtime)
    app = http_app(runtime, wiring, title="console")
    await runtime.start(wiring)
    try:
        yield Console(runtime, app, ConsoleStore(runtime.db))
    finally:
        await runtime.stop()
        names = [runtime.topology.queue(runtime.role, key).name for key in runtime.routing_keys]
        await purge_queues(system.settings.amqp_url, names)
