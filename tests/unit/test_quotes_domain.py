"""Q1-Q4 and C4: pricing and the stored quote (services/quotes/domain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.quotes.domain import Pricing, price, quote_number
from shared.basics.catalogue import Catalogue, Edition
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money
from shared.contracts.base import Billing
from shared.contracts.quotes import QuoteIssued
from tests.unit.builders import OTHER_RESELLER, RESELLER, T0, catalogue, eur, make_quote


def reseller_price(
    edition: str,
    billing: Billing,
    *,
    first_sale: bool = False,
    credit: int = 0,
    cat: Catalogue | None = None,
) -> Pricing:
    return price(
        cat or catalogue(),
        space="reseller",
        edition=edition,
        billing=billing,
        first_sale=first_sale,
        credit_available=eur(credit),
    )


# --- M3 / Q1: default prices and the reseller discount -------------------------------


@pytest.mark.parametrize(
    ("edition", "billing", "list_price", "discount"),
    [
        ("starter", "monthly", 4900, 980),
        ("starter", "annual", 49900, 9980),
        ("enterprise", "monthly", 19900, 3980),
        ("enterprise", "annual", 199900, 39980),
        ("premium", "monthly", 39900, 7980),
        ("premium", "annual", 399900, 79980),
    ],
)
def test_m3_reseller_space_gets_twenty_percent_off_default_prices(
    edition: str, billing: Billing, list_price: int, discount: int
) -> None:
    pricing = reseller_price(edition, billing)
    assert pricing.list_price == eur(list_price)
    assert pricing.discount == eur(discount)
    assert pricing.credit_applied == eur(0)
    assert pricing.amount_due == eur(list_price - discount)
    assert pricing.first_sale is False
    assert pricing.first_sale_credit == eur(0)


def test_m3_discount_landing_on_half_a_cent_rounds_up() -> None:
    cat = Catalogue(
        currency="EUR",
        reseller_discount=Decimal("0.10"),
        editions=[Edition(name="starter", rank=1, prices={"monthly": 4905, "annual": 4903})],
    )
    monthly = reseller_price("starter", "monthly", cat=cat)
    assert monthly.discount == eur(491)  # 490.5 -> 491 (half-even would say 490)
    assert monthly.amount_due == eur(4414)
    annual = reseller_price("starter", "annual", cat=cat)
    assert annual.discount == eur(490)  # 490.3 -> 490
    assert annual.amount_due == eur(4413)


def test_m3_default_rate_rounds_fractional_discount_half_up() -> None:
    cat = Catalogue(
        currency="EUR",
        reseller_discount=Decimal("0.20"),
        editions=[Edition(name="starter", rank=1, prices={"monthly": 4903, "annual": 4902})],
    )
    assert reseller_price("starter", "monthly", cat=cat).discount == eur(981)  # 980.6
    assert reseller_price("starter", "annual", cat=cat).discount == eur(980)  # 980.4


def test_q1_personal_space_gets_no_discount() -> None:
    pricing = price(
        catalogue(),
        space="personal",
        edition="enterprise",
        billing="annual",
        first_sale=False,
        credit_available=eur(0),
    )
    assert pricing.list_price == eur(199900)
    assert pricing.discount == eur(0)
    assert pricing.amount_due == eur(199900)


def test_q1_personal_space_first_sale_flag_does_not_apply() -> None:
    pricing = price(
        catalogue(),
        space="personal",
        edition="starter",
        billing="monthly",
        first_sale=True,
        credit_available=eur(0),
    )
    assert pricing.first_sale is False
    assert pricing.first_sale_credit == eur(0)
    assert pricing.discount == eur(0)
    assert pricing.amount_due == eur(4900)


def test_q1_unknown_edition_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        reseller_price("ultimate", "monthly")
    assert refused.value.code == ErrorCode.UNKNOWN_EDITION


# --- Q4: first sale --------------------------------------------------------------------


def test_q4_first_sale_shows_discount_as_credit_and_charges_list_price() -> None:
    pricing = reseller_price("premium", "annual", first_sale=True)
    assert pricing.first_sale is True
    assert pricing.discount == eur(0)
    assert pricing.first_sale_credit == eur(79980)
    assert pricing.amount_due == eur(399900)
    assert pricing.list_price == eur(399900)


def test_q4_later_sale_takes_the_discount_off_and_has_no_first_sale_credit() -> None:
    pricing = reseller_price("premium", "annual", first_sale=False)
    assert pricing.first_sale is False
    assert pricing.first_sale_credit == eur(0)
    assert pricing.amount_due == eur(319920)


# --- C4: credit after the discount, capped --------------------------------------------


def test_c4_credit_is_applied_after_the_discount() -> None:
    pricing = reseller_price("enterprise", "monthly", credit=10000)
    assert pricing.discount == eur(3980)
    assert pricing.credit_applied == eur(10000)
    assert pricing.amount_due == eur(19900 - 3980 - 10000)


def test_c4_credit_is_capped_at_the_amount_due() -> None:
    pricing = reseller_price("enterprise", "monthly", credit=50000)
    assert pricing.discount == eur(3980)
    assert pricing.credit_applied == eur(15920)
    assert pricing.amount_due == eur(0)


def test_c4_credit_exactly_equal_to_amount_due_leaves_nothing_due() -> None:
    pricing = reseller_price("starter", "monthly", credit=3920)
    assert pricing.credit_applied == eur(3920)
    assert pricing.amount_due == eur(0)


def test_c4_no_balance_credit_in_personal_space() -> None:
    pricing = price(
        catalogue(),
        space="personal",
        edition="starter",
        billing="monthly",
        first_sale=False,
        credit_available=eur(1000),
    )
    assert pricing.credit_applied == eur(0)
    assert pricing.amount_due == eur(4900)


# --- Q2: number, validity, redemption ---------------------------------------------------


def test_q2_quote_number_is_human_readable_and_zero_padded() -> None:
    assert quote_number(2026, 42) == "Q-2026-000042"
    assert quote_number(2027, 1) == "Q-2027-000001"
    assert quote_number(2026, 9) < quote_number(2026, 10)


def test_q2_issued_quote_carries_date_validity_and_pricing() -> None:
    quote = make_quote(edition="starter", billing="annual", validity=timedelta(days=30))
    assert quote.valid_until == datetime(2026, 4, 9, 9, 30, tzinfo=UTC)
    assert quote.list_price == eur(49900)
    assert quote.discount == eur(9980)
    assert quote.amount_due == eur(39920)
    assert quote.used_by_order is None


def test_q2_issue_records_quote_issued() -> None:
    quote = make_quote(edition="starter", billing="monthly")
    events = quote.recorded()
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, QuoteIssued)
    assert event.quote_number == "Q-2026-000001"
    assert event.reseller_id == RESELLER
    assert event.amount_due == eur(3920)
    assert event.valid_until == T0 + timedelta(days=30)
    assert event.occurred_at == T0


def test_q2_redeem_by_same_reseller_and_space_marks_it_used() -> None:
    quote = make_quote()
    at = T0 + timedelta(days=1)
    quote.redeem(reseller_id=RESELLER, space="reseller", order_id="ol_1", now=at)
    assert quote.used_by_order == "ol_1"
    assert quote.used_at == at


def test_q2_redeem_by_another_reseller_is_refused() -> None:
    quote = make_quote()
    with pytest.raises(Refused) as refused:
        quote.redeem(reseller_id=OTHER_RESELLER, space="reseller", order_id="ol_1", now=T0)
    assert refused.value.code == ErrorCode.NOT_YOUR_QUOTE
    assert quote.used_by_order is None


def test_q2_redeem_from_another_space_is_refused() -> None:
    quote = make_quote(space="reseller")
    with pytest.raises(Refused) as refused:
        quote.redeem(reseller_id=RESELLER, space="personal", order_id="ol_1", now=T0)
    assert refused.value.code == ErrorCode.SPACE_MISMATCH
    assert quote.used_by_order is None


def test_q2_quote_is_redeemed_once() -> None:
    quote = make_quote()
    quote.redeem(reseller_id=RESELLER, space="reseller", order_id="ol_1", now=T0)
    with pytest.raises(Refused) as refused:
        quote.redeem(reseller_id=RESELLER, space="reseller", order_id="ol_2", now=T0)
    assert refused.value.code == ErrorCode.QUOTE_ALREADY_USED
    assert quote.used_by_order == "ol_1"


def test_q2_redeem_again_for_the_same_order_is_idempotent() -> None:
    quote = make_quote()
    first = T0 + timedelta(minutes=1)
    quote.redeem(reseller_id=RESELLER, space="reseller", order_id="ol_1", now=first)
    quote.redeem(
        reseller_id=RESELLER, space="reseller", order_id="ol_1", now=first + timedelta(days=60)
    )
    assert quote.used_by_order == "ol_1"
    assert quote.used_at == first


def test_q2_quote_is_refused_at_valid_until() -> None:
    quote = make_quote(validity=timedelta(days=30))
    with pytest.raises(Refused) as refused:
        quote.redeem(
            reseller_id=RESELLER, space="reseller", order_id="ol_1", now=T0 + timedelta(days=30)
        )
    assert refused.value.code == ErrorCode.QUOTE_EXPIRED
    assert quote.used_by_order is None


def test_q2_quote_is_refused_after_valid_until() -> None:
    quote = make_quote(validity=timedelta(days=30))
    with pytest.raises(Refused) as refused:
        quote.redeem(
            reseller_id=RESELLER, space="reseller", order_id="ol_1", now=T0 + timedelta(days=31)
        )
    assert refused.value.code == ErrorCode.QUOTE_EXPIRED


def test_q2_quote_is_valid_just_before_valid_until() -> None:
    quote = make_quote(validity=timedelta(days=30))
    just_before = T0 + timedelta(days=30) - timedelta(milliseconds=1)
    quote.redeem(reseller_id=RESELLER, space="reseller", order_id="ol_1", now=just_before)
    assert quote.used_by_order == "ol_1"


# --- Q3 / Q1: the view -------------------------------------------------------------------


def test_q3_reseller_space_quote_is_the_resellers_document() -> None:
    view = make_quote(space="reseller").view()
    assert view.reseller_document is True


def test_q3_personal_space_quote_is_not_flagged_as_reseller_document() -> None:
    view = make_quote(space="personal").view()
    assert view.reseller_document is False
    assert view.discount == eur(0)


def test_q1_quote_view_shows_list_price_discount_credit_and_amount_due() -> None:
    view = make_quote(edition="enterprise", billing="monthly", credit_available=1000).view()
    assert view.list_price == eur(19900)
    assert view.discount == eur(3980)
    assert view.credit_applied == eur(1000)
    assert view.amount_due == eur(14920)
    assert view.first_sale is False
    assert view.valid_until == T0 + timedelta(days=30)


def test_q4_quote_view_of_first_sale() -> None:
    view = make_quote(edition="starter", billing="monthly", first_sale=True).view()
    assert view.first_sale is True
    assert view.first_sale_credit == eur(980)
    assert view.discount == eur(0)
    assert view.amount_due == eur(4900)


def test_m2_quote_amounts_serialise_as_integer_minor_units() -> None:
    body = make_quote(edition="starter", billing="monthly").view().model_dump(mode="json")
    assert body["amount_due"] == {"amount": 3920, "currency": "EUR"}
    assert body["list_price"] == {"amount": 4900, "currency": "EUR"}


def test_c4_money_of_another_currency_cannot_be_applied() -> None:
    with pytest.raises(ValueError, match="currency mismatch"):
        price(
            catalogue(),
            space="reseller",
            edition="starter",
            billing="monthly",
            first_sale=False,
            credit_available=Money(amount=10, currency="USD"),
        )
