"""Throughput and latency of the appliance licence check, against a bare endpoint, with
1,000 and then 100,000 customers in the store.

Starts the system as `make run` does (launcher, four processes, embedded store), makes
a customer through a real sale (quote, order, proof, review, bind, the token from
``customer.notification``), registers an appliance, then seeds the licensing store up to
1,000 customers, each with a plan and a registered appliance whose secret the bench
keeps (documents made by the ``Customer`` aggregate and written as its store writes
them: ``to_document``, ``insert_many`` in batches). For each store size, from a second
process, it puts a bounded closed-loop load on

- ``GET /health`` of the licensing process (same server stack, no work): the baseline;
- ``GET /v1/appliances/{id}/license`` of the sold appliance, over and over (what the
  issue measures: the same appliance checking, served from the licence cache);
- the same check spread over every seeded appliance, each request another one at random
  (mostly cache misses at 100,000: the indexed store read, the secret check, a signature);

then seeds up to 100,000 customers and measures again.

It also measures the registration refusal for a known email with a wrong token against
an unknown email (L2: the difference must be noise), with the attempt limits raised for
this run only.

    python -m bench.licence_check [--seconds 10] [--connections 16] [--probes 400]
                                  [--sizes 1000,100000] [--cache-seconds S]
    python -m bench.licence_check load URL PATH [--header H] [--targets FILE] ...
                                  (the load process)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pymongo import MongoClient
from pymongo.collection import Collection

from bench.common import PROOF, http_request, load_average, percentile, read_response
from services.licensing.app import policy_of
from services.licensing.domain.customer import Customer
from services.licensing.domain.policy import Policy
from shared.basics.clock import SystemClock
from shared.contracts.orders import PlanBound
from shared.runtime.settings import Settings
from shared.runtime.store import Document
from testkit.broker import delete_namespace
from testkit.contract_client import ContractClient, read_users
from testkit.processes import LaunchedSystem, launched_system

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


# --- the load process: a lean HTTP/1.1 keep-alive client, so the client is not the limit --


async def _one_connection(
    host: str,
    port: int,
    requests: list[bytes],
    until: float,
    samples: list[float],
    errors: list[int],
) -> None:
    """Send ``requests`` in turn (from a random place in the list) until ``until``."""
    reader, writer = await asyncio.open_connection(host, port)
    turn = random.randrange(len(requests))
    try:
        while time.perf_counter() < until:
            request = requests[turn % len(requests)]
            turn += 1
            started = time.perf_counter()
            writer.write(request)
            status, _, _ = await read_response(reader)
            samples.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def _requests(
    host: str, port: int, path: str, headers: list[str], targets: Path | None
) -> list[bytes]:
    """One request, or with ``targets`` (lines ``<appliance id> <secret>``) one licence
    check per appliance, shuffled."""
    if targets is None:
        return [http_request("GET", host, port, path, headers)]
    requests = []
    for line in targets.read_text().splitlines():
        appliance_id, secret = line.split()
        auth = f"Authorization: Bearer {secret}"
        requests.append(
            http_request("GET", host, port, f"/v1/appliances/{appliance_id}/license", [auth])
        )
    random.shuffle(requests)
    return requests


async def _load(
    url: str,
    path: str,
    headers: list[str],
    seconds: float,
    connections: int,
    targets: Path | None = None,
) -> Any:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = _requests(host, port, path, headers, targets)
    warm: list[float] = []
    await asyncio.gather(
        *[
            _one_connection(host, port, requests, time.perf_counter() + 1.0, warm, [])
            for _ in range(connections)
        ]
    )
    samples: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *[
            _one_connection(host, port, requests, started + seconds, samples, errors)
            for _ in range(connections)
        ]
    )
    elapsed = time.perf_counter() - started
    return {
        "requests": len(samples),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(samples) / elapsed,
        "p50": statistics.median(samples),
        "p90": percentile(samples, 90),
        "p99": percentile(samples, 99),
        "max": max(samples),
    }


def load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.licence_check load")
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--targets", type=Path, default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(
        _load(args.url, args.path, args.header, args.seconds, args.connections, args.targets)
    )
    print(json.dumps(result))


def run_load(
    url: str,
    path: str,
    headers: list[str],
    seconds: float,
    connections: int,
    targets: Path | None = None,
) -> dict[str, float]:
    """The load runs in a second process: the measuring client never shares the server's."""
    command = [sys.executable, "-m", "bench.licence_check", "load", url, path]
    command += [f"--header={h}" for h in headers]
    command += [f"--seconds={seconds}", f"--connections={connections}"]
    if targets is not None:
        command += [f"--targets={targets}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, float] = json.loads(done.stdout)
    return result


# --- the set-up: a real sale, a registered appliance ---------------------------------------


async def sold_appliance(system: LaunchedSystem) -> tuple[str, str, str, str]:
    """(email, token, appliance id, appliance secret) after a real sale and registration."""
    licensing = system.url("licensing")
    async with (
        ContractClient(
            AMQP_URL, system.namespace, read_users(system.data_dir / "broker-users.json")
        ) as client,
        httpx.AsyncClient(timeout=10) as http,
    ):
        order = await client.ok(
            "order.place",
            {
                "reseller_id": "bench",
                "space": "reseller",
                "edition": "premium",
                "billing": "annual",
            },
        )
        order_id = order["order_id"]
        proof = await http.post(
            f"{system.url('orders')}/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {system.api_token}", "X-Reseller-Id": "bench"},
            files={"file": ("p.pdf", PROOF, "application/pdf")},
        )
        assert proof.status_code == 201, proof.text
        await client.ok(
            "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "bench"}
        )
        email = "load@bench.example"
        await client.ok(
            "plan.bind", {"reseller_id": "bench", "order_id": order_id, "customer_email": email}
        )
        note = await client.wait_event("customer.notification", lambda b: b["order_id"] == order_id)
        token = note["registration_token"]
        registered = await http.post(
            f"{licensing}/v1/appliances/register",
            json={"email": email, "registration_token": token, "appliance_id": "xoa-load"},
        )
        assert registered.status_code == 200, registered.text
        secret = registered.json()["appliance_secret"]
        checked = await http.get(
            f"{licensing}/v1/appliances/xoa-load/license",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert checked.json()["status"] == "active", checked.text
    return email, token, "xoa-load", secret


async def enumeration_probe(system: LaunchedSystem, email: str, probes: int) -> dict[str, float]:
    """Median time of a refused registration: a customer's email with a wrong token vs an
    email that is no customer's, each probed repeatedly as an attacker would, interleaved
    so that drift affects both alike."""
    url = f"{system.url('licensing')}/v1/appliances/register"
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(probes):
            for kind in ("known", "unknown"):
                body = {
                    "email": email if kind == "known" else "nobody@bench.example",
                    "registration_token": uuid.uuid4().hex + uuid.uuid4().hex,
                    "appliance_id": "xoa-probe",
                }
                started = time.perf_counter()
                response = await http.post(url, json=body)
                times[kind].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 401, response.text
    return {kind: statistics.median(samples) for kind, samples in times.items()}


# --- the seeded store: customers with a plan and a registered appliance each -----------------

SEED_BATCH = 2000


@dataclass
class SeededStore:
    """The licensing store's customers the bench wrote, and each appliance's credentials
    (``<appliance id> <secret>`` lines, the load process's ``--targets``)."""

    collection: Collection[Document]
    targets: Path
    count: int = 0

    def seed_up_to(self, total: int, *, already: int) -> float:
        """Insert customers until the store holds ``total`` (``already`` were there before
        the bench seeded any); returns the seconds it took."""
        started = time.perf_counter()
        policy = policy_of(Settings())
        now = SystemClock().now()
        batch: list[Document] = []
        with self.targets.open("a") as credentials:
            while already + self.count < total:
                doc, appliance_id, secret = seeded_customer(self.count, now, policy)
                batch.append(doc)
                credentials.write(f"{appliance_id} {secret}\n")
                self.count += 1
                if len(batch) == SEED_BATCH or already + self.count == total:
                    self.collection.insert_many(batch, ordered=False)
                    batch = []
        return time.perf_counter() - started


def seeded_customer(n: int, now: datetime, policy: Policy) -> tuple[Document, str, str]:
    """Customer ``n``, as licensing makes and stores one: ``plan.bound`` (a year of
    enterprise, begun yesterday), then its appliance registered; no events left to
    publish (they were, long ago). Returns its document, appliance id and secret."""
    email = f"seeded-{n}@bench.example"
    order_id = f"ol_seed{n:08d}"
    customer = Customer.new(email)
    bound = PlanBound(
        order_id=order_id,
        reseller_id="bench-seed",
        space="reseller",
        customer_email=email,
        edition="enterprise",
        billing="annual",
        period_start=now - timedelta(days=1),
        period_end=now + timedelta(days=364),
        occurred_at=now - timedelta(days=1),
        correlation_id=order_id,
    )
    customer.add_plan(bound, token=secrets.token_urlsafe(24), now=now, policy=policy)
    appliance_id = f"xoa-seed-{n}"
    secret = customer.appliance_secret(secrets.token_urlsafe(32))
    customer.register(appliance_id=appliance_id, secret=secret, move=False, now=now, policy=policy)
    customer.outbox = []
    customer.version = 1
    return customer.to_document(), appliance_id, secret


def seeded_store(system: LaunchedSystem, workdir: Path) -> SeededStore:
    """The licensing service's customers collection in the system's embedded store."""
    url = system.state()["store"]["url"]
    client: MongoClient[Document] = MongoClient(url, tz_aware=True)
    database = client[f"{Settings().mongodb_db_prefix}licensing"]
    return SeededStore(database["customers"], workdir / "appliances.txt")


# --- the run --------------------------------------------------------------------------------


@dataclass
class Measured:
    customers: int
    seeding_seconds: float
    health: dict[str, float]
    hot: dict[str, float]
    spread: dict[str, float]


def measure(
    system: LaunchedSystem,
    store: SeededStore,
    customers: int,
    seeding_seconds: float,
    appliance: tuple[str, str],
    args: argparse.Namespace,
) -> Measured:
    url = system.url("licensing")
    appliance_id, secret = appliance
    health = run_load(url, "/health", [], args.seconds, args.connections)
    hot = run_load(
        url,
        f"/v1/appliances/{appliance_id}/license",
        [f"Authorization: Bearer {secret}"],
        args.seconds,
        args.connections,
    )
    spread = run_load(url, "", [], args.seconds, args.connections, targets=store.targets)
    return Measured(customers, seeding_seconds, health, hot, spread)


def line(name: str, result: dict[str, float], baseline: dict[str, float] | None) -> str:
    ratio = "" if baseline is None else f"  {result['rps'] / baseline['rps']:.2f}x /health"
    return (
        f"  {name:<34} {result['rps']:7.0f} req/s  p50 {result['p50']:6.2f} ms  "
        f"p99 {result['p99']:6.2f} ms  max {result['max']:6.1f} ms  "
        f"errors {result['errors']:.0f}/{result['requests']:.0f}{ratio}"
    )


def report_run(run: Measured) -> None:
    print(f"store: {run.customers:,} customers (seeded in {run.seeding_seconds:.1f} s)")
    print(line("GET /health (baseline)", run.health, None))
    print(line("licence check, one appliance", run.hot, run.health))
    print(line("licence check, every appliance", run.spread, run.health), flush=True)


def report_sizes(runs: list[Measured]) -> None:
    if len(runs) < 2:
        return
    first, last = runs[0], runs[-1]
    print(
        f"{last.customers:,} vs {first.customers:,} customers, one appliance: "
        f"throughput {last.hot['rps'] / first.hot['rps']:.2f}x, "
        f"p99 {last.hot['p99'] / first.hot['p99']:.2f}x; ratio to /health "
        f"{last.hot['rps'] / last.health['rps']:.2f}x vs "
        f"{first.hot['rps'] / first.health['rps']:.2f}x",
        flush=True,
    )


async def cleanup(namespace: str) -> None:
    """The run's queues and exchanges, within a minute (a busy shared broker may not)."""
    try:
        await asyncio.wait_for(delete_namespace(AMQP_URL, namespace), 60)
    except TimeoutError:
        print(f"(the broker did not delete namespace {namespace} within 60 s)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument("--sizes", default="1000,100000", help="store sizes, in customers")
    parser.add_argument(
        "--cache-seconds", default=None, help="LICENSE_CACHE_SECONDS (default: the product's)"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    # This run only: the probe makes many refused attempts on purpose.
    os.environ["REGISTRATION_ATTEMPTS_PER_SOURCE"] = "1000000"
    os.environ["REGISTRATION_ATTEMPTS_PER_EMAIL"] = "1000000"
    if args.cache_seconds is not None:
        os.environ["LICENSE_CACHE_SECONDS"] = args.cache_seconds
    cache = os.environ.get("LICENSE_CACHE_SECONDS", f"{Settings().license_cache_seconds:g}")
    print(f"load: {args.connections} keep-alive connections, {args.seconds:.0f} s per target,")
    print("      from a second process, loopback, after 1 s of warm-up")
    print(f"licence cache: LICENSE_CACHE_SECONDS={cache}", flush=True)
    runs: list[Measured] = []
    with tempfile.TemporaryDirectory() as tmp, launched_system(AMQP_URL, Path(tmp)) as system:
        email, _, appliance_id, secret = asyncio.run(sold_appliance(system))
        store = seeded_store(system, Path(tmp))
        for size in sizes:
            seconds = store.seed_up_to(size, already=1)  # the sold customer is one
            runs.append(measure(system, store, size, seconds, (appliance_id, secret), args))
            print(load_average())
            report_run(runs[-1])
        report_sizes(runs)
        probe = asyncio.run(enumeration_probe(system, email, args.probes))
        print(
            f"refused registration, median of {args.probes}: known email + wrong token "
            f"{probe['known']:.3f} ms, unknown email {probe['unknown']:.3f} ms "
            f"(difference {abs(probe['known'] - probe['unknown']) * 1000:.0f} us)",
            flush=True,
        )
        asyncio.run(cleanup(system.namespace))


if __name__ == "__main__":
    main()
