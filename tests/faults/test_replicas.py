"""Two replicas of each service (``REPLICAS``), as `make run` starts them: 100 complete
sales (20 in flight) with no crash publish every event exactly once (counted by message
id on the observer's queue), and everything ``check_outcome`` lists holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.runtime.settings import SERVICES
from testkit.broker import delete_namespace
from testkit.processes import LaunchedSystem, launched_system, services_only
from tests.faults.sales import FaultClient, Run, check_outcome

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
SALES = 100


@pytest.fixture(scope="module")
def replicated(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedSystem]:
    with launched_system(
        amqp_url,
        tmp_path_factory.mktemp("replicas"),
        replicas=services_only(dict.fromkeys(SERVICES, 2)),
        ready_timeout=240,
    ) as system:
        yield system
    asyncio.run(delete_namespace(amqp_url, system.namespace))


def _handled(metrics: str) -> float:
    """Messages a process handled, whatever their outcome."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "xo_messages_total"
    )


async def test_two_replicas_of_each_service_publish_every_event_once(
    replicated: LaunchedSystem, amqp_url: str
) -> None:
    pids = {(s, k): replicated.pid(s, k) for s in SERVICES for k in range(2)}
    async with (
        FaultClient(amqp_url, replicated) as client,
        httpx.AsyncClient(timeout=10) as http,
    ):
        run = Run(replicated, client, http)
        await run.sales(SALES)
        await check_outcome(run, amqp_url, crashed=False, expected=SALES)
        handled = {
            (s, k): _handled((await http.get(replicated.admin_url(s, k) + "/metrics")).text)
            for s in SERVICES
            for k in range(2)
        }
    # no crash: the same processes ran from start to end
    assert {(s, k): replicated.pid(s, k) for s in SERVICES for k in range(2)} == pids
    # both replicas of every service took part
    assert all(count > 0 for count in handled.values()), handled
