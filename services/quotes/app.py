"""Quotes' wiring: which messages it consumes and with which dependencies."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from services.quotes import handlers
from services.quotes.domain import Quote, unknown_quote
from services.quotes.store import QuoteStore
from shared.basics.catalogue import load_catalogue
from shared.contracts.quotes import RedeemQuote, RequestQuote
from shared.runtime.messaging import Route
from shared.runtime.service import Runtime, Wiring


def wire(runtime: Runtime) -> Wiring:
    quotes = runtime.store("quotes", Quote, unknown=unknown_quote)
    store = QuoteStore(quotes, runtime.db)
    deps = handlers.QuotesDeps(
        store=store,
        catalogue=load_catalogue(runtime.settings.catalogue_path),
        clock=runtime.clock,
        validity=timedelta(days=runtime.settings.quote_validity_days),
        bus=runtime.bus,
    )

    async def quote_of(cmd: RedeemQuote) -> None:
        if cmd.quote_number is not None:  # else a quote is issued at placement: nothing to read
            await quotes.read_ahead(cmd.quote_number)

    return Wiring(
        routes=[
            Route(RequestQuote, partial(handlers.request_quote, deps=deps)),
            Route(RedeemQuote, partial(handlers.redeem_quote, deps=deps), read_ahead=quote_of),
        ],
        setup=store.create_indexes,
        outboxes=[quotes],
    )
