"""An order line's money (O1, O7, Q4, C4): its price at placement. Pure arithmetic on
``Money``; the ``OrderLine`` asks, and records the answer. The upgrade's credit note
(``OrderPrice.credit_note_at``) and what an upgrade leaves to pay
(``QuoteResult.upgrade_due``) live on the contract models, which the reseller space's
preview computes with too.

Quotes price an edition (services/quotes); orders never price on their own: they fix
the line's price from the redeemed quote and what credits reserved for the order.
"""

from __future__ import annotations

from shared.basics.money import Money
from shared.contracts.credits import ReservationResult
from shared.contracts.orders import OrderPrice
from shared.contracts.quotes import QuoteResult


def fix_price(quote: QuoteResult, reservation: ReservationResult, credit_note: Money) -> OrderPrice:
    """The line's price at placement (O1), from the quote and what credits decided.

    - First sale (Q4): the list price is due; the discount becomes credit after payment.
      A quote priced as a first sale whose claim was lost to another order gets the
      standard discount instead: the reseller never pays more than its quote.
    - Otherwise: discount, then the upgrade's credit note capped at what is left (O7,
      the rest goes to the balance), then reserved balance credit (C4).
    """
    zero = Money.zero(quote.list_price.currency)
    standard = quote.standard_discount()
    if reservation.first_sale:
        return OrderPrice(
            list_price=quote.list_price,
            discount=zero,
            credit_applied=zero,
            amount_due=quote.list_price,
            first_sale=True,
            first_sale_credit=standard,
        )
    after_discount = quote.list_price - standard
    note = credit_note.min(after_discount)
    credit = reservation.reserved.min(after_discount - note)
    return OrderPrice(
        list_price=quote.list_price,
        discount=standard,
        credit_applied=credit,
        amount_due=after_discount - note - credit,
        first_sale_credit=zero,
        credit_note=note,
        credit_note_excess=credit_note - note,
    )
