"""What the pages show, derived from the services' answers. Pure: no I/O, no framework.

Every rule stays in the domain services; this module only sorts, filters, groups and
words their answers (and estimates an upgrade's credit note before it is asked for, with
the formula of O7; the exact figure is the one orders answers on confirmation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.basics.catalogue import FREE, Catalogue
from shared.basics.money import Money
from shared.contracts.credits import BalanceResult, LotView
from shared.contracts.orders import OrderLineView
from shared.contracts.quotes import QuoteResult

PAGE_SIZE = 50
EXPIRING_SOON = timedelta(days=60)
UNPAID = ("awaiting_proof", "proof_submitted")
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}

STATUS_LABELS = {
    "awaiting_proof": "Awaiting proof",
    "proof_submitted": "Proof under review",
    "paid": "Paid — bind it",
    "bound": "Bound",
    "cancelled": "Cancelled",
    "expired": "Expired unpaid",
    "superseded": "Superseded by an upgrade",
}
ACTION_LABELS = {
    "placed": "Order placed",
    "proof_submitted": "Proof uploaded",
    "proof_accepted": "Payment accepted",
    "proof_rejected": "Proof rejected",
    "bound": "Bound to the customer",
    "cancelled": "Cancelled",
    "expired": "Expired unpaid",
    "upgrade_started": "Upgrade started",
    "upgrade_abandoned": "Upgrade abandoned",
    "superseded": "Superseded by an upgrade",
}


def money(value: Money) -> str:
    """``€1,234.56``: integer minor units shown with two decimals (M2, no float)."""
    sign = "-" if value.amount < 0 else ""
    units, cents = divmod(abs(value.amount), 100)
    symbol = CURRENCY_SYMBOLS.get(value.currency, value.currency + " ")
    return f"{sign}{symbol}{units:,}.{cents:02d}"


def size(n: int) -> str:
    """A file size for people: ``10 MiB``, ``200 KiB``, ``512 bytes``."""
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f}".removesuffix(".0") + " MiB"
    if n >= 1024:
        return f"{n / 1024:.1f}".removesuffix(".0") + " KiB"
    return f"{n} bytes"


def day(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%d %b %Y")


def minute(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%d %b %Y %H:%M UTC")


@dataclass(frozen=True)
class LinesPage:
    lines: list[OrderLineView]
    status: str | None
    page: int
    pages: int
    total: int
    counts: dict[str, int]


def lines_page(
    lines: list[OrderLineView], *, space: str, status: str | None, page: int
) -> LinesPage:
    """The space's lines, newest first, filtered by status, ``PAGE_SIZE`` a page."""
    in_space = [line for line in lines if line.space == space]
    counts: dict[str, int] = {}
    for line in in_space:
        counts[line.status] = counts.get(line.status, 0) + 1
    chosen = [line for line in in_space if status is None or line.status == status]
    chosen.sort(key=lambda line: line.placed_at, reverse=True)
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    return LinesPage(
        lines=chosen[start : start + PAGE_SIZE],
        status=status,
        page=page,
        pages=pages,
        total=len(chosen),
        counts=counts,
    )


def paged(lines: list[OrderLineView], *, total: int, status: str | None, page: int) -> LinesPage:
    """A page the orders service already cut (``order.list`` with a limit and an offset)."""
    return LinesPage(
        lines=lines,
        status=status,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
        counts={},
    )


@dataclass(frozen=True)
class LotRow:
    lot: LotView
    expiring_soon: bool
    days_left: int


def lot_rows(balance: BalanceResult, now: datetime) -> list[LotRow]:
    """Lots, earliest expiry first (the order credit is used in, C4), marked when they
    expire within 60 days."""
    return [
        LotRow(
            lot=lot,
            expiring_soon=lot.remaining.amount > 0 and lot.expires_at - now <= EXPIRING_SOON,
            days_left=max(0, (lot.expires_at - now).days),
        )
        for lot in sorted(balance.lots, key=lambda lot: lot.expires_at)
    ]


@dataclass(frozen=True)
class Licence:
    line: OrderLineView
    state: str  # active, ended, superseded
    upgrade_pending: bool


def licences(lines: list[OrderLineView], now: datetime) -> dict[str, list[Licence]]:
    """Bound plans (O5) by customer email, each email's newest first."""
    grouped: dict[str, list[Licence]] = {}
    bound = [line for line in lines if line.customer_email and line.period_end is not None]
    for line in sorted(bound, key=lambda line: line.placed_at, reverse=True):
        assert line.customer_email is not None
        assert line.period_end is not None
        if line.status == "superseded":
            state = "superseded"
        else:
            state = "active" if now < line.period_end else "ended"
        pending = state == "active" and line.upgraded_by is not None
        grouped.setdefault(line.customer_email, []).append(Licence(line, state, pending))
    return dict(sorted(grouped.items()))


def upgrade_targets(catalogue: Catalogue, edition: str) -> list[str]:
    """Editions ranked above ``edition`` (O7: no downgrade is offered)."""
    rank = catalogue.rank(edition)
    return [e.name for e in sorted(catalogue.editions, key=lambda e: e.rank) if e.rank > rank]


def paid_editions(catalogue: Catalogue) -> list[str]:
    return [e.name for e in sorted(catalogue.editions, key=lambda e: e.rank) if e.name != FREE]


def credit_note_estimate(line: OrderLineView, now: datetime) -> Money | None:
    """O7's credit note if the upgrade were confirmed now (``OrderPrice.credit_note_at``, the
    figure orders will record); ``None`` once the plan ended."""
    if line.period_start is None or line.period_end is None or now >= line.period_end:
        return None
    return line.price.credit_note_at(start=line.period_start, end=line.period_end, now=now)


def days_left(line: OrderLineView, now: datetime) -> int:
    return 0 if line.period_end is None else max(0, (line.period_end - now).days)


def upgrade_figures(quote: QuoteResult, estimate: Money | None) -> dict[str, Money]:
    """The preview of an upgrade: the new edition's standard discount (a first sale's
    deferred discount counts too) and what is due after the credit note, before any
    balance credit (``QuoteResult.upgrade_due``, as orders will price it)."""
    note = estimate or Money.zero(quote.list_price.currency)
    return {"discount": quote.standard_discount(), "due": quote.upgrade_due(note)}
