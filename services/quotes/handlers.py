"""Quotes' message handlers: load, decide via the domain, save with its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.quotes.domain import Quote, price, quote_number
from services.quotes.store import QuoteStore
from shared.basics.catalogue import Catalogue
from shared.basics.clock import Clock
from shared.basics.money import Money
from shared.contracts.base import Billing, Space
from shared.contracts.credits import BalanceResult, GetBalance
from shared.contracts.quotes import QuoteResult, RedeemQuote, RequestQuote
from shared.runtime.messaging import Bus, Delivery


@dataclass(frozen=True)
class QuotesDeps:
    store: QuoteStore
    catalogue: Catalogue
    clock: Clock
    validity: timedelta
    bus: Bus


async def _standing(
    deps: QuotesDeps, reseller_id: str, space: Space, message_id: str
) -> tuple[bool, Money]:
    """First-sale status and available credit, from credits (Q4, C4): a preview only;
    the order's placement decides atomically."""
    if space != "reseller":
        return False, Money.zero(deps.catalogue.currency)
    balance = await deps.bus.call(
        GetBalance(reseller_id=reseller_id),
        BalanceResult,
        message_id=f"{message_id}/balance",
        correlation_id=None,
    )
    return balance.first_sale_available, balance.available


async def _issue(
    deps: QuotesDeps,
    *,
    reseller_id: str,
    space: Space,
    edition: str,
    billing: Billing,
    request_message_id: str,
    order_id: str | None = None,
) -> Quote:
    """Issue (and store) a quote, once per request message."""
    existing = await deps.store.by_request(request_message_id)
    if existing is not None:
        return existing
    deps.catalogue.price(edition, billing)  # refuse an unknown edition before asking credits
    first_sale, credit = await _standing(deps, reseller_id, space, request_message_id)
    now = deps.clock.now()
    pricing = price(
        deps.catalogue,
        space=space,
        edition=edition,
        billing=billing,
        first_sale=first_sale,
        credit_available=credit,
    )
    number = quote_number(now.year, await deps.store.next_sequence(now.year))
    quote = Quote.issue(
        number=number,
        reseller_id=reseller_id,
        space=space,
        edition=edition,
        billing=billing,
        pricing=pricing,
        now=now,
        validity=deps.validity,
        request_message_id=request_message_id,
    )
    if order_id is not None:
        quote.redeem(reseller_id=reseller_id, space=space, order_id=order_id, now=now)
    if not await deps.store.quotes.insert(quote):
        raise RuntimeError(f"quote number {number} taken twice")  # transient: redelivered
    return quote


async def request_quote(cmd: RequestQuote, delivery: Delivery, *, deps: QuotesDeps) -> QuoteResult:
    """``quote.request`` (Q1-Q3): price and store a quote, reply with it."""
    quote = await _issue(
        deps,
        reseller_id=cmd.reseller_id,
        space=cmd.space,
        edition=cmd.edition,
        billing=cmd.billing,
        request_message_id=delivery.message_id,
    )
    return quote.view()


async def redeem_quote(cmd: RedeemQuote, delivery: Delivery, *, deps: QuotesDeps) -> QuoteResult:
    """``quote.redeem`` (internal): fix an order line's price from a quote, used once (Q2, O1)."""
    if cmd.quote_number is None:
        assert cmd.edition is not None
        assert cmd.billing is not None
        quote = await _issue(
            deps,
            reseller_id=cmd.reseller_id,
            space=cmd.space,
            edition=cmd.edition,
            billing=cmd.billing,
            request_message_id=delivery.message_id,
            order_id=cmd.order_id,
        )
        return quote.view()
    saved = await deps.store.quotes.mutate(
        cmd.quote_number,
        lambda q: q.redeem(
            reseller_id=cmd.reseller_id,
            space=cmd.space,
            order_id=cmd.order_id,
            now=deps.clock.now(),
        ),
        message_id=delivery.message_id,
    )
    return saved.aggregate.view()
