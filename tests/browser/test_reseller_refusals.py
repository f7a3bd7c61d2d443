"""Refusals through the reseller space's pages: each shows its human message next to what
caused it, and nothing else changes (issue 10)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import Page, expect

from testkit.proofs import minimal_pdf
from tests.browser.harness import Web, sign_in


async def _order(page: Page, web: Web, choice: str = "starter:monthly") -> str:
    await page.goto(web.url("/quote"))
    await page.check(f"input[value='{choice}']")
    await page.click("button:has-text('Get my quote')")
    await page.click("button:has-text('Order from this quote')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    return page.url.rsplit("/", 1)[-1].split("?")[0]


async def test_o3_wrong_type_and_oversize_proofs_are_refused_inline(
    web: Web, tmp_path: Path
) -> None:
    page = await web.partner_signed_in("r-up", "Upload Ltd", "up@upload.example")
    order_id = await _order(page, web)
    error = page.locator("[data-testid=upload-error]")

    # Before the upload: the browser sees the size and the name.
    big = tmp_path / "big.pdf"
    big.write_bytes(minimal_pdf() + b"%" * (300 * 1024))
    await page.set_input_files("[data-file]", str(big))
    await expect(error).to_have_text("This file is 300.6 KiB: the limit is 256 KiB.")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a proof")
    await page.set_input_files("[data-file]", str(notes))
    await expect(error).to_contain_text("must be a PDF, PNG or JPEG file; notes.txt is not")
    await web.shot(page, "20-refused-type-before-upload")

    # After the upload: the orders service checks the content, whatever the name.
    fake = tmp_path / "fake.pdf"
    fake.write_text("this is text, named like a PDF")
    await page.set_input_files("[data-file]", str(fake))
    await expect(error).to_be_hidden()
    await page.click("button:has-text('Upload the proof')")
    await expect(error).to_contain_text("a proof must be a PDF, PNG or JPEG file")
    await web.shot(page, "21-refused-type-after-upload")

    # Without JavaScript the server refuses the oversize file with the same page.
    plain = await web.page(
        java_script_enabled=False, storage_state=await page.context.storage_state()
    )
    await plain.goto(web.url(f"/lines/{order_id}"))
    await plain.set_input_files("[data-file]", str(big))
    await plain.click("button:has-text('Upload the proof')")
    await expect(plain.locator("[data-testid=upload-error]")).to_contain_text(
        "larger than the limit of 256 KiB"
    )
    await page.reload()
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    await expect(page.locator("[data-testid=proofs]")).to_have_count(0)

    # Drag and drop works too, and a real proof is then taken.
    good = minimal_pdf("Dropped proof")
    await page.evaluate(
        """([bytes]) => {
            const type = {type: "application/pdf"};
            const file = new File([new Uint8Array(bytes)], "dropped.pdf", type);
            const data = new DataTransfer();
            data.items.add(file);
            const zone = document.querySelector("[data-drop]");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }""",
        [list(good)],
    )
    await expect(page.locator("[data-chosen]")).to_contain_text("dropped.pdf")
    await page.click("button:has-text('Upload the proof')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Proof under review")
    await expect(page.locator("[data-testid=proofs]")).to_contain_text("dropped.pdf")


async def test_o5_binding_before_payment_or_to_a_bad_email_is_refused(
    web: Web, tmp_path: Path
) -> None:
    page = await web.partner_signed_in("r-bind", "Bind SA", "bind@bind.example")
    order_id = await _order(page, web)
    await page.fill("input[name=customer_email]", "customer@example.com")
    await page.check("input[name=confirm]")
    await page.click("button:has-text('Bind the plan')")
    bind_error = page.locator("[data-testid=bind-form] [data-testid=bind-error]")
    await expect(bind_error).to_contain_text("only a paid line binds")
    await web.shot(page, "22-refused-bind-before-payment")

    proof = tmp_path / "p.pdf"
    proof.write_bytes(minimal_pdf())
    await page.set_input_files("[data-file]", str(proof))
    await page.click("button:has-text('Upload the proof')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Proof under review")
    await web.system.client.ok(
        "proof.review",
        {"order_id": order_id, "decision": "accept", "reviewer": "ops"},
        as_role="operations",
    )
    await page.reload()
    await page.fill("input[name=customer_email]", "customer@localhost")
    await page.check("input[name=confirm]")
    await page.click("button:has-text('Bind the plan')")
    await expect(bind_error).to_contain_text("is not a valid email address")
    await expect(page.locator("input[name=customer_email]")).to_have_value("customer@localhost")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Paid — bind it")
    await web.shot(page, "23-refused-bind-bad-email")


async def test_o9_another_resellers_line_by_url_is_a_404_that_tells_nothing(web: Web) -> None:
    owner = await web.partner_signed_in("r-own", "Owner GmbH", "own@owner.example")
    order_id = await _order(owner, web, "premium:annual")
    other = await web.partner_signed_in("r-nosy", "Nosy BV", "nosy@nosy.example")
    response = await other.goto(web.url(f"/lines/{order_id}"))
    assert response is not None and response.status == 404
    await expect(other.locator("[data-testid=page-error]")).to_have_text(
        f"There is no line {order_id} in your space."
    )
    body = await other.content()
    assert "Owner GmbH" not in body and "3,999" not in body and "premium" not in body.lower()
    unknown = await other.goto(web.url("/lines/ol_000000000000000000000000"))
    assert unknown is not None and unknown.status == 404
    await web.shot(other, "24-refused-other-resellers-line")
    # Acting on it by URL is refused the same way, and changes nothing.
    await other.goto(web.url("/lines"))
    token = await other.locator("header input[name=csrf_token]").get_attribute("value")
    cancel = await other.request.post(
        web.url(f"/lines/{order_id}/cancel"), form={"csrf_token": token or ""}
    )
    assert cancel.status == 404
    await owner.reload()
    await expect(owner.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")


async def test_a_form_without_its_csrf_token_is_refused(web: Web) -> None:
    page = await web.partner_signed_in("r-csrf", "Csrf Inc", "csrf@csrf.example")
    order_id = await _order(page, web)
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "forged"}]
    for form in forms:
        refused = await page.request.post(web.url(f"/lines/{order_id}/cancel"), form=form)
        assert refused.status == 403
        assert "This form has expired" in await refused.text()
    await page.reload()
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
    # The page's own form, with its token, works.
    await page.click("button:has-text('Cancel this line')")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Cancelled")


async def test_an_expired_session_signs_in_again_then_returns_to_the_page(web: Web) -> None:
    page = await web.partner_signed_in("r-late", "Late Ltd", "late@late.example")
    order_id = await _order(page, web)
    web.clock.advance(timedelta(minutes=61))  # idle longer than SESSION_IDLE_MINUTES
    await page.goto(web.url(f"/lines/{order_id}"))
    await expect(page.locator(".notice")).to_have_text(
        "Your session has expired: sign in again to go on."
    )
    assert "/sign-in?next=/lines/" in page.url
    await web.shot(page, "25-session-expired")
    await sign_in(page, "late@late.example")
    assert page.url == web.url(f"/lines/{order_id}")
    await expect(page.locator("[data-testid=line-status]")).to_have_text("Awaiting proof")
