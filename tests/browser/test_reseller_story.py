"""The reseller guide, as a person in a browser lives it (issue 10): operations create the
partner, the invitation is accepted, sign-in, a first quote (first-sale wording), an order,
a PDF proof, its acceptance, the binding, the customer's appliance registering over HTTP,
the first-sale credit on the balance, a second quote using it, and an upgrade."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.async_api import expect

from shared.basics.clock import add_months
from testkit.proofs import minimal_pdf
from tests.browser.harness import PASSWORD, Web, sign_in

EMAIL = "sales@acme-it.example"
CUSTOMER = "it@customer.example"
MINUS = "\u2212"  # as the pages write a deduction


async def test_c1_o1_o5_o7_the_whole_sale_through_the_reseller_space(
    web: Web, tmp_path: Path
) -> None:
    # Operations create the partner; the mailer gets the invitation link.
    link = await web.create_partner("r-acme", "ACME IT", EMAIL)
    assert link.startswith(web.url("/set-password/"))
    page = await web.page()
    await page.goto(link)
    await expect(page.locator("h1")).to_have_text("Welcome, ACME IT")
    await web.shot(page, "01-set-password")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("Your password is set")
    await web.shot(page, "02-sign-in")
    await sign_in(page, EMAIL)
    await expect(page.locator("h1")).to_contain_text("Your lines")
    await expect(page.locator("[data-testid=space-warning]")).to_contain_text("Reseller space")

    # The balance before any sale: the first-sale promise.
    await page.click("nav >> text=Balance")
    await expect(page.locator("[data-testid=first-sale-status]")).to_contain_text(
        "the discount will be credited to this balance after payment"
    )

    # First quote: the list price is due, the discount credited after payment (Q4).
    await page.click("nav >> text=Get a quote")
    await web.shot(page, "03-quote-form")
    await page.check("input[value='enterprise:annual']")
    await page.click("button:has-text('Get my quote')")
    quote = page.locator("[data-testid=quote]")
    await expect(quote.locator("[data-testid=first-sale]")).to_contain_text(
        "will be credited to your balance after payment"
    )
    await expect(quote.locator("[data-testid=reseller-note]")).to_contain_text(
        "not one to give to your customer"
    )
    await expect(quote.locator("[data-testid=amount-due]")).to_have_text("€1,999.00")
    await web.shot(page, "04-first-quote")
    await page.emulate_media(media="print")
    await web.shot(page, "05-first-quote-print")
    await expect(page.locator("header.top")).to_be_hidden()
    await page.emulate_media(media="screen")

    # Order from the quote: a new line awaiting its proof (O1).
    await page.click("button:has-text('Order from this quote')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    order_id = page.url.rsplit("/", 1)[-1].split("?")[0]

    # Upload a real PDF with the file picker (O3).
    proof = tmp_path / "transfer.pdf"
    proof.write_bytes(minimal_pdf())
    await page.set_input_files("[data-file]", str(proof))
    await page.click("button:has-text('Upload the proof')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Proof under review")
    await expect(page.locator("[data-testid=proofs]")).to_contain_text("transfer.pdf")
    await expect(page.locator("[data-testid=proofs]")).to_contain_text("awaiting review")
    await web.shot(page, "06-line-proof-uploaded")

    # Operations accept it (O4); the line is paid and asks for its customer.
    await web.system.client.ok(
        "proof.review",
        {"order_id": order_id, "decision": "accept", "reviewer": "alice"},
        as_role="operations",
    )
    await page.reload()
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Paid — bind it")
    await expect(page.locator("[data-testid=proofs]")).to_contain_text("accepted")

    # Bind to the final customer, confirming that it cannot change (O5).
    await page.fill("input[name=customer_email]", CUSTOMER)
    await page.check("input[name=confirm]")
    await web.shot(page, "07-line-bind")
    await page.click("button:has-text('Bind the plan')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Bound")
    await expect(page.locator("[data-testid=customer-email]")).to_have_text(CUSTOMER)

    # The customer's appliance registers with the token the mailer received (L2, L3).
    notification = await web.system.client.wait_event(
        "customer.notification", lambda body: body["customer_email"] == CUSTOMER
    )
    async with httpx.AsyncClient(base_url=web.urls["licensing"]) as appliance:
        registered = await appliance.post(
            "/v1/appliances/register",
            json={
                "email": CUSTOMER,
                "registration_token": notification["registration_token"],
                "appliance_id": "xoa-customer-1",
            },
        )
        assert registered.status_code == 200, registered.text
        secret = registered.json()["appliance_secret"]
        licence = await appliance.get(
            "/v1/appliances/xoa-customer-1/license",
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert licence.json()["status"] == "active"
    assert licence.json()["edition"] == "enterprise"

    # The line shows bound and active; licence management lists the customer.
    await page.reload()
    await expect(page.locator("[data-testid=plan-active]")).to_have_text("active")
    await expect(page.locator("[data-testid=timeline]")).to_contain_text("Bound to the customer")
    await web.shot(page, "08-line-bound-active")
    await page.click("nav >> text=Licences")
    customer = page.locator("[data-testid=customer]")
    await expect(customer).to_contain_text(CUSTOMER)
    await expect(customer).to_contain_text("active")
    await web.shot(page, "09-licences")

    # The balance shows the first-sale credit, valid 12 months (C1, C2, C3).
    await page.click("nav >> text=Balance")
    await expect(page.locator("[data-testid=available]")).to_have_text("€399.80")
    lots = page.locator("[data-testid=lots]")
    await expect(lots).to_contain_text("First-sale credit")
    expiry = add_months(web.clock.now(), 12).strftime("%d %b %Y")
    await expect(lots).to_contain_text(expiry)
    await expect(page.locator("[data-testid=reconciled]")).to_contain_text("reconciled")
    await expect(page.locator("[data-testid=first-sale-status]")).to_contain_text(
        f"Your first sale is paid: its discount was credited to this balance (€399.80, "
        f"usable until {expiry})"
    )
    await web.shot(page, "10-balance")

    # A second quote uses the credit on top of the discount (C4).
    await page.click("nav >> text=Get a quote")
    await page.check("input[value='enterprise:annual']")
    await page.click("button:has-text('Get my quote')")
    quote = page.locator("[data-testid=quote]")
    await expect(quote).to_contain_text("Reseller discount")
    await expect(quote).to_contain_text(MINUS + "€399.80")
    await expect(quote.locator("[data-testid=credit-applied]")).to_have_text(MINUS + "€399.80")
    await expect(quote.locator("[data-testid=amount-due]")).to_have_text("€1,199.40")
    await expect(quote.locator("[data-testid=first-sale]")).to_have_count(0)
    await web.shot(page, "11-second-quote")

    # An upgrade shows its credit note before and after confirming (O7).
    await page.click("nav >> text=Licences")
    await page.click("[data-testid=upgrade]")
    options = await page.locator("select[name=edition] option").all_inner_texts()
    assert options == ["Premium"]  # no downgrade offered
    await page.select_option("select[name=edition]", "premium")
    await page.click("button:has-text('See the price')")
    preview = page.locator("[data-testid=upgrade-preview]")
    await expect(preview.locator("[data-testid=credit-note]")).to_have_text(MINUS + "€1,599.20")
    await expect(preview.locator("[data-testid=upgrade-amount-due]")).to_have_text("€1,600.00")
    await web.shot(page, "12-upgrade-preview")
    await page.click("button:has-text('Confirm the upgrade')")
    result = page.locator("[data-testid=upgrade-result]")
    await expect(result.locator("[data-testid=result-credit-note]")).to_have_text("€1,599.20")
    await expect(result.locator("[data-testid=result-amount-due]")).to_have_text(
        re.compile(r"€1,[0-9]{3}\.[0-9]{2}")
    )
    await web.shot(page, "13-upgrade-ordered")

    # The lines, on a phone.
    phone = await web.page(
        viewport={"width": 390, "height": 844}, storage_state=await page.context.storage_state()
    )
    await phone.goto(web.url("/lines"))
    await expect(phone.locator("[data-testid=lines]")).to_contain_text(order_id)
    await web.shot(phone, "14-lines-phone")
    await page.goto(web.url("/lines"))
    await web.shot(page, "15-lines")
