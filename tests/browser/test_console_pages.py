"""The operations console in Debian's Chromium: reviewing PDF and PNG proofs inline,
rejecting with a reason, accepting, a second operator's late decision, a stuck line,
suspending and reinstating a customer. Screenshots in .artifacts/screenshots/console/."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, async_playwright

from services.console.app import ROLE, wire
from services.console.domain import Operator
from services.console.store import ConsoleStore
from shared.runtime.service import Runtime, http_app
from shared.runtime.settings import Settings
from shared.runtime.web import hash_password
from testkit.broker import purge_queues
from testkit.proofs import minimal_pdf
from tests.browser.harness import CHROMIUM_ARGS, SCREENSHOTS, _serve, chromium_path
from tests.support.flows import bound_order, place, upload
from tests.support.system import System, running_system
from tests.support.waiting import eventually
from tools.embedded_mongo import free_port

pytestmark = pytest.mark.integration
SHOTS = SCREENSHOTS / "console"
PASSWORD = "correct horse battery staple"


def png_proof(text: str = "Wire transfer 1,999.00 EUR") -> bytes:
    image = Image.new("RGB", (640, 360), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 630, 350), outline="navy", width=4)
    draw.text((40, 60), "BANK STATEMENT", fill="navy")
    draw.text((40, 120), text, fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class ConsoleWeb:
    system: System
    store: ConsoleStore
    url: str
    browser: Browser

    async def operator(self, email: str, name: str) -> None:
        await self.store.add_operator(
            Operator(
                id=email,
                name=name,
                password_hash=hash_password(PASSWORD),
                created_at=self.system.clock.now(),
            )
        )

    async def signed_in(self, email: str, path: str = "/review") -> Page:
        context = await self.browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(15_000)
        page = await context.new_page()
        await page.goto(self.url + path)
        assert "/signin" in page.url  # every page needs a signed-in operator
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button:has-text('Sign in')")
        await page.wait_for_load_state()
        assert "/signin" not in page.url, await page.content()
        return page

    async def shot(self, page: Page, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def line_status(self, order_id: str, reseller: str) -> str:
        line = await self.system.client.ok(
            "order.get", {"reseller_id": reseller, "order_id": order_id}
        )
        status: str = line["status"]
        return status


@asynccontextmanager
async def console_web(settings: Settings) -> AsyncIterator[ConsoleWeb]:
    port = free_port()
    async with running_system(settings, start=datetime.now(UTC)) as system:
        runtime = Runtime("console", settings, system.clock, role=ROLE)
        wiring = wire(runtime)
        app = http_app(runtime, wiring, title="console")
        await runtime.start(wiring)
        server, task = await _serve(app, port)
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                try:
                    yield ConsoleWeb(
                        system, ConsoleStore(runtime.db), f"http://127.0.0.1:{port}", browser
                    )
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await task
            await runtime.stop()
            names = [runtime.topology.queue(runtime.role, k).name for k in runtime.routing_keys]
            await purge_queues(settings.amqp_url, names)


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[ConsoleWeb]:
    async with console_web(settings) as running:
        yield running


async def _awaiting_review(web: ConsoleWeb, reseller: str, content: bytes, name: str) -> str:
    order_id: str = (await place(web.system, reseller))["order_id"]
    response = await upload(web.system, order_id, reseller, content, name)
    assert response.status_code == 201, response.text
    await eventually(
        lambda: web.store.line(order_id),
        lambda line: line is not None and line.status == "proof_submitted",
    )
    return order_id


async def test_o4_review_pdf_and_png_inline_reject_accept_and_a_late_second_decision(
    web: ConsoleWeb,
) -> None:
    await web.operator("alice@ops.example", "Alice")
    await web.operator("bob@ops.example", "Bob")
    pdf_line = await _awaiting_review(web, "r-pdf", minimal_pdf("Wire 1999.00 EUR"), "wire.pdf")
    web.system.clock.advance(timedelta(minutes=5))
    png_line = await _awaiting_review(web, "r-png", png_proof(), "wire.png")
    web.system.clock.advance(timedelta(hours=2))

    alice = await web.signed_in("alice@ops.example")
    rows = await alice.locator(".queue-list tbody tr").all_inner_texts()
    assert [pdf_line in r for r in rows[:2]] == [True, False]  # oldest first
    assert "2h 5m" in rows[0] and "r-pdf" in rows[0]  # its age, its reseller
    frame = alice.locator("iframe#proof")
    assert await alice.locator("#current-line").get_attribute("data-order") == pdf_line
    source = await frame.get_attribute("src")
    assert source is not None
    pdf = await alice.request.get(web.url + source)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF-")
    sha = await alice.locator("#proof-sha256").inner_text()
    assert pdf.headers["x-proof-sha256"] == sha and len(sha) == 64
    assert "1\u202f999.00 EUR" in await alice.locator("#amount-due").inner_text()
    await alice.wait_for_timeout(500)  # let the PDF viewer paint before the screenshot
    await web.shot(alice, "review-pdf")

    # Bob opens the same line before Alice decides.
    bob = await web.signed_in("bob@ops.example", f"/review?order={pdf_line}")

    await alice.keyboard.press("j")  # the next line: the PNG, shown as an image
    await alice.wait_for_url(f"**/review?order={png_line}")
    image = alice.locator("img#proof")
    await image.wait_for()
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 640
    await web.shot(alice, "review-png")

    # Reject with a reason: the reseller's line goes back to awaiting proof.
    await alice.keyboard.press("r")
    await alice.keyboard.type("The amount does not match the line")
    await alice.keyboard.press("Enter")
    await alice.wait_for_url("**/review?done=*")
    assert "rejected" in await alice.locator(".banner.notice").inner_text()
    assert await web.line_status(png_line, "r-png") == "awaiting_proof"
    line = await web.system.client.ok("order.get", {"reseller_id": "r-png", "order_id": png_line})
    assert line["rejection_reason"] == "The amount does not match the line"

    # Accept the PDF line with the keyboard: it is paid.
    await alice.goto(f"{web.url}/review?order={pdf_line}")
    await alice.keyboard.press("a")
    await alice.wait_for_url("**/review?done=*")
    assert await web.line_status(pdf_line, "r-pdf") == "paid"
    await web.shot(alice, "review-after-decisions")

    # Bob, late: already decided, never a second decision.
    await bob.click("#accept")
    banner = await bob.locator(".banner.error").inner_text()
    assert "Already decided: accepted by alice@ops.example" in banner, banner
    await web.shot(bob, "review-already-decided")
    assert await web.line_status(pdf_line, "r-pdf") == "paid"
    timeline = await web.store.timeline(pdf_line)
    actions = [e for e in timeline if e.routing_key == "action:proof.review"]
    assert [(a.operator, a.body["outcome"]) for a in actions] == [
        ("alice@ops.example", "ok"),
        ("bob@ops.example", "order_not_awaiting_proof"),
    ]


async def test_a_stuck_line_and_a_customer_suspended_then_reinstated(web: ConsoleWeb) -> None:
    await web.operator("carol@ops.example", "Carol")
    stuck_line = (await place(web.system, "r-slow"))["order_id"]
    await eventually(lambda: web.store.line(stuck_line), lambda line: line is not None)
    email = "dave@example.com"
    bound = await bound_order(web.system, "r-cust", email)
    await web.system.client.wait_event("license.unlocked", lambda b: b["customer_email"] == email)
    web.system.clock.advance(timedelta(days=8))

    page = await web.signed_in("carol@ops.example", "/stuck")
    row = page.locator(f"#stuck tr[data-order='{stuck_line}']")
    assert await row.get_attribute("data-kind") == "awaiting_proof"
    assert "8d 0h" in await row.inner_text()
    await web.shot(page, "stuck-lines")
    await row.locator("a").first.click()
    await page.wait_for_url(f"**/lines/{stuck_line}")
    keys = await page.locator("#timeline tr[data-key]").evaluate_all(
        "rows => rows.map(r => r.dataset.key)"
    )
    assert "order.placed" in keys
    await web.shot(page, "line-timeline")

    await page.goto(f"{web.url}/lines/{bound}")
    assert await page.locator("#line-status").inner_text() == "bound"
    price = await page.locator("#price").inner_text()
    # a first sale pays the list price: no zero discount or zero credit as a deduction
    assert "Amount due\t1\u202f999.00 EUR" in price and "First sale: 399.80 EUR" in price
    assert "Reseller discount" not in price and "Credit applied" not in price
    await web.shot(page, "line-bound")

    await page.goto(f"{web.url}/customers?email={email}")
    await page.fill("#suspend-reason", "chargeback from the bank")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#suspend")
    await page.wait_for_load_state()
    assert await page.locator("#licence-status").inner_text() == "suspended"
    assert await page.locator("#suspension-reason").inner_text() == "chargeback from the bank"
    assert await page.locator("#suspended-by").inner_text() == "carol@ops.example"  # L8, who
    await web.shot(page, "customer-suspended")
    await page.fill("#reinstate-reason", "the bank confirmed the payment")
    await page.click("#reinstate")
    await page.wait_for_load_state()
    assert await page.locator("#licence-status").inner_text() != "suspended"
    assert "reinstated" in await page.locator(".banner.notice").inner_text()
    await web.shot(page, "customer-reinstated")

    await page.goto(f"{web.url}/queues")
    assert await page.locator("#queues tr[data-queue='operations.order.placed']").count() == 1
    await web.shot(page, "queues")
    await page.goto(f"{web.url}/partners?reseller=r-cust")
    assert await page.locator("#reconciled").inner_text() == "True"
    await web.shot(page, "partner")


async def test_signing_in_refuses_a_wrong_password_and_forms_need_their_csrf_token(
    web: ConsoleWeb,
) -> None:
    await web.operator("erin@ops.example", "Erin")
    context = await web.browser.new_context()
    page = await context.new_page()
    await page.goto(web.url + "/customers")
    await page.fill("input[name=email]", "erin@ops.example")
    await page.fill("input[name=password]", "not the password at all")
    await page.click("button:has-text('Sign in')")
    assert "Wrong email or password" in await page.locator(".banner.error").inner_text()
    assert "/signin" in page.url
    page = await web.signed_in("erin@ops.example", "/customers")
    forged = await page.request.post(
        web.url + "/customers/suspend",
        form={"email": "x@example.com", "reason": "forged", "csrf": "wrong"},
    )
    assert forged.status == 403
    # the dead letters page asks every keeper; one that does not answer is named, not fatal
    await page.goto(web.url + "/dead-letters")
    assert await page.locator("h1").inner_text() == "Dead letters " + str(
        await page.locator("#dead-letters tr[data-message]").count()
    )
    await web.shot(page, "dead-letters")
