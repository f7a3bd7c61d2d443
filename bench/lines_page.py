"""Page speed of the reseller space: its lines page with 1,000 lines, against a bare
endpoint of the same app (``GET /health``), measured in the same run.

The four services and the reseller space run in-process on the real broker (a virtual
host and users of this run's own) and the embedded store. One line is placed through
the contract, then copied to 1,000 lines of the same reseller (statuses mixed) straight
into the orders store; the partner is created with ``partner.create``, sets its password
through its invitation link and signs in through the pages. Then ``GET /lines`` (the
first 50 of the 1,000, newest first: ``order.list`` over the broker, sorting, filtering,
rendering) and ``GET /health`` are timed in the app itself (ASGI, no network: server
time). The page asks ``order.list`` for one page (``space``, ``status``, ``limit``, ``offset``);
the round trips of that page and of the whole list are printed beside it. The target is
under 150 ms at the median.

    python -m bench.lines_page [--lines 1000] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from fastapi import FastAPI

from bench.common import percentile
from services.reseller_space.app import ROLE
from shared.runtime.service import Runtime, Wiring, http_app
from shared.runtime.settings import SERVICES, Settings
from testkit.broker import close_session, open_session
from testkit.contract_client import ContractClient
from testkit.contract_client import read_users as read_user_file
from tools.embedded_mongo import EmbeddedMongo

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TARGET_MS = 150.0
EMAIL = "bench@partner.example"
PASSWORD = "a long passphrase for timing"
STATUSES = ("awaiting_proof", "proof_submitted", "paid", "bound", "cancelled")


def _wire(name: str) -> Callable[[Runtime], Wiring]:
    module = __import__(f"services.{name}.app", fromlist=["wire"])
    wire: Callable[[Runtime], Wiring] = module.wire
    return wire


async def _timed(call: Callable[[], Awaitable[httpx.Response]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return samples


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def _signed_in(space: FastAPI, link: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=space), base_url="http://space", follow_redirects=True
    )
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = await client.get("/" + path)
    form = {"csrf_token": _csrf(page.text), "password": PASSWORD, "confirm": PASSWORD}
    done = await client.post("/" + path, data=form)
    assert "Your password is set" in done.text, done.text[-1500:]
    page = await client.get("/sign-in")
    form = {"csrf_token": _csrf(page.text), "email": EMAIL, "password": PASSWORD, "next": ""}
    signed = await client.post("/sign-in", data=form)
    assert signed.status_code == 200, signed.text[:300]
    assert "xo_session" in client.cookies, "not signed in"
    return client


async def _copies(runtimes: dict[str, Runtime], order_id: str, count: int) -> None:
    """``count`` lines of the reseller, copied from a real one (statuses mixed, one a minute)."""
    lines = runtimes["orders"].db["order_lines"]
    original = await lines.find_one({"_id": order_id})
    assert original is not None
    await lines.delete_one({"_id": order_id})
    batch: list[dict[str, Any]] = []
    for n in range(count):
        copy = {
            **original,
            "_id": f"ol_bench{n:06d}",
            "status": STATUSES[n % len(STATUSES)],
            "outbox": [],  # its events were published once, for the original
            "outbox_pending": False,
        }
        copy["placed_at"] = original["placed_at"] + timedelta(minutes=n)
        batch.append(copy)
    await lines.insert_many(batch)


async def run(lines: int, requests: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-lines-"))
    session = open_session(AMQP_URL, workdir, kind="b")
    mongo = EmbeddedMongo(workdir / "mongo")
    runtimes: dict[str, Runtime] = {}
    try:
        settings = Settings(
            amqp_url=session.admin_url,
            amqp_user_prefix=session.prefix,
            broker_users_file=session.users_file,
            mongodb_url=mongo.start(),
            mongodb_db_prefix=f"b{uuid4().hex[:8]}_",
            data_dir=workdir / "data",
            reseller_api_token="bench-token",
            log_format="json",
            log_level="WARNING",
        )
        apps: dict[str, FastAPI] = {}
        for name in (*SERVICES, "reseller_space"):
            role = ROLE if name == "reseller_space" else None
            runtime = Runtime(name, settings, role=role)
            wiring = _wire(name)(runtime)
            apps[name] = http_app(runtime, wiring, title=name)
            await runtime.start(wiring)
            runtimes[name] = runtime
        users = read_user_file(session.users_file)
        async with ContractClient(settings.amqp_url, "", users) as client:
            placed = await client.ok(
                "order.place",
                {
                    "reseller_id": "r-bench",
                    "space": "reseller",
                    "edition": "starter",
                    "billing": "monthly",
                },
            )
            await _copies(runtimes, placed["order_id"], lines)
            await client.ok(
                "partner.create",
                {"reseller_id": "r-bench", "company": "Bench", "contact_email": EMAIL},
                as_role="operations",
            )
            invitation = await client.wait_event("partner.notification")
            # Where the page's time goes: order.list round trips alone, all lines and one page.
            listing, one_page = [], []
            for _ in range(max(5, requests // 4)):
                started = time.perf_counter()
                await client.ok("order.list", {"reseller_id": "r-bench"})
                listing.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await client.ok(
                    "order.list",
                    {"reseller_id": "r-bench", "space": "reseller", "limit": 50, "offset": 0},
                )
                one_page.append((time.perf_counter() - started) * 1000)
        browser = await _signed_in(apps["reseller_space"], invitation["link"])
        try:
            first = await browser.get("/lines")
            assert f"{lines} lines" in first.text, "the page does not show the 1,000 lines"
            for path in ("/lines", "/health"):  # warm up
                await _timed(lambda p=path: browser.get(p), 5)  # type: ignore[misc]
            page = await _timed(lambda: browser.get("/lines"), requests)
            bare = await _timed(lambda: browser.get("/health"), requests * 5)
        finally:
            await browser.aclose()
        page_p50, bare_p50 = statistics.median(page), statistics.median(bare)
        print(f"lines page, {lines} lines in the space, first 50 shown (server time, ASGI):")
        print(
            f"  GET /lines : p50 {page_p50:.1f} ms, p95 {percentile(page, 95):.1f} ms "
            f"(target < {TARGET_MS:.0f} ms: {'met' if page_p50 < TARGET_MS else 'MISSED'})"
        )
        print(f"  GET /health: p50 {bare_p50:.2f} ms (bare endpoint of the same app)")
        print(
            f"  order.list over the broker, one page of 50 (what the page asks): p50 "
            f"{statistics.median(one_page):.1f} ms; all {lines} lines: p50 "
            f"{statistics.median(listing):.1f} ms"
        )
        print(f"  ratio      : {page_p50 / bare_p50:.1f}x the bare endpoint")
    finally:
        for runtime in reversed(runtimes.values()):
            await runtime.stop()
        mongo.stop()
        close_session(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(run(args.lines, args.requests))


if __name__ == "__main__":
    main()
