"""The console's dead letters page in Debian's Chromium, on a real dead letter: credits is
stopped for longer than orders retries a reseller's ``order.place``, so orders dead-letters
it (``retries_exhausted``) and keeps it; once credits is back an operator sees it listed
with its reason and replays it; the line is placed once and the sale goes on to the licence.
Screenshots in .artifacts/screenshots/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.orders.domain import order_id_for
from shared.runtime.settings import Settings
from tests.browser.test_console_pages import ConsoleWeb, console_web
from tests.support.dead_letters import (
    kept_dead_letters,
    placement_dead_lettered_while_credits_is_down,
    quick_to_give_up,
)
from tests.support.flows import upload
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[ConsoleWeb]:
    async with console_web(quick_to_give_up(settings)) as running:
        yield running


async def test_a_placement_dead_lettered_while_credits_was_down_is_replayed_and_the_sale_completes(
    web: ConsoleWeb,
) -> None:
    system = web.system
    await web.operator("fay@ops.example", "Fay")
    message_id = await placement_dead_lettered_while_credits_is_down(system, "r-dead")
    order_id = order_id_for("r-dead", message_id)
    lines = await system.client.ok("order.list", {"reseller_id": "r-dead"})
    assert lines["orders"] == []  # nothing placed: the placement is dead
    typo_id = await system.client.send("order.place", {"reseller_id": "r-typo", "space": "moon"})
    await kept_dead_letters(system, "orders", count=2)

    page = await web.signed_in("fay@ops.example", "/dead-letters")
    row = page.locator(f"#dead-letters tr[data-message='{message_id}']")
    text = await row.inner_text()
    assert "orders" in text and "order.place" in text
    assert "retries_exhausted: 4 attempts" in text and "no answer in time" in text
    assert f"{system.settings.amqp_user_prefix}storefront" in text  # its original publisher
    assert '"reseller_id": "r-dead"' in text  # the body's preview
    await web.shot(page, "dead-letters-listed")

    await row.locator("input[name=pick]").check()
    await page.click("#replay")
    await page.wait_for_load_state()
    assert "replay: 1 done." in await page.locator(".banner.notice").inner_text()
    assert await page.locator(f"#dead-letters tr[data-message='{message_id}']").count() == 0
    await web.shot(page, "dead-letters-replayed")

    # A message nobody can fix (invalid): discarded with a reason, found by its reason.
    await page.goto(f"{web.url}/dead-letters?reason=invalid%20message")
    typo = page.locator(f"#dead-letters tr[data-message='{typo_id}']")
    assert "space: Input should be" in await typo.inner_text()
    assert await page.locator("#dead-letters tr[data-message]").count() == 1  # the filter
    await typo.locator("input[name=pick]").check()
    await page.fill("input[name=reason][placeholder='reason to discard']", "a typo in a script")
    await page.click("button:has-text('Discard the selection')")
    await page.wait_for_load_state()
    assert "discard: 1 done." in await page.locator(".banner.notice").inner_text()
    assert await page.locator(f"#dead-letters tr[data-message='{typo_id}']").count() == 0
    await web.shot(page, "dead-letters-discarded")
    discarded = await system.client.wait_event(
        "deadletter.discarded", lambda b: b["message_id"] == typo_id
    )
    assert (discarded["operator"], discarded["reason"]) == ("fay@ops.example", "a typo in a script")

    # Replayed through orders' own consumer: the line exists, once.
    lines = await system.client.ok("order.list", {"reseller_id": "r-dead"})
    assert [line["order_id"] for line in lines["orders"]] == [order_id]
    [replayed] = [
        d
        for d in (await system.client.ok("deadletter.list", {"service": "orders", "status": None}))[
            "dead_letters"
        ]
        if d["message_id"] == message_id
    ]
    assert (replayed["status"], replayed["last_outcome"]) == ("replayed", "ok")
    assert replayed["operator"] == "fay@ops.example"
    audit = await system.client.wait_event(
        "deadletter.replayed", lambda b: b["message_id"] == message_id
    )
    assert audit["operator"] == "fay@ops.example"
    assert await kept_dead_letters(system, "orders", count=0) == []

    # The sale goes on: proof, review, binding, licence.
    assert (await upload(system, order_id, "r-dead")).status_code == 201
    await system.client.ok(
        "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "fay"}
    )
    email = "grace@example.com"
    await system.client.ok(
        "plan.bind", {"reseller_id": "r-dead", "order_id": order_id, "customer_email": email}
    )
    await system.client.wait_event("license.unlocked", lambda b: b["customer_email"] == email)
    await eventually(
        lambda: web.store.line(order_id), lambda line: line is not None and line.status == "bound"
    )
    await page.goto(f"{web.url}/lines/{order_id}")
    assert await page.locator("#line-status").inner_text() == "bound"
    await web.shot(page, "dead-letter-sale-completed")
    await page.goto(f"{web.url}/events")
    assert "deadletter.replayed" in await page.content()
    await web.shot(page, "dead-letter-replay-in-event-log")
