"""How long from ``plan.bind`` until the customer's appliance can fetch its licence.

Starts the system as `make run` does (launcher, four processes, embedded store), runs
N sales as an outside system would, and times, per sale: plan.bind sent -> bind reply
-> customer.notification (the token) -> appliance registered -> licence fetched.
Baseline, same run, same broker: one raw aio-pika request/reply round trip.

    python -m bench.sale_latency [--sales 30]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time

import httpx

from bench.common import (
    AMQP_URL,
    ApplianceHttp,
    BenchClient,
    bench_system,
    load_average,
    paid_order,
    raw_round_trips,
    settle,
    summary,
)
from testkit.processes import LaunchedSystem


async def one_sale(
    system: LaunchedSystem,
    client: BenchClient,
    http: httpx.AsyncClient,
    appliance: ApplianceHttp,
    n: int,
) -> dict[str, float]:
    """One sale; returns the milliseconds of each stage after plan.bind, and the total."""
    order = {"edition": "starter", "billing": "monthly"}
    order_id = await paid_order(client, http, system, "bench", order)
    email = f"customer{n}@bench.example"
    marks = [time.perf_counter()]
    await client.ok(
        "plan.bind", {"reseller_id": "bench", "order_id": order_id, "customer_email": email}
    )
    marks.append(time.perf_counter())
    note = await client.order_event("customer.notification", order_id)
    marks.append(time.perf_counter())
    status, registered = await appliance.request(
        "POST",
        "/v1/appliances/register",
        body={
            "email": email,
            "registration_token": note["registration_token"],
            "appliance_id": f"xoa-{n}",
        },
    )
    assert status == 200, registered
    marks.append(time.perf_counter())
    status, licence = await appliance.request(
        "GET", f"/v1/appliances/xoa-{n}/license", token=registered["appliance_secret"]
    )
    marks.append(time.perf_counter())
    assert status == 200, licence
    assert licence["status"] == "active", licence
    stages = [(b - a) * 1000 for a, b in itertools.pairwise(marks)]
    return {**dict(zip(STAGES, stages, strict=True)), "total": (marks[-1] - marks[0]) * 1000}


STAGES = (
    "plan.bind reply (orders)",
    "-> customer.notification (relay, licensing, relay)",
    "-> appliance registered (HTTP, the appliance's own connection)",
    "-> licence fetched (HTTP, the same connection)",
)


async def measure(system: LaunchedSystem, sales: int) -> tuple[list[dict[str, float]], list[float]]:
    appliance = ApplianceHttp(system.url("licensing"))
    async with BenchClient(system) as client, httpx.AsyncClient(timeout=10) as http:
        await one_sale(system, client, http, appliance, -1)  # warm-up
        samples = [await one_sale(system, client, http, appliance, n) for n in range(sales)]
    await appliance.close()
    baseline = await raw_round_trips(AMQP_URL, max(sales, 50))
    await settle()
    return samples, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sales", type=int, default=30)
    parser.add_argument(
        "--services-only",
        action="store_true",
        help="the four domain services without the web faces (as trees before them ran)",
    )
    args = parser.parse_args()
    # Every sale registers an appliance from this one address: lift the per-source limit
    # (L2), which would otherwise refuse the 21st registration within 15 minutes.
    limits = {"REGISTRATION_ATTEMPTS_PER_SOURCE": str(10 * args.sales + 100)}
    print(f"start: {load_average()}")
    with bench_system(limits, web_faces=not args.services_only) as bench:
        samples, baseline = asyncio.run(measure(bench.system, args.sales))
    print(f"end: {load_average()}")
    totals = [sample["total"] for sample in samples]
    print(summary("plan.bind -> licence fetched", totals))
    for stage in STAGES:
        print(f"  {stage}: p50={statistics.median(s[stage] for s in samples):.2f} ms")
    print(summary("baseline raw aio-pika request/reply", baseline))
    ratio = statistics.median(totals) / statistics.median(baseline)
    print(f"ratio (p50 sale / p50 raw round trip): {ratio:.1f}x")


if __name__ == "__main__":
    main()
