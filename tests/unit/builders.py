"""Small builders shared by the unit tests: quotes, order lines and proofs, all in memory."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import settings

from services.orders.domain import OrderLine, Proof
from services.quotes.domain import Quote, price
from shared.basics.catalogue import Catalogue, load_catalogue
from shared.basics.money import Money
from shared.contracts.base import Billing, Space
from shared.contracts.credits import ReservationResult
from shared.contracts.quotes import QuoteResult

T0 = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
RESELLER = "r-42"
OTHER_RESELLER = "r-99"
RESELLER_EMAIL = "owner@reseller.example.com"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
# Property tests stay pure: no example database on disk, no wall-clock deadline.
PURE = settings(database=None, deadline=None)


def catalogue() -> Catalogue:
    return load_catalogue()


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def make_quote(
    *,
    number: str = "Q-2026-000001",
    reseller_id: str = RESELLER,
    space: Space = "reseller",
    edition: str = "enterprise",
    billing: Billing = "monthly",
    first_sale: bool = False,
    credit_available: int = 0,
    now: datetime = T0,
    validity: timedelta = timedelta(days=30),
) -> Quote:
    pricing = price(
        catalogue(),
        space=space,
        edition=edition,
        billing=billing,
        first_sale=first_sale,
        credit_available=eur(credit_available),
    )
    return Quote.issue(
        number=number,
        reseller_id=reseller_id,
        space=space,
        edition=edition,
        billing=billing,
        pricing=pricing,
        now=now,
        validity=validity,
        request_message_id="msg-quote-1",
    )


def make_line(
    *,
    order_id: str = "ol_1",
    space: Space = "reseller",
    edition: str = "enterprise",
    billing: Billing = "monthly",
    reseller_email: str | None = None,
    now: datetime = T0,
) -> OrderLine:
    quote = make_quote(space=space, edition=edition, billing=billing, now=now)
    return OrderLine.place(
        order_id=order_id,
        quote=quote.view(),
        reservation=reservation_for(quote.view(), order_id),
        use_credit=True,
        reseller_email=reseller_email,
        now=now,
        unpaid_ttl=UNPAID_TTL,
    )


UNPAID_TTL = timedelta(days=14)


def reservation_for(quote: QuoteResult, order_id: str = "ol_1") -> ReservationResult:
    """What credits answers when nothing raced the quote: its first-sale status and credit."""
    return ReservationResult(
        order_id=order_id, first_sale=quote.first_sale, reserved=quote.credit_applied
    )


def make_proof(
    content: bytes = PDF,
    *,
    proof_id: str = "pr_1",
    filename: str = "transfer.pdf",
    content_type: str = "application/pdf",
    uploaded_at: datetime = T0,
) -> Proof:
    return Proof(
        proof_id=proof_id,
        file_id=f"file-{proof_id}",
        filename=filename,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        uploaded_at=uploaded_at,
    )


def paid_line(
    *, order_id: str = "ol_1", space: Space = "reseller", billing: Billing = "monthly"
) -> OrderLine:
    line = make_line(
        order_id=order_id,
        space=space,
        billing=billing,
        reseller_email=RESELLER_EMAIL if space == "personal" else None,
    )
    line.submit_proof(make_proof(), T0 + timedelta(hours=1))
    line.accept_proof(reviewer="ops-1", now=T0 + timedelta(hours=2))
    return line
