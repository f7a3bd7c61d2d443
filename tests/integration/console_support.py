"""The operations console in-process beside the four services (console tests only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from fastapi import FastAPI

from services.console.app import ROLE, wire
from services.console.store import ConsoleStore
from shared.runtime.service import Runtime, http_app
from testkit.broker import purge_queues
from tests.support.system import System

T = TypeVar("T")


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


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 15
) -> T:
    """Poll ``probe`` until ``done`` holds (messages arrive asynchronously), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {value!r}")
        await asyncio.sleep(0.05)
