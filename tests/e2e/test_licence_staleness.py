"""End to end: how late a licence check may be, with two licensing replicas.

Each licensing process caches what a customer's appliances are entitled to for at most
``LICENSE_CACHE_SECONDS`` (services/licensing/licence_cache.py). A change is saved by
whichever replica took the message (or the HTTP call); the other learns of it only from
the store. The bound: a check that *arrives* ``BOUND`` seconds or more after the change
was confirmed (the reply to ``license.suspend``, the answer to the registration) gets the
new answer from every replica, and never the old one again. Checks before that may still
get the old one, from the replica that did not make the change.

The system is the one `make run` starts (launcher, processes, embedded store), two
licensing replicas behind their own ports, driven as outside systems would (the contract
client as operations, HTTP as the appliance).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from testkit.broker import delete_namespace
from testkit.contract_client import ContractClient, read_users
from testkit.processes import LaunchedSystem, launched_system, services_only
from tests.support import proofs

pytestmark = pytest.mark.e2e

BOUND = 2.0  # LICENSE_CACHE_SECONDS of this system
WATCH = BOUND + 1.5  # how long after the change the appliance keeps checking
REPLICAS = 2


@pytest.fixture(scope="module")
def launched(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedSystem]:
    with launched_system(
        amqp_url,
        tmp_path_factory.mktemp("staleness"),
        replicas=services_only({"licensing": REPLICAS}),
        settings={"LICENSE_CACHE_SECONDS": str(BOUND)},
    ) as system:
        yield system
    asyncio.run(delete_namespace(amqp_url, system.namespace))


@pytest.fixture
async def client(launched: LaunchedSystem, amqp_url: str) -> AsyncIterator[ContractClient]:
    users = read_users(launched.data_dir / "broker-users.json")
    async with ContractClient(amqp_url, launched.namespace, users) as contract_client:
        yield contract_client


async def sold(launched: LaunchedSystem, client: ContractClient, http: httpx.AsyncClient) -> Any:
    """A premium plan bound to a new customer through a real sale; (email, token)."""
    order = await client.ok(
        "order.place",
        {"reseller_id": "r-stale", "space": "reseller", "edition": "premium", "billing": "annual"},
    )
    order_id = order["order_id"]
    proof = await http.post(
        f"{launched.url('orders')}/v1/orders/{order_id}/proofs",
        headers={"Authorization": f"Bearer {launched.api_token}", "X-Reseller-Id": "r-stale"},
        files={"file": ("proof.pdf", proofs.pdf("Wire transfer"), "application/pdf")},
    )
    assert proof.status_code == 201, proof.text
    await client.ok("proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"})
    email = f"stale-{uuid.uuid4().hex[:8]}@customer.example"
    await client.ok(
        "plan.bind", {"reseller_id": "r-stale", "order_id": order_id, "customer_email": email}
    )
    note = await client.wait_event("customer.notification", lambda b: b["order_id"] == order_id)
    return email, note["registration_token"]


async def register(
    launched: LaunchedSystem,
    http: httpx.AsyncClient,
    email: str,
    token: str,
    appliance_id: str,
    *,
    replica: int = 0,
    move: bool = False,
) -> str:
    response = await http.post(
        f"{launched.url('licensing', replica)}/v1/appliances/register",
        json={
            "email": email,
            "registration_token": token,
            "appliance_id": appliance_id,
            "move": move,
        },
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["appliance_secret"]
    return secret


@dataclass(frozen=True)
class Check:
    replica: int
    sent: float  # seconds after the change was confirmed, when the request left
    status: str
    edition: str


async def check(
    launched: LaunchedSystem, http: httpx.AsyncClient, appliance_id: str, secret: str, replica: int
) -> dict[str, Any]:
    response = await http.get(
        f"{launched.url('licensing', replica)}/v1/appliances/{appliance_id}/license",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def watch(
    launched: LaunchedSystem,
    http: httpx.AsyncClient,
    appliance_id: str,
    secret: str,
    changed_at: float,
) -> list[Check]:
    """The appliance checks at every replica, over and over, until ``WATCH`` seconds
    after ``changed_at`` (``time.monotonic``)."""
    seen: list[Check] = []
    while time.monotonic() - changed_at < WATCH:
        for replica in range(REPLICAS):
            sent = time.monotonic() - changed_at
            body = await check(launched, http, appliance_id, secret, replica)
            seen.append(Check(replica, sent, body["status"], body["edition"]))
        await asyncio.sleep(0.02)
    return seen


async def warm(
    launched: LaunchedSystem, http: httpx.AsyncClient, appliance_id: str, secret: str
) -> None:
    """Every replica has just answered this appliance (its cache holds the customer)."""
    for replica in range(REPLICAS):
        body = await check(launched, http, appliance_id, secret, replica)
        assert body["status"] == "active", body


def assert_within_bound(seen: list[Check], expected: tuple[str, str]) -> None:
    """From ``BOUND`` on, every replica gives ``expected`` (status, edition), every time;
    each replica gave it at least once by then."""
    late = [c for c in seen if c.sent >= BOUND]
    assert {c.replica for c in late} == set(range(REPLICAS))
    stale = [c for c in late if (c.status, c.edition) != expected]
    assert stale == [], f"served stale past the {BOUND} s bound: {stale[:5]}"
    for replica in range(REPLICAS):
        first = next(c for c in seen if c.replica == replica and (c.status, c.edition) == expected)
        assert first.sent < BOUND + 0.5, (replica, first)
        print(f"\n{expected[0]}: replica {replica} answered it from {first.sent:.2f} s")


async def test_l8_a_suspension_reaches_every_replica_within_the_bound_and_stays(
    launched: LaunchedSystem, client: ContractClient
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        email, token = await sold(launched, client, http)
        secret = await register(launched, http, email, token, "xoa-l8")
        await warm(launched, http, "xoa-l8", secret)

        suspended = await client.ok(
            "license.suspend", {"customer_email": email, "reason": "payment_dispute"}
        )
        changed_at = time.monotonic()  # saved before the reply was sent
        assert suspended["status"] == "suspended"
        seen = await watch(launched, http, "xoa-l8", secret, changed_at)
        assert_within_bound(seen, ("suspended", "free"))

        await reinstated_everywhere(launched, client, http, email, secret)


async def reinstated_everywhere(
    launched: LaunchedSystem,
    client: ContractClient,
    http: httpx.AsyncClient,
    email: str,
    secret: str,
) -> None:
    """L8 the other way: reinstated, the edition is back within the bound everywhere."""
    await client.ok("license.reinstate", {"customer_email": email, "reason": "dispute_settled"})
    changed_at = time.monotonic()
    seen = await watch(launched, http, "xoa-l8", secret, changed_at)
    assert_within_bound(seen, ("active", "premium"))


async def test_l5_a_move_made_at_one_replica_reaches_the_released_appliance_everywhere(
    launched: LaunchedSystem, client: ContractClient
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        email, token = await sold(launched, client, http)
        secret = await register(launched, http, email, token, "xoa-l5-old")
        await warm(launched, http, "xoa-l5-old", secret)

        await register(launched, http, email, token, "xoa-l5-new", replica=1, move=True)
        changed_at = time.monotonic()  # the move was saved before the answer
        seen = await watch(launched, http, "xoa-l5-old", secret, changed_at)

        assert_within_bound(seen, ("moved", "free"))
