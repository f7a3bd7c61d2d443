"""Page speed of the operations console: its review queue with 1,000 waiting lines,
against a bare endpoint of the same app (``GET /health``), measured in the same run.

The console runs in-process on the real broker (a virtual host and users of this run's
own) and the embedded store. 1,000 lines whose proof awaits review are written to its
lines collection (what the event log folds into); an operator signs in through the
pages. Then ``GET /review`` (the whole queue, oldest first, and the oldest line with its
proof inline) and ``GET /health`` are timed in the app itself (ASGI, no network: server
time). The target is under 150 ms at the median.

    python -m bench.review_queue [--lines 1000] [--requests 40]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx

from bench.common import percentile
from services.console.app import ROLE, wire
from services.console.domain import LineState, Operator, ProofSeen
from services.console.store import ConsoleStore
from shared.runtime.service import Runtime, http_app
from shared.runtime.settings import Settings
from shared.runtime.web import hash_password
from testkit.broker import close_session, open_session
from tools.embedded_mongo import EmbeddedMongo

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TARGET_MS = 150.0
EMAIL = "bench@ops.example"
PASSWORD = "a long passphrase for timing"


def waiting_lines(count: int, now: datetime) -> list[LineState]:
    lines = []
    for n in range(count):
        at = now - timedelta(minutes=count - n)
        lines.append(
            LineState(
                id=f"ol_bench{n:06d}",
                status="proof_submitted",
                status_since=at,
                reseller_id=f"r-{n % 37}",
                space="reseller",
                edition=("starter", "enterprise", "premium")[n % 3],
                billing=("monthly", "annual")[n % 2],
                amount_due=159920 + n,
                list_price=199900,
                credit_applied=0,
                placed_at=at - timedelta(hours=1),
                proof=ProofSeen(
                    proof_id=f"p{n}",
                    sha256=f"{n:064x}",
                    size=20_000 + n,
                    content_type=("application/pdf", "image/png")[n % 2],
                    submitted_at=at,
                ),
                proofs=1,
                last_event_at=at,
                events=3,
            )
        )
    return lines


async def _timed(call: Callable[[], Awaitable[httpx.Response]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return samples


async def run(count: int, requests: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-review-"))
    session = open_session(AMQP_URL, workdir, kind="b")
    mongo = EmbeddedMongo(workdir / "mongo")
    runtime: Runtime | None = None
    try:
        settings = Settings(
            amqp_url=session.admin_url,
            amqp_user_prefix=session.prefix,
            broker_users_file=session.users_file,
            mongodb_url=mongo.start(),
            mongodb_db_prefix=f"b{uuid4().hex[:8]}_",
            data_dir=workdir / "data",
            log_format="json",
            log_level="WARNING",
        )
        runtime = Runtime("console", settings, role=ROLE)
        wiring = wire(runtime)
        app = http_app(runtime, wiring, title="console")
        await runtime.start(wiring)
        store = ConsoleStore(runtime.db)
        now = datetime.now(UTC)
        lines = waiting_lines(count, now)
        await store.lines.insert_many([line.model_dump(by_alias=True) for line in lines])
        await store.add_operator(
            Operator(id=EMAIL, name="Bench", password_hash=hash_password(PASSWORD), created_at=now)
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            form = await client.get("/signin")
            pre = re.search(r'name="pre" value="([^"]+)"', form.text)
            assert pre, "no sign-in token"
            signed = await client.post(
                "/signin",
                data={"pre": pre.group(1), "email": EMAIL, "password": PASSWORD, "next": "/review"},
            )
            assert signed.status_code == 303, signed.text[:300]
            first = await client.get("/review")
            assert first.text.count('<a href="/review?order=') == count, "not every line listed"
            await _timed(lambda: client.get("/review"), 3)  # warm-up
            page = await _timed(lambda: client.get("/review"), requests)
            bare = await _timed(lambda: client.get("/health"), requests)
        median, p95 = statistics.median(page), percentile(page, 95)
        base = statistics.median(bare)
        verdict = "ok" if median < TARGET_MS else "OVER TARGET"
        print(f"review queue with {count} waiting lines, {requests} requests (server time, ASGI):")
        print(
            f"  GET /review   median {median:7.1f} ms   p95 {p95:7.1f} ms"
            f"   ({verdict}: < {TARGET_MS:g} ms)"
        )
        print(f"  GET /health   median {base:7.2f} ms   (bare endpoint, same app)")
        size = len(first.content) // 1024
        print(f"  ratio page / bare endpoint: {median / base:.0f}x; page size {size} KiB")
    finally:
        if runtime is not None:
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
