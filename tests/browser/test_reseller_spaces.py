"""The space switch and the password reset, through the pages (issue 10): the personal
space warns that it is for the reseller's own use without discount, and its lines bind
to the reseller's own email; a forgotten password is replaced through a single-use link."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.harness import PASSWORD, Web, sign_in

EMAIL = "me@solo.example"


async def test_o5_the_personal_space_has_no_discount_and_binds_to_the_reseller(web: Web) -> None:
    page = await web.partner_signed_in("r-solo", "Solo EURL", EMAIL)
    await page.click("[data-testid=space-personal]")
    warning = page.locator("[data-testid=space-warning]")
    await expect(warning).to_contain_text("Personal space: for your own use, no discount.")
    await expect(page.locator("[data-testid=space-personal]")).to_have_attribute(
        "aria-pressed", "true"
    )
    await page.click("nav >> text=Get a quote")
    await page.check("input[value='starter:annual']")
    await page.click("button:has-text('Get my quote')")
    quote = page.locator("[data-testid=quote]")
    await expect(quote).to_contain_text("personal space")
    await expect(quote.locator("[data-testid=amount-due]")).to_have_text("€499.00")
    await expect(quote).not_to_contain_text("Reseller discount")
    await web.shot(page, "30-personal-space-quote")
    await page.click("button:has-text('Order from this quote')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    await expect(page.locator("main")).to_contain_text(
        f"Personal-space lines bind to your own email ({EMAIL}) once paid."
    )
    await expect(page.locator("[data-testid=bind-form]")).to_have_count(0)
    # The reseller space does not list the personal line.
    await page.click("[data-testid=space-reseller]")
    await page.goto(web.url("/lines"))
    await expect(page.locator("main")).to_contain_text("No lines yet")


async def test_a_forgotten_password_is_replaced_through_a_single_use_link(web: Web) -> None:
    page = await web.partner_signed_in("r-forgot", "Forgetful Ltd", "who@forgot.example")
    await page.click("button:has-text('Sign out')")
    await expect(page.locator(".notice")).to_have_text("You are signed out.")
    await page.click("text=Forgot your password?")
    await page.fill("input[name=email]", "who@forgot.example")
    await page.click("button:has-text('Send me a link')")
    await expect(page.locator(".notice")).to_contain_text("a link to choose a new password")
    await web.shot(page, "31-forgot-password")
    reset = await web.system.client.wait_event(
        "partner.notification",
        lambda body: body["reseller_id"] == "r-forgot" and body["kind"] == "password_reset",
    )
    await page.goto(reset["link"])
    await expect(page.locator("h1")).to_have_text("A new password for Forgetful Ltd")
    await page.fill("input[name=password]", "short")
    await page.fill("input[name=confirm]", "short")
    await page.evaluate("document.querySelector('form.stack').noValidate = true")
    await page.click("button[type=submit]")
    await expect(page.locator("[data-testid=password-error]")).to_contain_text(
        "at least 12 characters"
    )
    new = "a brand new passphrase"
    await page.fill("input[name=password]", new)
    await page.fill("input[name=confirm]", new)
    await page.click("button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("Your password is set")
    await sign_in(page, "who@forgot.example", PASSWORD)  # the old one no longer works
    await expect(page.locator("[data-testid=sign-in-error]")).to_have_text(
        "wrong email or password"
    )
    await sign_in(page, "who@forgot.example", new)
    await expect(page.locator("h1")).to_contain_text("Your lines")
    used = await page.goto(reset["link"])  # the link worked once
    assert used is not None and used.status == 410
