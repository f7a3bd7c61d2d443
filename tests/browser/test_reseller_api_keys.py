"""The API keys page (issue 10; issue 8's keys): a reseller creates a key for its scripts,
sees it once, uses it against the orders HTTP API as itself, and revokes it there."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import expect

from testkit.proofs import minimal_pdf
from tests.browser.harness import Web


async def upload_with(web: Web, key: str, order_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=web.urls["orders"], timeout=10) as http:
        return await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("proof.pdf", minimal_pdf("Key proof"), "application/pdf")},
        )


async def test_o3_a_key_created_on_the_page_is_shown_once_works_and_is_revoked(web: Web) -> None:
    page = await web.partner_signed_in("r-keys", "Scripted SARL", "ops@scripted.example")
    await page.click("nav >> text=Get a quote")
    await page.check("input[value='starter:annual']")
    await page.click("button:has-text('Get my quote')")
    await page.click("button:has-text('Order from this quote')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    order_id = page.url.rsplit("/", 1)[-1].split("?")[0]

    await page.click("nav >> text=API keys")
    await expect(page.locator("main")).to_contain_text("No key yet.")
    await page.click("button:has-text('Create a key')")  # no label: the browser asks for one
    await expect(page.locator("[data-testid=new-key]")).to_have_count(0)
    await page.fill("input[name=label]", "billing script")
    await page.click("button:has-text('Create a key')")
    shown = page.locator("[data-testid=key-value]")
    await expect(shown).to_have_text(re.compile(r"^xo_\S+$"))
    key = (await shown.text_content() or "").strip()
    await expect(page.locator("[data-testid=new-key]")).to_contain_text("shown this once")
    await web.shot(page, "40-api-key-created")

    # The key acts as its reseller: the proof lands on the line (no X-Reseller-Id needed).
    uploaded = await upload_with(web, key, order_id)
    assert uploaded.status_code == 201, uploaded.text
    await page.goto(web.url(f"/lines/{order_id}"))
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Proof under review")

    # Listed without its secret; shown once only.
    await page.click("nav >> text=API keys")
    rows = page.locator("[data-testid=keys] tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("billing script")
    await expect(rows.first).to_contain_text("active")
    assert key not in await page.content()

    await rows.first.locator("button:has-text('Revoke')").click()
    await expect(page.locator("[role=status]")).to_contain_text(
        "Key “billing script” is revoked: it stops working at once."
    )
    await expect(rows.first).to_contain_text("revoked")
    await expect(rows.first.locator("button:has-text('Revoke')")).to_have_count(0)
    await web.shot(page, "41-api-key-revoked")
    refused = await upload_with(web, key, order_id)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["message"] == "this API key was revoked"
