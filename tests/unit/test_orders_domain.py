"""O1-O9: the order line aggregate, proofs by content, periods (services/orders/domain.py)."""

from __future__ import annotations

import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.orders.domain import MAX_PROOFS_PER_LINE, OrderLine, order_id_for, period_end
from services.orders.proofs import FILENAME_MAX_CHARS, MAX_PIXELS, check_proof, proof_filename
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.base import Billing
from shared.contracts.orders import (
    OrderCancelled,
    OrderPlaced,
    PlanBound,
    ProofAccepted,
    ProofRejected,
    ProofSubmitted,
)
from tests.support.proofs import JPEG, PDF, PNG, POLYGLOTS, jpeg, pdf, png
from tests.unit.builders import (
    OTHER_RESELLER,
    PURE,
    RESELLER,
    RESELLER_EMAIL,
    T0,
    UNPAID_TTL,
    eur,
    make_line,
    make_proof,
    make_quote,
    paid_line,
    reservation_for,
)

MIB = 1024 * 1024
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(hours=3)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- O1: placing ------------------------------------------------------------------------


def test_o1_placed_line_awaits_proof_with_its_price_fixed() -> None:
    line = make_line(order_id="ol_1", edition="enterprise", billing="annual")
    assert line.id == "ol_1"
    assert line.status == "awaiting_proof"
    assert line.reseller_id == RESELLER
    assert line.space == "reseller"
    assert line.edition == "enterprise"
    assert line.billing == "annual"
    assert line.quote_number == "Q-2026-000001"
    assert line.placed_at == T0
    assert line.price.list_price == eur(199900)
    assert line.price.discount == eur(39980)
    assert line.price.credit_applied == eur(0)
    assert line.price.amount_due == eur(159920)
    assert line.customer_email is None


def test_o1_price_is_the_quotes_price() -> None:
    quote = make_quote(edition="starter", billing="monthly", credit_available=1000)
    line = OrderLine.place(
        order_id="ol_7",
        quote=quote.view(),
        reservation=reservation_for(quote.view(), "ol_7"),
        use_credit=True,
        reseller_email=None,
        now=T1,
        unpaid_ttl=UNPAID_TTL,
    )
    assert line.price.amount_due == eur(2920)
    assert line.price.credit_applied == eur(1000)
    result = line.placed_result()
    assert result.order_id == "ol_7"
    assert result.status == "awaiting_proof"
    assert result.amount_due == eur(2920)
    assert result.credit_reserved == eur(1000)
    assert result.quote_number == "Q-2026-000001"


def test_o1_order_placed_is_recorded_with_correlation_id_the_order_id() -> None:
    line = make_line(order_id="ol_abc")
    events = line.recorded()
    assert len(events) == 1
    placed = events[0]
    assert isinstance(placed, OrderPlaced)
    assert placed.order_id == "ol_abc"
    assert placed.correlation_id == "ol_abc"
    assert placed.reseller_id == RESELLER
    assert placed.price == line.price
    assert placed.occurred_at == T0
    assert line.outbox[0].routing_key == "order.placed"
    assert line.outbox[0].correlation_id == "ol_abc"


def test_o1_placing_is_logged_in_history() -> None:
    line = make_line()
    assert [(h.action, h.status, h.at) for h in line.history] == [("placed", "awaiting_proof", T0)]


def test_o5_personal_space_line_needs_the_reseller_email() -> None:
    with pytest.raises(Refused) as refused:
        make_line(space="personal", reseller_email=None)
    assert refused.value.code == ErrorCode.RESELLER_EMAIL_REQUIRED


def test_o1_order_id_for_is_deterministic_per_reseller_and_message() -> None:
    first = order_id_for("r-1", "m-1")
    assert first == order_id_for("r-1", "m-1")
    assert re.fullmatch(r"ol_[0-9a-f]{24}", first)
    assert order_id_for("r-1", "m-2") != first
    assert order_id_for("r-2", "m-1") != first


# --- O3: proofs, by content -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [(PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg")],
)
def test_o3_proof_type_is_checked_by_content(content: bytes, expected: str) -> None:
    assert check_proof(content, max_bytes=10 * MIB) == expected


def test_o3_pdf_name_with_png_bytes_is_a_png() -> None:
    proof = make_proof(PNG, filename="virement.pdf", content_type=check_proof(PNG, max_bytes=MIB))
    assert proof.content_type == "image/png"
    assert proof.filename == "virement.pdf"


@pytest.mark.parametrize(
    "content",
    [b"just some text, not a proof", b"PDF-1.7 missing percent", b"<html>%PDF-</html>", b"GIF89a"],
)
def test_o3_other_content_is_refused(content: bytes) -> None:
    with pytest.raises(Refused) as refused:
        check_proof(content, max_bytes=10 * MIB)
    assert refused.value.code == ErrorCode.UNSUPPORTED_PROOF_TYPE


def test_o3_empty_proof_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        check_proof(b"", max_bytes=10 * MIB)
    assert refused.value.code == ErrorCode.EMPTY_PROOF


def test_o3_proof_over_the_limit_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        check_proof(PDF, max_bytes=len(PDF) - 1)
    assert refused.value.code == ErrorCode.PROOF_TOO_LARGE


def test_o3_proof_at_exactly_the_limit_is_accepted() -> None:
    assert check_proof(PDF, max_bytes=len(PDF)) == "application/pdf"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"%PDF-1.4\n% wire transfer proof\n", "no %%EOF marker"),
        (b"%PDF-1.4\nnot a document at all\n%%EOF\n", "does not parse"),
        (pdf().replace(b"/Count 1", b"/Count 0").replace(b"/Kids [3 0 R]", b"/Kids []"), "no page"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "truncated"),
        (PNG[:-12], "ends before its IEND"),
        (PNG.replace(b"IDAT", b"IDAt"), "does not decode"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
        (JPEG[:-2], "JPEG"),
    ],
    ids=[
        "pdf-header",
        "pdf-garbage",
        "pdf-no-page",
        "png-header",
        "png-cut",
        "png-bad",
        "jpeg-header",
        "jpeg-cut",
    ],
)
def test_o3_a_proof_must_parse_or_decode_beyond_its_first_bytes(
    content: bytes, problem: str
) -> None:
    with pytest.raises(Refused) as refused:
        check_proof(content, max_bytes=10 * MIB)
    assert refused.value.code == ErrorCode.INVALID_PROOF
    assert problem in refused.value.message


@pytest.mark.parametrize("kind", sorted(POLYGLOTS))
def test_o3_polyglots_are_refused(kind: str) -> None:
    """A file that is a proof to one reader and an archive or a program to another."""
    with pytest.raises(Refused) as refused:
        check_proof(POLYGLOTS[kind], max_bytes=10 * MIB)
    assert refused.value.code == ErrorCode.INVALID_PROOF
    assert "ZIP archive" in refused.value.message or "follow" in refused.value.message


def test_o3_whitespace_after_the_final_eof_is_still_one_pdf() -> None:
    assert check_proof(pdf() + b"\r\n \x00", max_bytes=MIB) == "application/pdf"


def test_o3_zip_signature_bytes_alone_are_not_an_archive() -> None:
    """Compressed data may hold ``PK\\x05\\x06`` by chance: only a record that leads to a
    central directory is an archive."""
    data = b"PK\x05\x06" + bytes(range(1, 19))  # a record pointing at nothing
    chunk = struct.pack(">I4s", len(data), b"zzZz") + data
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]))  # a valid ancillary chunk
    stray = PNG[:-12] + chunk + PNG[-12:]
    assert check_proof(stray, max_bytes=MIB) == "image/png"


def test_o3_an_image_with_too_many_pixels_is_refused_before_it_is_decoded() -> None:
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(Refused) as refused:
        check_proof(png((side, side)), max_bytes=10 * MIB)
    assert refused.value.code == ErrorCode.INVALID_PROOF
    assert "pixels" in refused.value.message


def test_o3_larger_real_images_are_accepted() -> None:
    assert check_proof(jpeg((640, 480)), max_bytes=MIB) == "image/jpeg"
    assert check_proof(png((640, 480)), max_bytes=MIB) == "image/png"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("virement.pdf", "virement.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\jo\\scan.png", "scan.png"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override dropped
        ("a\x00b\x1bc\u200bd.pdf", "abcd.pdf"),  # control and zero-width characters
        ('<img src=x onerror="alert(1)">.png', "_img src=x onerror=_alert(1)__.png"),
        ("  ..hidden  .pdf.. ", "hidden .pdf"),
        ("reçu\tnuméro\u00a07.pdf", "reçu numéro 7.pdf"),
        ("", "proof"),
        (None, "proof"),
        ("\u202e\u202e", "proof"),
        ("..", "proof"),
    ],
)
def test_o3_uploaded_file_names_are_sanitised(sent: str | None, kept: str) -> None:
    assert proof_filename(sent) == kept


def test_o3_a_long_file_name_is_cut_keeping_its_extension() -> None:
    name = proof_filename("x" * 500 + ".pdf")
    assert len(name) == FILENAME_MAX_CHARS
    assert name.endswith("x.pdf")
    assert len(proof_filename("y" * 500)) == FILENAME_MAX_CHARS


def test_o3_submitting_a_proof_moves_the_line_to_proof_submitted() -> None:
    line = make_line(order_id="ol_1")
    proof = make_proof(PDF, proof_id="pr_1", uploaded_at=T1)
    line.submit_proof(proof, T1)
    assert line.status == "proof_submitted"
    assert line.proofs == [proof]
    submitted = line.recorded()[-1]
    assert isinstance(submitted, ProofSubmitted)
    assert submitted.proof_id == "pr_1"
    assert submitted.sha256 == proof.sha256
    assert submitted.size == len(PDF)
    assert submitted.content_type == "application/pdf"
    assert submitted.correlation_id == "ol_1"
    assert submitted.occurred_at == T1


def test_o3_every_upload_is_kept_in_history() -> None:
    line = make_line()
    first = make_proof(PDF, proof_id="pr_1", uploaded_at=T1)
    second = make_proof(
        PNG, proof_id="pr_2", filename="scan.png", content_type="image/png", uploaded_at=T2
    )
    line.submit_proof(first, T1)
    line.submit_proof(second, T2)
    assert [p.proof_id for p in line.proofs] == ["pr_1", "pr_2"]
    assert [p.proof_id for p in line.view().proofs] == ["pr_1", "pr_2"]
    assert [h.action for h in line.history] == ["placed", "proof_submitted", "proof_submitted"]
    assert line.status == "proof_submitted"


def test_o3_a_line_keeps_a_bounded_number_of_proofs() -> None:
    line = make_line()
    for n in range(MAX_PROOFS_PER_LINE):
        line.submit_proof(make_proof(proof_id=f"pr_{n}"), T1)
    with pytest.raises(Refused) as refused:
        line.submit_proof(make_proof(proof_id="pr_one_too_many"), T2)
    assert refused.value.code == ErrorCode.TOO_MANY_PROOFS
    assert len(line.proofs) == MAX_PROOFS_PER_LINE


def test_o3_proof_after_payment_is_refused() -> None:
    line = paid_line()
    with pytest.raises(Refused) as refused:
        line.submit_proof(make_proof(proof_id="pr_9"), T3)
    assert refused.value.code == ErrorCode.ORDER_NOT_AWAITING_PROOF
    assert len(line.proofs) == 1


def test_o3_proof_on_a_cancelled_line_is_refused() -> None:
    line = make_line()
    line.cancel(reseller_id=RESELLER, now=T1)
    with pytest.raises(Refused) as refused:
        line.submit_proof(make_proof(), T2)
    assert refused.value.code == ErrorCode.ORDER_NOT_AWAITING_PROOF


def test_o3_view_shows_the_proofs_sha256() -> None:
    line = make_line()
    proof = make_proof(JPEG, filename="t.jpg", content_type="image/jpeg")
    line.submit_proof(proof, T1)
    view = line.view().proofs[0]
    assert view.sha256 == proof.sha256
    assert view.size == len(JPEG)
    assert view.content_type == "image/jpeg"


# --- O4: review -------------------------------------------------------------------------


def test_o4_accepting_the_proof_makes_the_line_paid() -> None:
    line = make_line(order_id="ol_1")
    line.submit_proof(make_proof(), T1)
    line.accept_proof(reviewer="ops-1", now=T2)
    assert line.status == "paid"
    accepted = line.recorded()[-1]
    assert isinstance(accepted, ProofAccepted)
    assert accepted.reviewer == "ops-1"
    assert accepted.price == line.price
    assert accepted.correlation_id == "ol_1"
    assert line.history[-1].action == "proof_accepted"
    assert line.history[-1].by == "ops-1"
    assert line.customer_email is None


def test_o4_reject_requires_a_reason() -> None:
    line = make_line()
    line.submit_proof(make_proof(), T1)
    for reason in (None, "", "   "):
        with pytest.raises(Refused) as refused:
            line.reject_proof(reviewer="ops-1", reason=reason, now=T2, unpaid_ttl=UNPAID_TTL)
        assert refused.value.code == ErrorCode.REJECTION_REASON_REQUIRED
    assert line.status == "proof_submitted"


def test_o4_rejection_returns_to_awaiting_proof_with_reason_visible() -> None:
    line = make_line(order_id="ol_1")
    line.submit_proof(make_proof(), T1)
    line.reject_proof(
        reviewer="ops-1", reason="  amount does not match  ", now=T2, unpaid_ttl=UNPAID_TTL
    )
    assert line.status == "awaiting_proof"
    assert line.rejection_reason == "amount does not match"
    assert line.view().rejection_reason == "amount does not match"
    rejected = line.recorded()[-1]
    assert isinstance(rejected, ProofRejected)
    assert rejected.reason == "amount does not match"
    assert rejected.correlation_id == "ol_1"
    assert line.history[-1].reason == "amount does not match"


def test_o4_new_proof_after_rejection_clears_the_reason() -> None:
    line = make_line()
    line.submit_proof(make_proof(proof_id="pr_1"), T1)
    line.reject_proof(reviewer="ops-1", reason="blurry", now=T2, unpaid_ttl=UNPAID_TTL)
    line.submit_proof(make_proof(proof_id="pr_2"), T3)
    assert line.status == "proof_submitted"
    assert line.rejection_reason is None
    assert [p.proof_id for p in line.proofs] == ["pr_1", "pr_2"]


def test_o4_review_without_a_proof_is_refused() -> None:
    line = make_line()
    with pytest.raises(Refused) as accept:
        line.accept_proof(reviewer="ops-1", now=T1)
    assert accept.value.code == ErrorCode.NO_PROOF_SUBMITTED
    with pytest.raises(Refused) as reject:
        line.reject_proof(reviewer="ops-1", reason="nothing", now=T1, unpaid_ttl=UNPAID_TTL)
    assert reject.value.code == ErrorCode.NO_PROOF_SUBMITTED
    assert line.status == "awaiting_proof"


def test_o4_review_of_a_paid_line_is_refused() -> None:
    line = paid_line()
    with pytest.raises(Refused) as refused:
        line.accept_proof(reviewer="ops-2", now=T3)
    assert refused.value.code == ErrorCode.ORDER_NOT_AWAITING_PROOF
    assert line.status == "paid"


# --- O5 / O6: binding -------------------------------------------------------------------


def test_o5_paid_line_binds_to_the_customer() -> None:
    line = paid_line(order_id="ol_1", billing="monthly")
    at = utc(2026, 3, 12, 8, 0)
    line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=at)
    assert line.status == "bound"
    assert line.customer_email == "jane@customer.example.com"
    assert line.period_start == at
    assert line.period_end == utc(2026, 4, 12, 8, 0)
    bound = line.recorded()[-1]
    assert isinstance(bound, PlanBound)
    assert bound.customer_email == "jane@customer.example.com"
    assert bound.period_start == at
    assert bound.period_end == utc(2026, 4, 12, 8, 0)
    assert bound.correlation_id == "ol_1"
    assert bound.edition == "enterprise"


def test_o6_annual_plan_lasts_one_year_from_binding() -> None:
    line = paid_line(billing="annual")
    at = utc(2026, 3, 12, 8, 0)
    line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=at)
    assert line.period_end == utc(2027, 3, 12, 8, 0)


def test_o5_binding_cannot_change() -> None:
    line = paid_line()
    line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=T3)
    with pytest.raises(Refused) as refused:
        line.bind(reseller_id=RESELLER, customer_email="john@customer.example.com", now=T3)
    assert refused.value.code == ErrorCode.ALREADY_BOUND
    assert line.customer_email == "jane@customer.example.com"
    assert line.period_start == T3


@pytest.mark.parametrize("status_step", ["awaiting_proof", "proof_submitted"])
def test_o5_bind_only_when_paid(status_step: str) -> None:
    line = make_line()
    if status_step == "proof_submitted":
        line.submit_proof(make_proof(), T1)
    with pytest.raises(Refused) as refused:
        line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=T2)
    assert refused.value.code == ErrorCode.ORDER_NOT_PAID
    assert line.customer_email is None


def test_o5_bind_a_cancelled_line_is_refused() -> None:
    line = make_line()
    line.cancel(reseller_id=RESELLER, now=T1)
    with pytest.raises(Refused) as refused:
        line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=T2)
    assert refused.value.code == ErrorCode.ORDER_NOT_PAID


def test_o5_another_reseller_cannot_bind() -> None:
    line = paid_line()
    with pytest.raises(Refused) as refused:
        line.bind(reseller_id=OTHER_RESELLER, customer_email="jane@customer.example.com", now=T3)
    assert refused.value.code == ErrorCode.NOT_YOUR_ORDER
    assert line.status == "paid"


def test_o5_personal_space_line_binds_to_reseller_email_on_accept() -> None:
    line = make_line(order_id="ol_p", space="personal", reseller_email=RESELLER_EMAIL)
    assert line.price.discount == eur(0)
    line.submit_proof(make_proof(), T1)
    line.accept_proof(reviewer="ops-1", now=T2)
    assert line.status == "bound"
    assert line.customer_email == RESELLER_EMAIL
    assert line.period_start == T2
    assert line.period_end == period_end(T2, "monthly")
    kinds = [type(e) for e in line.recorded()]
    assert kinds == [OrderPlaced, ProofSubmitted, ProofAccepted, PlanBound]
    bound = line.recorded()[-1]
    assert isinstance(bound, PlanBound)
    assert bound.customer_email == RESELLER_EMAIL
    assert bound.space == "personal"
    assert bound.correlation_id == "ol_p"


def test_o5_personal_space_line_cannot_be_bound_by_hand() -> None:
    line = paid_line(space="personal")
    with pytest.raises(Refused) as refused:
        line.bind(reseller_id=RESELLER, customer_email="jane@customer.example.com", now=T3)
    assert refused.value.code == ErrorCode.ALREADY_BOUND
    assert line.customer_email == RESELLER_EMAIL


# --- O6: period_end ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "billing", "end"),
    [
        (utc(2026, 1, 31, 10, 0), "monthly", utc(2026, 2, 28, 10, 0)),
        (utc(2028, 1, 31, 10, 0), "monthly", utc(2028, 2, 29, 10, 0)),
        (utc(2026, 3, 31, 0, 0), "monthly", utc(2026, 4, 30, 0, 0)),
        (utc(2026, 12, 15, 23, 59), "monthly", utc(2027, 1, 15, 23, 59)),
        (utc(2026, 12, 31, 12, 0), "monthly", utc(2027, 1, 31, 12, 0)),
        (utc(2026, 1, 1), "monthly", utc(2026, 2, 1)),
        (utc(2028, 2, 29, 8, 0), "annual", utc(2029, 2, 28, 8, 0)),
        (utc(2028, 2, 29, 8, 0), "monthly", utc(2028, 3, 29, 8, 0)),
        (utc(2026, 3, 10, 9, 30), "annual", utc(2027, 3, 10, 9, 30)),
        (utc(2026, 12, 31), "annual", utc(2027, 12, 31)),
    ],
)
def test_o6_period_end_is_one_calendar_month_or_year_clamped(
    start: datetime, billing: Billing, end: datetime
) -> None:
    assert period_end(start, billing) == end


def test_o6_period_end_keeps_milliseconds_and_utc() -> None:
    start = datetime(2026, 5, 31, 13, 14, 15, 123_000, tzinfo=UTC)
    end = period_end(start, "monthly")
    assert end == datetime(2026, 6, 30, 13, 14, 15, 123_000, tzinfo=UTC)
    assert end.tzinfo is UTC


AWARE_TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2199, 12, 31),
    timezones=st.just(UTC),
)


@PURE
@given(start=AWARE_TIMES)
def test_o6_monthly_period_lasts_28_to_31_days(start: datetime) -> None:
    end = period_end(start, "monthly")
    assert end > start
    assert timedelta(days=28) <= end - start <= timedelta(days=31)
    assert end.time() == start.time()
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1
    assert end.day == start.day or (end.day < start.day and (end + timedelta(days=1)).day == 1)


@PURE
@given(start=AWARE_TIMES)
def test_o6_annual_period_lasts_365_or_366_days(start: datetime) -> None:
    end = period_end(start, "annual")
    assert end > start
    assert timedelta(days=365) <= end - start <= timedelta(days=366)
    assert (end.year, end.month) == (start.year + 1, start.month)
    assert end.time() == start.time()


# --- O8: cancellation -------------------------------------------------------------------


def test_o8_owner_cancels_an_unpaid_line() -> None:
    line = make_line(order_id="ol_1")
    line.cancel(reseller_id=RESELLER, now=T1)
    assert line.status == "cancelled"
    cancelled = line.recorded()[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.order_id == "ol_1"
    assert cancelled.correlation_id == "ol_1"
    assert cancelled.occurred_at == T1
    assert line.history[-1].action == "cancelled"
    assert line.history[-1].by == RESELLER


def test_o8_a_line_with_a_submitted_proof_can_still_be_cancelled() -> None:
    line = make_line()
    line.submit_proof(make_proof(), T1)
    line.cancel(reseller_id=RESELLER, now=T2)
    assert line.status == "cancelled"


def test_o8_paid_line_is_not_cancellable() -> None:
    line = paid_line()
    with pytest.raises(Refused) as refused:
        line.cancel(reseller_id=RESELLER, now=T3)
    assert refused.value.code == ErrorCode.ORDER_NOT_CANCELLABLE
    assert line.status == "paid"


def test_o8_cancelled_line_is_not_cancellable_again() -> None:
    line = make_line()
    line.cancel(reseller_id=RESELLER, now=T1)
    with pytest.raises(Refused) as refused:
        line.cancel(reseller_id=RESELLER, now=T2)
    assert refused.value.code == ErrorCode.ORDER_NOT_CANCELLABLE


def test_o8_another_reseller_cannot_cancel() -> None:
    line = make_line()
    with pytest.raises(Refused) as refused:
        line.cancel(reseller_id=OTHER_RESELLER, now=T1)
    assert refused.value.code == ErrorCode.NOT_YOUR_ORDER
    assert line.status == "awaiting_proof"


# --- O9: ownership ----------------------------------------------------------------------


def test_o9_check_owner_refuses_another_reseller() -> None:
    line = make_line()
    line.check_owner(RESELLER)
    with pytest.raises(Refused) as refused:
        line.check_owner(OTHER_RESELLER)
    assert refused.value.code == ErrorCode.NOT_YOUR_ORDER


def test_o9_view_shows_status_price_and_history() -> None:
    line = paid_line(order_id="ol_1")
    view = line.view()
    assert view.order_id == "ol_1"
    assert view.reseller_id == RESELLER
    assert view.status == "paid"
    assert view.price.amount_due == eur(15920)
    assert [(h.action, h.status) for h in view.history] == [
        ("placed", "awaiting_proof"),
        ("proof_submitted", "proof_submitted"),
        ("proof_accepted", "paid"),
    ]
    assert view.placed_at == T0


def test_o7_an_upgrade_whose_line_was_never_stored_stops_blocking_after_a_while() -> None:
    line = paid_line()
    line.bind(reseller_id=RESELLER, customer_email="c@x.example", now=T1)
    line.start_upgrade(
        reseller_id=RESELLER, upgrade_order_id="ol_up1", now=T1, current_rank=2, target_rank=3
    )
    with pytest.raises(Refused) as busy:
        line.start_upgrade(
            reseller_id=RESELLER,
            upgrade_order_id="ol_up2",
            now=T1 + timedelta(minutes=5),
            pending_line_exists=False,
            current_rank=2,
            target_rank=3,
        )
    assert busy.value.code == ErrorCode.UPGRADE_IN_PROGRESS
    with pytest.raises(Refused) as still_busy:  # the first upgrade line exists: never abandoned
        line.start_upgrade(
            reseller_id=RESELLER,
            upgrade_order_id="ol_up2",
            now=T1 + timedelta(days=1),
            current_rank=2,
            target_rank=3,
        )
    assert still_busy.value.code == ErrorCode.UPGRADE_IN_PROGRESS
    line.start_upgrade(
        reseller_id=RESELLER,
        upgrade_order_id="ol_up2",
        now=T1 + timedelta(minutes=11),
        pending_line_exists=False,
        current_rank=2,
        target_rank=3,
    )
    assert line.upgraded_by == "ol_up2"
