"""How many complete sales per second the system carries, and at what latency.

Starts the system as `make run` does (launcher, four processes, embedded store) and runs
N complete sales with a fixed number in flight, as outside systems would: quote.request
-> order.place (the quote) -> proof uploaded over HTTP -> proof.review accept (as
operations) -> plan.bind -> the ``customer.notification`` arrives. Each reseller in
flight sells one warm-up sale first (its first sale grants it credit, C1; later sales
use it), which is not counted.

Prints sales/s, sale latency p50/p95, the broker messages published per second
(from the services' ``/metrics``: events, commands and queries, replies), the CPU a
sale took in each process (the system's, the local broker's, this client's), and, as
baselines on the same broker in the same run: a raw aio-pika 3-hop pipeline of
persistent, confirmed messages (prefetch 256), whose messages/s are the ceiling, and a
raw aio-pika request/reply round trip (DESIGN.md, Performance method).

    python -m bench.sale_throughput [--sales 300] [--in-flight 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.common import (
    AMQP_URL,
    Bench,
    BenchClient,
    BrokerCounts,
    CpuBudget,
    Pipeline,
    bench_system,
    broker_counts,
    load_average,
    paid_order,
    percentile,
    raw_pipeline,
    raw_round_trips,
    settle,
    summary,
)
from testkit.processes import LaunchedSystem


async def one_sale(
    system: LaunchedSystem,
    client: BenchClient,
    http: httpx.AsyncClient,
    reseller: str,
    n: int,
) -> float:
    """One complete sale; returns its milliseconds, quote.request to the notification."""
    started = time.perf_counter()
    quote = await client.ok(
        "quote.request",
        {"reseller_id": reseller, "space": "reseller", "edition": "starter", "billing": "monthly"},
    )
    order_id = await paid_order(
        client, http, system, reseller, {"quote_number": quote["quote_number"]}
    )
    await client.ok(
        "plan.bind",
        {"reseller_id": reseller, "order_id": order_id, "customer_email": f"c{n}@bench.example"},
    )
    await client.order_event("customer.notification", order_id)
    return (time.perf_counter() - started) * 1000


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    broker: BrokerCounts = field(default_factory=BrokerCounts)
    pipeline: Pipeline | None = None
    round_trips: list[float] = field(default_factory=list)
    cpu: list[str] = field(default_factory=list)


async def measure(bench: Bench, sales: int, in_flight: int, pipeline_items: int) -> Run:
    system, run = bench.system, Run()
    limits = httpx.Limits(max_connections=in_flight + 4)
    async with BenchClient(system) as client, httpx.AsyncClient(timeout=30, limits=limits) as http:
        resellers = [f"bench-{slot}" for slot in range(in_flight)]
        await asyncio.gather(
            *(one_sale(system, client, http, r, -1 - i) for i, r in enumerate(resellers))
        )
        numbers = itertools.count()

        async def seller(reseller: str) -> None:
            while (n := next(numbers)) < sales:
                try:
                    run.latencies.append(await one_sale(system, client, http, reseller, n))
                except Exception as exc:  # counted and shown: one failed sale must not end the run
                    run.failures[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1

        before = await broker_counts(http, bench)
        budget = CpuBudget.begin(system)
        started = time.perf_counter()
        await asyncio.gather(*(seller(r) for r in resellers))
        run.seconds = time.perf_counter() - started
        run.cpu = budget.report(max(1, len(run.latencies)))
        run.broker = await broker_counts(http, bench) - before
    run.pipeline = await raw_pipeline(AMQP_URL, pipeline_items)
    run.round_trips = await raw_round_trips(AMQP_URL, 200)
    await settle()
    return run


def report(run: Run, sales: int, in_flight: int) -> None:
    assert run.pipeline is not None
    done = len(run.latencies)
    print(f"{done} of {sales} sales complete, {in_flight} in flight, in {run.seconds:.1f} s")
    for failure, count in run.failures.most_common():
        print(f"  FAILED x{count}: {failure}")
    if not done:
        return
    p50 = statistics.median(run.latencies)
    print(f"throughput: {done / run.seconds:.1f} sales/s")
    print(f"sale latency p50={p50:.0f} ms p95={percentile(run.latencies, 95):.0f} ms")
    rate = run.broker.published / run.seconds
    ceiling = run.pipeline.messages_per_second
    print(
        f"broker: {run.broker.published} messages published ({run.broker.events} events, "
        f"{run.broker.requests} commands and queries, as many replies), "
        f"{run.broker.published / done:.1f} per sale, {rate:.0f} msg/s"
    )
    print(
        f"ceiling, raw aio-pika {run.pipeline.hops}-hop persistent confirmed pipeline "
        f"(prefetch 256): {ceiling:.0f} msg/s "
        f"({run.pipeline.items / run.pipeline.seconds:.0f} items/s through all hops)"
    )
    print(f"ratio (broker msg/s / ceiling): {rate / ceiling:.2f}x")
    print(summary("baseline raw aio-pika request/reply", run.round_trips))
    print(f"ratio (p50 sale / p50 raw round trip): {p50 / statistics.median(run.round_trips):.0f}x")
    print("\n".join(run.cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sales", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--pipeline-items", type=int, default=3000)
    parser.add_argument(
        "--services-only",
        action="store_true",
        help="the four domain services without the web faces (as trees before them ran)",
    )
    args = parser.parse_args()
    print(f"start: {load_average()}")
    with bench_system(web_faces=not args.services_only) as bench:
        run = asyncio.run(measure(bench, args.sales, args.in_flight, args.pipeline_items))
    print(f"end: {load_average()}")
    report(run, args.sales, args.in_flight)


if __name__ == "__main__":
    main()
