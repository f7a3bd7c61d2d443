"""Faults over the system as `make run` starts it: processes SIGKILLed mid-run (each
service, two at a time; the embedded store) and restarted by the launcher, while 100
complete sales (20 in flight) go through the contract.

Each test asserts what ``tests.faults.sales.check_outcome`` lists: every sale bound, one
line per placement, one notification per order, ledgers reconciled, nothing
dead-lettered; and that the services rode out the store's outage without dying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.runtime.settings import SERVICES
from testkit.broker import delete_namespace
from testkit.processes import LaunchedSystem, launched_system, services_only
from tests.faults.sales import FaultClient, Run, check_outcome

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SALES = 100
# Handler retries: short steps (not the production 1 s, 5 s, 30 s, ...), so that a sale
# caught by an outage does not wait half a minute in a delay queue; the total stays long.
RETRIES = {"RETRY_DELAYS_SECONDS": "[0.5, 1, 2, 4]", "RETRY_TOTAL_SECONDS": "900"}


@pytest.fixture(scope="module")
def launched(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedSystem]:
    with launched_system(
        amqp_url,
        tmp_path_factory.mktemp("faults"),
        replicas=services_only(),
        ready_timeout=180,
        settings=RETRIES,
    ) as system:
        yield system
    asyncio.run(delete_namespace(amqp_url, system.namespace))


def restart_counts(metrics: str) -> dict[str, float]:
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("xo_service_restarts_total{"):
            labels, value = line.rsplit(" ", 1)
            service = labels.split('service="', 1)[1].split('"', 1)[0]
            counts[service] = float(value)
    return counts


async def test_each_service_sigkilled_mid_run_is_restarted_and_every_sale_completes(
    launched: LaunchedSystem, amqp_url: str
) -> None:
    before = {service: launched.restarts(service) for service in SERVICES}
    killed: dict[str, tuple[int, int]] = {}

    async def kill_each_in_turn(run: Run) -> None:
        """Two services at a time (both down together), each pair after more sales."""
        for turn, pair in enumerate((SERVICES[0::2], SERVICES[1::2])):
            await run.until_completed(10 + 30 * turn)
            old = {service: launched.kill(service) for service in pair}
            for service in pair:
                new = await asyncio.to_thread(launched.wait_restarted, service, old[service])
                killed[service] = (old[service], new)

    async with FaultClient(amqp_url, launched) as client, httpx.AsyncClient(timeout=10) as http:
        run = Run(launched, client, http)
        await run.sales(SALES, faults=kill_each_in_turn)
        await check_outcome(run, amqp_url, crashed=True, expected=SALES)
    print(run.summary())

    assert set(killed) == set(SERVICES)
    for service in SERVICES:
        assert launched.restarts(service) == before[service] + 1
    restarted = [
        line
        for line in launched.log_lines()
        if line.get("event") == "service_restarted" and line.get("process") in SERVICES
    ]
    assert {line["process"] for line in restarted} == set(SERVICES)
    assert all(line["exit_code"] == -9 and line["delay"] >= 1 for line in restarted)
    counts = restart_counts(launched.launcher_metrics())
    assert all(counts[service] >= 1 for service in SERVICES), counts


async def test_the_store_sigkilled_mid_run_is_restarted_and_every_sale_completes(
    launched: LaunchedSystem, amqp_url: str
) -> None:
    before = launched.restarts("store")
    pids = {service: launched.pid(service) for service in SERVICES}
    outage: dict[str, Any] = {}

    async def kill_the_store(run: Run) -> None:
        await run.until_completed(30)
        old = launched.kill("store")
        outage["new"] = await asyncio.to_thread(launched.wait_restarted, "store", old)
        outage["completed_when_back"] = run.completed

    async with FaultClient(amqp_url, launched) as client, httpx.AsyncClient(timeout=10) as http:
        run = Run(launched, client, http)
        await run.sales(SALES, faults=kill_the_store)
        await check_outcome(run, amqp_url, crashed=True, expected=SALES)
    print(run.summary())

    assert launched.restarts("store") == before + 1
    assert outage["completed_when_back"] < SALES, "the store came back after the run ended"
    # the services rode the outage out: none of them died
    assert {service: launched.pid(service) for service in SERVICES} == pids
