"""The whole system for a real browser: the four services and the reseller space in-process
(the test's clock, the real broker and store), served over real HTTP by uvicorn on free
ports, and Debian's Chromium driven by Playwright.

Chromium is the Debian package, launched by its path (no browser download is possible
here); ``make test`` installs it when missing (scripts/ensure-chromium).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright

from services.reseller_space.app import ROLE
from services.reseller_space.app import wire as wire_space
from shared.runtime.service import Runtime, http_app
from shared.runtime.settings import Settings
from testkit.broker import purge_queues
from tests.support.system import System, running_system
from tools.embedded_mongo import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"


def chromium_path() -> str:
    """Debian's chromium, or a failure saying how to get it (never a silent skip)."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium (make test does), "
            "or set CHROMIUM to a Chromium binary"
        )
    return path


async def _serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve an app whose runtime already runs (lifespan off) until the test ends."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


@dataclass
class Web:
    """The running system as a browser and an appliance reach it."""

    system: System
    space: Runtime
    urls: dict[str, str]
    browser: Browser
    shots: list[Path] = field(default_factory=list)

    @property
    def clock(self) -> Any:
        return self.system.clock

    def url(self, path: str = "/") -> str:
        return self.urls["reseller_space"] + path

    async def page(self, **options: Any) -> Page:
        context = await self.browser.new_context(
            viewport=options.pop("viewport", {"width": 1280, "height": 900}), **options
        )
        context.set_default_timeout(15_000)
        return await context.new_page()

    async def shot(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        self.shots.append(path)
        return path

    async def create_partner(self, reseller_id: str, company: str, email: str) -> str:
        """Operations create the partner; the invitation link, as the mailer gets it."""
        await self.system.client.ok(
            "partner.create",
            {"reseller_id": reseller_id, "company": company, "contact_email": email},
            as_role="operations",
        )
        notification = await self.system.client.wait_event(
            "partner.notification",
            lambda body: body["reseller_id"] == reseller_id and body["kind"] == "invitation",
        )
        link: str = notification["link"]
        return link

    async def partner_signed_in(self, reseller_id: str, company: str, email: str) -> Page:
        """A partner that accepted its invitation, signed in, on its lines page."""
        link = await self.create_partner(reseller_id, company, email)
        page = await self.page()
        await page.goto(link)
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=confirm]", PASSWORD)
        await page.click("button[type=submit]")
        await sign_in(page, email)
        return page


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_load_state()


@asynccontextmanager
async def web_system(settings: Settings, *, start: datetime | None = None) -> AsyncIterator[Web]:
    ports = {name: free_port() for name in ("reseller_space", "orders", "licensing")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    settings = settings.model_copy(
        update={"orders_api_url": urls["orders"], "reseller_space_url": urls["reseller_space"]}
    )
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    async with running_system(settings, start=start or datetime.now(UTC)) as system:
        space = Runtime("reseller_space", settings, system.clock, role=ROLE)
        wiring = wire_space(space)
        space_app = http_app(space, wiring, title="reseller space")
        await space.start(wiring)
        try:
            apps = {**system.apps, "reseller_space": space_app}
            for name, port in ports.items():
                servers.append(await _serve(apps[name], port))
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                try:
                    yield Web(system=system, space=space, urls=urls, browser=browser)
                finally:
                    await browser.close()
        finally:
            for server, _ in servers:
                server.should_exit = True
            for _, task in servers:
                with contextlib.suppress(Exception):
                    await task
            await space.stop()
            queues = [space.topology.queue(space.role, key).name for key in space.routing_keys]
            await purge_queues(settings.amqp_url, queues)
