"""The trust boundary on the broker (CONTRACT.md, Identities), probed as an attacker.

Each probe was run against the system before identities existed and succeeded; here
each must be refused and leave no trace. ``guest`` (full rights on the session's
virtual host) stands for anyone with broker access; the role users stand for a
compromised or buggy internal system.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused

from testkit.contract_client import ContractClient
from tests.support.flows import bound_order, place, upload
from tests.support.system import System

pytestmark = pytest.mark.integration

T0 = "2026-01-01T00:00:00+00:00"


@pytest.fixture
async def attacker(system: System) -> Any:
    """``guest``: broker access and nothing else (no role's credentials)."""
    async with ContractClient(system.settings.amqp_url, system.settings.amqp_namespace) as c:
        yield c


def _reason(dead: AbstractIncomingMessage) -> str:
    return str((dead.headers or {}).get("x-death-reason", ""))


async def _dead_letter_reasons(system: System, wait_for: int) -> list[str]:
    return [_reason(d) for d in await system.client.dead_letters(wait_for=wait_for)]


async def test_a_guest_published_command_is_forbidden_and_dead_lettered(
    system: System, attacker: ContractClient
) -> None:
    body = {
        "reseller_id": "victim",
        "space": "reseller",
        "edition": "starter",
        "billing": "monthly",
    }
    reply = await attacker.request("order.place", body)
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    [reason] = await _dead_letter_reasons(system, 1)
    assert reason.startswith("unauthorized_publisher")
    lines = await system.client.ok("order.list", {"reseller_id": "victim"})
    assert lines["orders"] == []  # nothing was applied


async def test_guest_cannot_read_a_resellers_balance_or_orders(
    system: System, attacker: ContractClient
) -> None:
    for key in ("credits.balance", "credits.statement", "order.list"):
        reply = await attacker.request(key, {"reseller_id": "victim"})
        assert reply["error"]["code"] == "forbidden", (key, reply)
    await _dead_letter_reasons(system, 3)


async def test_forged_plan_bound_gives_no_licence(system: System, attacker: ContractClient) -> None:
    forged = {
        "order_id": "ol_forged",
        "reseller_id": "evil",
        "space": "reseller",
        "customer_email": "mallory@example.com",
        "edition": "premium",
        "billing": "annual",
        "period_start": T0,
        "period_end": "2036-01-01T00:00:00+00:00",
        "occurred_at": T0,
        "correlation_id": "ol_forged",
    }
    await attacker.publish_event("plan.bound", forged, message_id=str(uuid.uuid4()))
    [reason] = await _dead_letter_reasons(system, 1)
    assert "unauthorized_publisher" in reason and "plan.bound" in reason
    status = await system.client.request(
        "license.status", {"customer_email": "mallory@example.com"}
    )
    assert (status["result"]["edition"], status["result"]["reason"]) == ("free", "no_plan")
    assert not [e for k, e, _ in system.client.events if k == "customer.notification"]


async def test_a_service_cannot_forge_another_services_event_even_past_the_exchange(
    system: System,
) -> None:
    """credits may publish on the default exchange (replies): straight into licensing's
    ``plan.bound`` queue, past the topic permissions. The consumer still refuses it."""
    users = json.loads(system.settings.users_file().read_text())
    credits_user = users["credits"]
    url = system.client.amqp_url.replace(
        "guest:guest", f"{credits_user['username']}:{credits_user['password']}"
    )
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        body = {
            "order_id": "ol_x",
            "reseller_id": "r",
            "space": "reseller",
            "customer_email": "eve@example.com",
            "edition": "premium",
            "billing": "annual",
            "period_start": T0,
            "period_end": "2036-01-01T00:00:00+00:00",
            "occurred_at": T0,
        }
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                message_id=str(uuid.uuid4()),
                user_id=credits_user["username"],
            ),
            routing_key=system.settings.amqp_namespace + "licensing.plan.bound",
        )
    [reason] = await _dead_letter_reasons(system, 1)
    assert "unauthorized_publisher" in reason
    status = await system.client.ok("license.status", {"customer_email": "eve@example.com"})
    assert (status["edition"], status["reason"]) == ("free", "no_plan")


async def test_forged_proof_accepted_grants_no_credit(
    system: System, attacker: ContractClient
) -> None:
    zero = {"amount": 0, "currency": "EUR"}
    forged = {
        "order_id": "ol_fake",
        "reseller_id": "evil",
        "reviewer": "nobody",
        "space": "reseller",
        "edition": "premium",
        "billing": "annual",
        "price": {
            "list_price": {"amount": 399900, "currency": "EUR"},
            "discount": {"amount": 79980, "currency": "EUR"},
            "credit_applied": zero,
            "amount_due": {"amount": 319920, "currency": "EUR"},
            "first_sale": False,
            "first_sale_credit": zero,
            "credit_note": zero,
            "credit_note_excess": {"amount": 5_000_000, "currency": "EUR"},
        },
        "occurred_at": T0,
    }
    await attacker.publish_event("proof.accepted", forged, message_id=str(uuid.uuid4()))
    reasons = await _dead_letter_reasons(system, 1)
    assert all("unauthorized_publisher" in r for r in reasons)
    balance = await system.client.ok("credits.balance", {"reseller_id": "evil"})
    assert balance["available"]["amount"] == 0 and balance["lots"] == []


async def test_the_storefront_cannot_review_a_proof_or_reissue_a_token(system: System) -> None:
    """The broker itself refuses the storefront's operations commands (topic
    permissions): the channel is closed, nothing is delivered."""
    order = await place(system, "r-sf")
    assert (await upload(system, order["order_id"], "r-sf")).status_code == 201
    for key, body in (
        ("proof.review", {"order_id": order["order_id"], "decision": "accept", "reviewer": "me"}),
        ("registration.reissue", {"customer_email": "a@example.com", "reason": "lost"}),
        ("license.suspend", {"customer_email": "a@example.com", "reason": "x"}),
    ):
        with pytest.raises(ChannelAccessRefused):
            await system.client.send(key, body, as_role="storefront")
        system.client.forget("storefront")  # the broker closed that channel
    line = await system.client.ok(
        "order.get", {"reseller_id": "r-sf", "order_id": order["order_id"]}
    )
    assert line["status"] == "proof_submitted"


async def test_the_storefront_cannot_reserve_credit_or_publish_events(system: System) -> None:
    with pytest.raises(ChannelAccessRefused):
        await system.client.send(
            "credit.reserve",
            {
                "reseller_id": "victim",
                "order_id": "ol_lock",
                "space": "reseller",
                "wanted": {"amount": 100000, "currency": "EUR"},
                "use_credit": True,
                "first_sale_requested": False,
            },
            as_role="storefront",
        )
    system.client.forget("storefront")
    with pytest.raises(ChannelAccessRefused):
        await system.client.publish_event(
            "plan.bound", {"order_id": "x"}, message_id="m", as_role="storefront"
        )
    system.client.forget("storefront")


async def test_a_reviewer_is_recorded_with_the_identity_that_published_the_review(
    system: System,
) -> None:
    order = await place(system, "r-rev")
    assert (await upload(system, order["order_id"], "r-rev")).status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": order["order_id"], "decision": "accept", "reviewer": "alice"}
    )
    line = await system.client.ok(
        "order.get", {"reseller_id": "r-rev", "order_id": order["order_id"]}
    )
    accepted = next(h for h in line["history"] if h["action"] == "proof_accepted")
    operations_user = json.loads(system.settings.users_file().read_text())["operations"]
    assert accepted["by"] == f"alice via {operations_user['username']}"


async def test_a_message_id_reused_for_another_reseller_places_one_line(system: System) -> None:
    """Before: two paid lines from one quote, credit applied twice but consumed once."""
    shared_id = str(uuid.uuid4())

    def body(reseller: str) -> dict[str, Any]:
        return {
            "reseller_id": reseller,
            "space": "reseller",
            "edition": "starter",
            "billing": "monthly",
        }

    first, second = await asyncio.gather(
        system.client.request("order.place", body("r-a"), message_id=shared_id),
        system.client.request("order.place", body("r-b"), message_id=shared_id),
    )
    outcomes = sorted([first["ok"], second["ok"]])
    assert outcomes == [False, True], (first, second)
    refused = first if not first["ok"] else second
    assert refused["error"]["code"] == "idempotency_key_reused"
    lines = [
        *(await system.client.ok("order.list", {"reseller_id": "r-a"}))["orders"],
        *(await system.client.ok("order.list", {"reseller_id": "r-b"}))["orders"],
    ]
    assert len(lines) == 1


async def test_a_cancel_reusing_a_placement_id_is_refused_not_answered_with_the_placement(
    system: System,
) -> None:
    placed_id = str(uuid.uuid4())
    order = await system.client.ok(
        "order.place",
        {"reseller_id": "r-c", "space": "reseller", "edition": "starter", "billing": "monthly"},
        message_id=placed_id,
    )
    reply = await system.client.request(
        "order.cancel", {"reseller_id": "r-c", "order_id": order["order_id"]}, message_id=placed_id
    )
    assert reply["ok"] is False and reply["error"]["code"] == "idempotency_key_reused", reply
    line = await system.client.ok(
        "order.get", {"reseller_id": "r-c", "order_id": order["order_id"]}
    )
    assert line["status"] == "awaiting_proof"
    # the same id with the same request still gets the first answer
    again = await system.client.ok(
        "order.place",
        {"reseller_id": "r-c", "space": "reseller", "edition": "starter", "billing": "monthly"},
        message_id=placed_id,
    )
    assert again["order_id"] == order["order_id"]


async def test_a_command_without_message_id_gets_an_answer(system: System) -> None:
    """aiormq fills in a missing id, so this sends a blank one (other clients send none)."""
    sender = await system.client.sender("storefront")
    correlation_id = str(uuid.uuid4())
    future = system.client.expect_reply(correlation_id)
    await sender.commands.publish(
        aio_pika.Message(
            json.dumps({"reseller_id": "r"}).encode(),
            message_id="   ",
            correlation_id=correlation_id,
            reply_to="amq.rabbitmq.reply-to",
            user_id=sender.user_id,
        ),
        routing_key="order.list",
    )
    reply = await asyncio.wait_for(future, 15)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_message"
    assert "message_id" in reply["error"]["message"]
    [reason] = await _dead_letter_reasons(system, 1)
    assert "missing message_id" in reason


async def test_a_bound_plan_survives_every_forgery_above(system: System) -> None:
    """The real path still works with the identities: a bound plan, its token sent."""
    order_id = await bound_order(system, "r-ok", "real@example.com")
    notification = await system.client.wait_event(
        "customer.notification", lambda b: b["order_id"] == order_id
    )
    assert notification["registration_token"]
