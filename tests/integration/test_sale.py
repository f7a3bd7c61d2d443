"""A sale through the four services on the real broker and store, with every refusal precise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.runtime.settings import Settings
from tests.support.flows import PDF, PNG, bound_order, paid_order, place, quote, upload
from tests.support.system import System, running_system

pytestmark = pytest.mark.integration


async def test_whole_sale_quote_to_licence(system: System) -> None:
    q = await quote(system, "r-1", "enterprise", "annual")
    # Q4: a new reseller's first sale: undiscounted now, the discount credited after payment
    assert (q["list_price"]["amount"], q["discount"]["amount"], q["amount_due"]["amount"]) == (
        199900,
        0,
        199900,
    )
    assert (q["first_sale"], q["first_sale_credit"]["amount"]) == (True, 39980)
    assert q["reseller_document"] is True  # Q3
    order = await place(system, "r-1", quote_number=q["quote_number"])
    assert order["status"] == "awaiting_proof"
    assert order["amount_due"] == {"amount": 199900, "currency": "EUR"}
    response = await upload(system, order["order_id"], "r-1")
    assert response.status_code == 201, response.text
    await system.client.ok(
        "proof.review", {"order_id": order["order_id"], "decision": "accept", "reviewer": "ops-1"}
    )
    bound = await system.client.ok(
        "plan.bind",
        {
            "reseller_id": "r-1",
            "order_id": order["order_id"],
            "customer_email": " Alice@Example.COM ",
        },
    )
    assert bound["customer_email"] == "alice@example.com"  # O5: normalised
    notification = await system.client.wait_event(
        "customer.notification", lambda b: b["order_id"] == order["order_id"]
    )
    async with system.http("licensing") as http:
        registered = await http.post(
            "/v1/appliances/register",
            json={
                "email": "ALICE@example.com",
                "registration_token": notification["registration_token"],
                "appliance_id": "xoa-1",
            },
        )
        assert registered.status_code == 200, registered.text
        secret = registered.json()["appliance_secret"]
        licence = await http.get(
            "/v1/appliances/xoa-1/license", headers={"Authorization": f"Bearer {secret}"}
        )
    body = licence.json()
    assert (body["status"], body["edition"], body["support"]) == ("active", "enterprise", True)
    line = await system.client.ok(
        "order.get", {"reseller_id": "r-1", "order_id": order["order_id"]}
    )
    assert [h["action"] for h in line["history"]] == [
        "placed",
        "proof_submitted",
        "proof_accepted",
        "bound",
    ]
    # every event of the line's workflow carries the line's id as correlation id
    for key in (
        "order.placed",
        "proof.submitted",
        "proof.accepted",
        "plan.bound",
        "license.unlocked",
    ):
        event = await system.client.wait_event(
            key, lambda b: b.get("correlation_id") == order["order_id"]
        )
        assert event["occurred_at"].endswith("Z") or event["occurred_at"].endswith("+00:00")


async def test_o5_personal_space_line_binds_to_the_reseller_on_payment(system: System) -> None:
    q = await quote(system, "r-2", "starter", "monthly", space="personal")
    assert q["discount"]["amount"] == 0 and q["amount_due"]["amount"] == 4900  # Q1: no discount
    assert q["reseller_document"] is False
    refused = await system.client.request(
        "order.place",
        {"reseller_id": "r-2", "space": "personal", "quote_number": q["quote_number"]},
    )
    assert refused["error"]["code"] == "reseller_email_required"
    order_id = await paid_order(
        system,
        "r-2",
        space="personal",
        quote_number=q["quote_number"],
        reseller_email="Me@Reseller.example",
    )
    line = await system.client.ok("order.get", {"reseller_id": "r-2", "order_id": order_id})
    assert (line["status"], line["customer_email"]) == ("bound", "me@reseller.example")
    bind = await system.client.request(
        "plan.bind", {"reseller_id": "r-2", "order_id": order_id, "customer_email": "c@d.example"}
    )
    assert bind["error"]["code"] == "already_bound"


async def test_q2_quote_is_used_once_by_its_own_reseller_in_its_own_space(system: System) -> None:
    q = await quote(system, "r-3")
    foreign = await system.client.request(
        "order.place",
        {"reseller_id": "r-other", "space": "reseller", "quote_number": q["quote_number"]},
    )
    assert foreign["error"]["code"] == "not_your_quote"
    wrong_space = await system.client.request(
        "order.place",
        {
            "reseller_id": "r-3",
            "space": "personal",
            "quote_number": q["quote_number"],
            "reseller_email": "r3@example.com",
        },
    )
    assert wrong_space["error"]["code"] == "space_mismatch"
    await place(system, "r-3", quote_number=q["quote_number"])
    again = await system.client.request(
        "order.place",
        {"reseller_id": "r-3", "space": "reseller", "quote_number": q["quote_number"]},
    )
    assert again["error"]["code"] == "quote_already_used"
    unknown = await system.client.request(
        "order.place", {"reseller_id": "r-3", "space": "reseller", "quote_number": "Q-1999-000001"}
    )
    assert unknown["error"]["code"] == "unknown_quote"


async def test_q2_quote_expires_after_its_validity(system: System) -> None:
    q = await quote(system, "r-4")
    system.clock.advance(timedelta(days=30))
    expired = await system.client.request(
        "order.place",
        {"reseller_id": "r-4", "space": "reseller", "quote_number": q["quote_number"]},
    )
    assert expired["error"]["code"] == "quote_expired"


async def test_q2_quote_numbers_are_unique_and_readable(system: System) -> None:
    numbers = {(await quote(system, "r-5"))["quote_number"] for _ in range(5)}
    assert len(numbers) == 5
    assert all(n.startswith(f"Q-{system.clock.now().year}-") for n in numbers)


async def test_unknown_edition_and_free_edition_are_refused(system: System) -> None:
    for edition in ("platinum", "free"):
        reply = await system.client.request(
            "quote.request",
            {"reseller_id": "r", "space": "reseller", "edition": edition, "billing": "annual"},
        )
        assert reply["error"]["code"] == "unknown_edition", edition


async def test_o5_binding_refusals(system: System) -> None:
    order = await place(system, "r-6")
    before = await system.client.request(
        "plan.bind",
        {"reseller_id": "r-6", "order_id": order["order_id"], "customer_email": "a@b.example"},
    )
    assert before["error"]["code"] == "order_not_paid"
    order_id = await paid_order(system, "r-6")
    foreign = await system.client.request(
        "plan.bind", {"reseller_id": "r-x", "order_id": order_id, "customer_email": "a@b.example"}
    )
    assert foreign["error"]["code"] == "not_your_order"
    invalid = await system.client.request(
        "plan.bind", {"reseller_id": "r-6", "order_id": order_id, "customer_email": "not-an-email"}
    )
    assert invalid["error"]["code"] == "invalid_email"
    await system.client.ok(
        "plan.bind", {"reseller_id": "r-6", "order_id": order_id, "customer_email": "a@b.example"}
    )
    changed = await system.client.request(
        "plan.bind", {"reseller_id": "r-6", "order_id": order_id, "customer_email": "z@b.example"}
    )
    assert changed["error"]["code"] == "already_bound"
    line = await system.client.ok("order.get", {"reseller_id": "r-6", "order_id": order_id})
    assert line["customer_email"] == "a@b.example"


async def test_o3_o4_proof_upload_review_and_rejection(system: System) -> None:
    order_id = (await place(system, "r-7"))["order_id"]
    no_proof = await system.client.request(
        "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"}
    )
    assert no_proof["error"]["code"] == "no_proof_submitted"
    assert (await upload(system, order_id, "r-7", PNG, "scan.pdf")).status_code == 201  # by content
    no_reason = await system.client.request(
        "proof.review", {"order_id": order_id, "decision": "reject", "reviewer": "ops"}
    )
    assert no_reason["error"]["code"] == "rejection_reason_required"
    await system.client.ok(
        "proof.review",
        {"order_id": order_id, "decision": "reject", "reviewer": "ops", "reason": "amount differs"},
    )
    line = await system.client.ok("order.get", {"reseller_id": "r-7", "order_id": order_id})
    assert (line["status"], line["rejection_reason"]) == ("awaiting_proof", "amount differs")
    second = await upload(system, order_id, "r-7", PDF)
    assert second.status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"}
    )
    line = await system.client.ok("order.get", {"reseller_id": "r-7", "order_id": order_id})
    assert line["status"] == "paid"
    assert [p["content_type"] for p in line["proofs"]] == ["image/png", "application/pdf"]
    assert line["proofs"][1]["sha256"] == second.json()["sha256"]
    late = await upload(system, order_id, "r-7", PDF)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "order_not_awaiting_proof"


async def test_o3_proof_upload_refusals_are_precise(system: System) -> None:
    order_id = (await place(system, "r-8"))["order_id"]
    cases = [
        (dict(content=b"hello, I paid"), 415, "unsupported_proof_type"),
        (dict(content=b""), 422, "empty_proof"),
        (dict(token="wrong"), 401, "unauthorised"),
    ]
    for kwargs, status, code in cases:
        response = await upload(system, order_id, "r-8", **kwargs)  # type: ignore[arg-type]
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    foreign = await upload(system, order_id, "r-intruder")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "not_your_order")
    unknown = await upload(system, "ol_nope", "r-8")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_order")
    line = await system.client.ok("order.get", {"reseller_id": "r-8", "order_id": order_id})
    assert (line["status"], line["proofs"]) == ("awaiting_proof", [])  # nothing half-written


async def test_o3_proof_size_limit(amqp_url: str, mongo_url: str, settings: Settings) -> None:
    small = settings.model_copy(update={"proof_max_bytes": 1024})
    async with running_system(small, services=("quotes", "orders", "credits")) as system:
        order_id = (await place(system, "r-9"))["order_id"]
        big = await upload(system, order_id, "r-9", PDF + b" " * (1025 - len(PDF)))
        assert (big.status_code, big.json()["error"]["code"]) == (413, "proof_too_large")
        exact = PDF + b" " * (1024 - len(PDF))  # whitespace after %%EOF: still one PDF
        assert (await upload(system, order_id, "r-9", exact)).status_code == 201


async def test_o8_cancel_only_unpaid_lines_of_ones_own(system: System) -> None:
    order_id = (await place(system, "r-10"))["order_id"]
    foreign = await system.client.request(
        "order.cancel", {"reseller_id": "r-x", "order_id": order_id}
    )
    assert foreign["error"]["code"] == "not_your_order"
    cancelled = await system.client.ok(
        "order.cancel", {"reseller_id": "r-10", "order_id": order_id}
    )
    assert cancelled["status"] == "cancelled"
    await system.client.wait_event("order.cancelled", lambda b: b["order_id"] == order_id)
    paid = await paid_order(system, "r-10")
    refused = await system.client.request("order.cancel", {"reseller_id": "r-10", "order_id": paid})
    assert refused["error"]["code"] == "order_not_cancellable"


async def test_o9_a_reseller_sees_its_own_lines_only(system: System) -> None:
    mine = {(await place(system, "r-11"))["order_id"] for _ in range(2)}
    theirs = (await place(system, "r-12"))["order_id"]
    listed = await system.client.ok("order.list", {"reseller_id": "r-11"})
    assert {line["order_id"] for line in listed["orders"]} == mine
    peek = await system.client.request("order.get", {"reseller_id": "r-11", "order_id": theirs})
    assert peek["error"]["code"] == "not_your_order"


async def test_l1_license_status_gives_the_highest_edition(system: System) -> None:
    await bound_order(system, "r-13", "multi@example.com", edition="starter", billing="annual")
    await bound_order(system, "r-13", "multi@example.com", edition="premium", billing="monthly")
    await system.client.wait_event("license.unlocked", lambda b: b["edition"] == "premium")
    status = await system.client.ok("license.status", {"customer_email": "MULTI@example.com"})
    assert (status["edition"], status["status"], status["support"]) == ("premium", "active", True)
    assert sorted(p["edition"] for p in status["plans"]) == ["premium", "starter"]


async def test_o9_order_list_pages_newest_first_with_filters_and_totals(system: System) -> None:
    """``order.list`` with ``space``, ``status``, ``limit`` and ``offset`` (the reseller
    space's lines page): one page, newest first, and the total of what matches."""
    placed = []
    for _ in range(5):
        placed.append((await place(system, "r-pages"))["order_id"])
        system.clock.advance(timedelta(minutes=1))
    personal = (
        await place(system, "r-pages", space="personal", reseller_email="me@pages.example")
    )["order_id"]
    await system.client.ok("order.cancel", {"reseller_id": "r-pages", "order_id": placed[1]})
    newest_first = placed[::-1]

    async def page(**query: object) -> tuple[list[str], int]:
        listed = await system.client.ok("order.list", {"reseller_id": "r-pages", **query})
        return [line["order_id"] for line in listed["orders"]], listed["total"]

    assert await page(space="reseller", limit=2) == (newest_first[:2], 5)
    assert await page(space="reseller", limit=2, offset=2) == (newest_first[2:4], 5)
    assert await page(space="reseller", limit=2, offset=4) == (newest_first[4:], 5)
    assert await page(space="reseller", limit=2, offset=6) == ([], 5)
    awaiting = [o for o in newest_first if o != placed[1]]
    assert await page(space="reseller", status="awaiting_proof", limit=10) == (awaiting, 4)
    assert await page(status="cancelled", limit=10) == ([placed[1]], 1)
    assert await page(space="personal", limit=10) == ([personal], 1)
