"""End to end: the system as `make run` starts it, driven as an outside system would.

The client knows only CONTRACT.md: raw AMQP to the exchanges, HTTP to the services,
and the published public key to verify the licence offline (as an appliance does).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.runtime.settings import SERVICES
from testkit.broker import delete_namespace
from testkit.contract_client import ContractClient, read_users
from testkit.processes import LaunchedSystem, launched_system, services_only
from tests.support import proofs
from tests.support.licensing import verify_offline
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def launched(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with launched_system(amqp_url, tmp_path_factory.mktemp("e2e")) as system:
        yield system
    asyncio.run(delete_namespace(amqp_url, system.namespace))


@pytest.fixture
async def client(launched: LaunchedSystem, amqp_url: str) -> AsyncIterator[ContractClient]:
    # An outside system: it knows the broker's address and DATA_DIR/broker-users.json.
    users = read_users(launched.data_dir / "broker-users.json")
    async with ContractClient(amqp_url, launched.namespace, users) as contract_client:
        yield contract_client


async def test_a_whole_sale_down_to_the_verified_licence(
    launched: LaunchedSystem, client: ContractClient
) -> None:
    quote = await client.ok(
        "quote.request",
        {"reseller_id": "acme", "space": "reseller", "edition": "premium", "billing": "monthly"},
    )
    # Q4: acme's first sale: the list price now, the 20 % discount credited once paid
    assert quote["amount_due"] == {"amount": 39900, "currency": "EUR"}
    assert quote["first_sale_credit"] == {"amount": 7980, "currency": "EUR"}
    order = await client.ok(
        "order.place",
        {"reseller_id": "acme", "space": "reseller", "quote_number": quote["quote_number"]},
    )
    order_id = order["order_id"]
    async with httpx.AsyncClient(timeout=10) as http:
        proof = await http.post(
            f"{launched.url('orders')}/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {launched.api_token}", "X-Reseller-Id": "acme"},
            files={
                "file": ("virement.pdf", proofs.pdf("Wire transfer 319.20 EUR"), "application/pdf")
            },
        )
        assert proof.status_code == 201, proof.text
        await client.ok(
            "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"}
        )

        started = time.perf_counter()
        bound = await client.ok(
            "plan.bind",
            {"reseller_id": "acme", "order_id": order_id, "customer_email": "Eve@Customer.example"},
        )
        note = await client.wait_event("customer.notification", lambda b: b["order_id"] == order_id)
        registered = await http.post(
            f"{launched.url('licensing')}/v1/appliances/register",
            json={
                "email": "eve@customer.example",
                "registration_token": note["registration_token"],
                "appliance_id": "xoa-eve-1",
            },
        )
        assert registered.status_code == 200, registered.text
        secret = registered.json()["appliance_secret"]
        checked = await http.get(
            f"{launched.url('licensing')}/v1/appliances/xoa-eve-1/license",
            headers={"Authorization": f"Bearer {secret}"},
        )
        latency_ms = (time.perf_counter() - started) * 1000
        keys = (await http.get(f"{launched.url('licensing')}/v1/public-key")).json()

    print(f"\nplan.bind -> licence checked by the appliance: {latency_ms:.1f} ms")
    status = checked.json()
    assert (status["status"], status["edition"], status["support"]) == ("active", "premium", True)
    assert datetime.fromisoformat(status["valid_until"]) == datetime.fromisoformat(
        bound["period_end"]
    )
    claims = verify_offline(status["license"], keys["public_key"])
    assert (claims.customer_email, claims.appliance_id, claims.edition) == (
        "eve@customer.example",
        "xoa-eve-1",
        "premium",
    )
    licence_status = await client.ok("license.status", {"customer_email": "eve@customer.example"})
    assert [a["appliance_id"] for a in licence_status["appliances"]] == ["xoa-eve-1"]


async def test_refusals_bind_before_payment_and_wrong_reseller(
    launched: LaunchedSystem, client: ContractClient
) -> None:
    order = await client.ok(
        "order.place",
        {"reseller_id": "acme", "space": "reseller", "edition": "starter", "billing": "annual"},
    )
    early = await client.request(
        "plan.bind",
        {"reseller_id": "acme", "order_id": order["order_id"], "customer_email": "x@y.example"},
    )
    assert early == {
        "ok": False,
        "error": {
            "code": "order_not_paid",
            "message": f"order {order['order_id']} is awaiting_proof: only a paid line binds",
        },
    }
    foreign = await client.request(
        "order.get", {"reseller_id": "intruder", "order_id": order["order_id"]}
    )
    assert foreign["error"]["code"] == "not_your_order"
    # every log line written while handling a message carries its ids (JSON, one per line)
    await asyncio.sleep(0.2)
    lines = [
        json.loads(line) for line in launched.log.read_text().splitlines() if line.startswith("{")
    ]
    refused = [
        line
        for line in lines
        if line.get("event") == "command_refused" and line.get("code") == "order_not_paid"
    ]
    assert refused, "the refusal was not logged"
    assert refused[-1]["service"] == "orders"
    assert refused[-1]["routing_key"] == "plan.bind"
    assert refused[-1]["message_id"] and refused[-1]["correlation_id"]


async def test_a_malformed_message_is_dead_lettered_while_the_next_good_one_is_processed(
    client: ContractClient,
) -> None:
    bad = await client.send("plan.bind", b'{"reseller_id": "acme", "order_id": 42')
    good = await client.ok("order.list", {"reseller_id": "acme"})
    assert isinstance(good["orders"], list)
    [dead] = await client.dead_letters()
    assert dead.message_id == bad
    assert "Invalid JSON" in str((dead.headers or {})["x-death-reason"])


def test_sigterm_stops_every_process_cleanly(amqp_url: str, tmp_path: Path) -> None:
    with launched_system(amqp_url, tmp_path) as system:
        system.process.send_signal(signal.SIGTERM)
        assert system.process.wait(timeout=40) == 0
        events = [line["event"] for line in system.log_lines()]
        assert events.count("service_stopped") == sum(system.replicas.values())
        assert "service_killed" not in events
        # the store stops last, once every process that uses it has stopped
        assert events[-2:] == ["embedded_store_stopped", "system_stopped"]
    asyncio.run(delete_namespace(amqp_url, system.namespace))


def test_the_launcher_restarts_a_dead_process_while_the_rest_serves_and_kills_a_stuck_one(
    amqp_url: str, tmp_path: Path
) -> None:
    """A SIGKILLed service is started again after its back-off (logged, counted), the
    others answering meanwhile; on SIGTERM a process that does not stop within the
    grace (here a SIGSTOPped one, grace 2 s) is SIGKILLed, and the store still stops last."""
    with launched_system(
        amqp_url, tmp_path, replicas=services_only(), settings={"STOP_GRACE_SECONDS": "2"}
    ) as system:
        old = system.kill("quotes")
        while system.pid("quotes") == old:  # the launcher has not seen it die yet
            time.sleep(0.05)
        assert httpx.get(system.url("orders") + "/ready", timeout=5).status_code == 200
        new = system.wait_restarted("quotes", old)
        assert new != old and system.restarts("quotes") == 1
        [restarted] = [line for line in system.log_lines() if line["event"] == "service_restarted"]
        assert {
            k: restarted[k] for k in ("process", "replica", "pid", "exit_code", "restarts")
        } == {
            "process": "quotes",
            "replica": 0,
            "pid": new,
            "exit_code": -signal.SIGKILL,
            "restarts": 1,
        }
        assert restarted["delay"] == 1.0
        metrics = system.launcher_metrics()
        assert 'xo_service_restarts_total{replica="0",service="quotes"} 1.0' in metrics
        assert 'xo_service_up{replica="0",service="quotes"} 1.0' in metrics

        stuck = system.pid("orders")
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)  # it can no longer handle SIGTERM
        system.process.send_signal(signal.SIGTERM)
        assert system.process.wait(timeout=30) == 0
        lines = system.log_lines()
        events = [line["event"] for line in lines]
        [killed] = [line for line in lines if line["event"] == "service_killed"]
        assert (killed["process"], killed["replica"]) == ("orders", 0)
        assert events.count("service_stopped") == len(SERVICES) - 1
        assert events[-2:] == ["embedded_store_stopped", "system_stopped"]
    asyncio.run(delete_namespace(amqp_url, system.namespace))


def _pro_rata(value: int, start: str, end: str, now: datetime) -> int:
    begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    remaining = (finish - now) // timedelta(milliseconds=1)
    length = (finish - begin) // timedelta(milliseconds=1)
    numerator, denominator = remaining * value, length
    return (2 * numerator + denominator) // (2 * denominator)  # half up


async def _pay(
    client: ContractClient, launched: LaunchedSystem, reseller: str, order_id: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        proof = await http.post(
            f"{launched.url('orders')}/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {launched.api_token}", "X-Reseller-Id": reseller},
            files={"file": ("proof.png", proofs.png(), "image/png")},
        )
        assert proof.status_code == 201, proof.text
    await client.ok("proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"})


async def test_two_sales_first_sale_credit_once_then_an_exact_upgrade(
    launched: LaunchedSystem, client: ContractClient
) -> None:
    reseller = "globex"
    first = await client.ok(
        "order.place",
        {
            "reseller_id": reseller,
            "space": "reseller",
            "edition": "enterprise",
            "billing": "annual",
        },
    )
    assert first["amount_due"] == {"amount": 199900, "currency": "EUR"}  # Q4: list price
    await _pay(client, launched, reseller, first["order_id"])
    granted = await client.wait_event(
        "credit.granted", lambda b: b["order_id"] == first["order_id"]
    )
    assert granted["amount"] == {"amount": 39980, "currency": "EUR"}
    balance = await client.ok("credits.balance", {"reseller_id": reseller})
    [lot] = balance["lots"]
    granted_at = datetime.fromisoformat(lot["granted_at"])
    assert datetime.fromisoformat(lot["expires_at"]).date() == granted_at.date().replace(
        year=granted_at.year + 1
    )

    second = await client.ok(
        "order.place",
        {"reseller_id": reseller, "space": "reseller", "edition": "premium", "billing": "annual"},
    )
    # C4: 399,900 - 20 % = 319,920, then the 39,980 credit
    assert second["credit_reserved"] == {"amount": 39980, "currency": "EUR"}
    assert second["amount_due"] == {"amount": 279940, "currency": "EUR"}
    await _pay(client, launched, reseller, second["order_id"])
    await client.wait_event("credit.consumed", lambda b: b["order_id"] == second["order_id"])
    statement = await client.ok("credits.statement", {"reseller_id": reseller})
    assert [e["kind"] for e in statement["entries"]] == ["grant", "reserve", "consume"]
    assert statement["reconciled"] is True
    assert len([k for k, _, _ in client.events if k == "credit.granted"]) == 1

    bound = await client.ok(
        "plan.bind",
        {
            "reseller_id": reseller,
            "order_id": first["order_id"],
            "customer_email": "it@globex.example",
        },
    )
    before = datetime.now(UTC)
    upgrade = await client.ok(
        "plan.upgrade",
        {"reseller_id": reseller, "order_id": first["order_id"], "edition": "premium"},
    )
    after = datetime.now(UTC)
    # O7: remaining / period x what the plan really cost (199,900 less the 39,980 credited)
    candidates = {
        _pro_rata(159920, bound["period_start"], bound["period_end"], moment)
        for moment in (before, after)
    }
    assert upgrade["credit_note"]["amount"] in candidates
    assert upgrade["amount_due"]["amount"] == 319920 - upgrade["credit_note"]["amount"]
    await _pay(client, launched, reseller, upgrade["order_id"])
    changed = await client.wait_event(
        "plan.upgraded", lambda b: b["order_id"] == upgrade["order_id"]
    )
    assert changed["previous_order_id"] == first["order_id"]
    await client.wait_event("plan.superseded", lambda b: b["order_id"] == first["order_id"])
    # licensing applies the upgrade as it hears it, beside this client: wait for it
    status = await eventually(
        lambda: client.ok("license.status", {"customer_email": "it@globex.example"}),
        lambda answer: answer["edition"] == "premium",
    )
    assert status["edition"] == "premium"
