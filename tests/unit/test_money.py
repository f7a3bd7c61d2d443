"""M1-M3: exact money, the one rounding rule, the shipped catalogue; plus clock and emails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, Inexact, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.basics.catalogue import FREE, Catalogue, Edition, load_catalogue
from shared.basics.clock import SystemClock, add_months, utc_ms
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money, round_half_up, share_of
from shared.contracts.base import Billing
from tests.support.clock import FixedClock
from tests.unit.builders import PURE

# --- M2: money is exact --------------------------------------------------------------


def test_m2_money_refuses_floats() -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": 49.9, "currency": "EUR"})


def test_m2_money_refuses_integral_float() -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": 4900.0, "currency": "EUR"})


def test_m2_money_refuses_negative_amount() -> None:
    with pytest.raises(ValidationError):
        Money(amount=-1, currency="EUR")


def test_m2_money_refuses_lowercase_currency() -> None:
    with pytest.raises(ValidationError):
        Money(amount=1, currency="eur")


def test_m2_money_adds_and_subtracts_in_cents() -> None:
    assert Money(amount=4900) + Money(amount=100) == Money(amount=5000, currency="EUR")
    assert Money(amount=4900) - Money(amount=980) == Money(amount=3920, currency="EUR")


def test_m2_money_subtraction_below_zero_is_refused() -> None:
    with pytest.raises(ValidationError):
        Money(amount=100) - Money(amount=101)


def test_m2_money_refuses_mixing_currencies() -> None:
    with pytest.raises(ValueError, match="currency mismatch"):
        Money(amount=1, currency="EUR") + Money(amount=1, currency="USD")
    with pytest.raises(ValueError, match="currency mismatch"):
        Money(amount=1, currency="EUR").min(Money(amount=1, currency="USD"))


def test_m2_money_min_returns_the_smaller_amount() -> None:
    assert Money(amount=300).min(Money(amount=200)).amount == 200
    assert Money(amount=200).min(Money(amount=300)).amount == 200


def test_m2_money_zero_keeps_currency() -> None:
    assert Money.zero("USD") == Money(amount=0, currency="USD")


def test_m2_money_is_frozen() -> None:
    money = Money(amount=1)
    with pytest.raises(ValidationError):
        money.amount = 2  # type: ignore[misc]


# --- M3: the rounding rule -----------------------------------------------------------
#
# Checked three independent ways, none of them the formula in ``round_half_up``:
# worked values computed by hand, the ``decimal`` module's own ROUND_HALF_UP on the
# exact decimal value of the fraction, and long division (is the remainder at least
# half the divisor?).


def by_long_division(value: Fraction) -> int:
    """Half up, ties away from zero: the whole part, plus one when the remainder is at
    least half the divisor; the sign put back afterwards."""
    whole, remainder = divmod(abs(value.numerator), value.denominator)
    if 2 * remainder >= value.denominator:
        whole += 1
    return whole if value.numerator >= 0 else -whole


def decimal_places(value: Fraction) -> int | None:
    """How many decimal places write ``value`` exactly; None when no finite number does
    (its denominator has a prime factor other than 2 and 5)."""
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    return max(twos, fives) if rest == 1 else None


def by_decimal_module(value: Fraction) -> int:
    """``decimal``'s own ROUND_HALF_UP on the exact decimal form of ``value``."""
    places = decimal_places(value)
    assert places is not None, f"{value} has no finite decimal form"
    digits = value.numerator * 10**places // value.denominator  # a whole division
    assert Fraction(digits, 10**places) == value
    exact = Decimal(f"{digits}E-{places}")  # from a string: exact, whatever the context
    with localcontext() as context:
        context.prec = len(str(abs(digits))) + 2  # room for the rounded result
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# Worked by hand: value, rounded half up to the unit (ties away from zero).
WORKED = [
    (Fraction(0), 0),
    (Fraction(1, 2), 1),
    (Fraction(3, 2), 2),
    (Fraction(5, 2), 3),
    (Fraction(7, 2), 4),
    (Fraction(49, 100), 0),
    (Fraction(51, 100), 1),
    (Fraction(1, 3), 0),
    (Fraction(2, 3), 1),
    (Fraction(5, 3), 2),
    (Fraction(999, 1000), 1),
    (Fraction(98049, 100), 980),
    (Fraction(98050, 100), 981),
    (Fraction(196, 5), 39),  # 39.2
    (Fraction(-1, 2), -1),
    (Fraction(-3, 2), -2),
    (Fraction(-5, 2), -3),
    (Fraction(-49, 100), 0),
    (Fraction(-51, 100), -1),
    (Fraction(-2, 3), -1),
    (Fraction(-1, 3), 0),
    (Fraction(-98050, 100), -981),
    (Decimal("980.5"), 981),
    (Decimal("980.4999"), 980),
    (Decimal("2.5"), 3),
    (Decimal("-2.5"), -3),
    (Decimal("-0.5"), -1),
    (Decimal("-0.4999"), 0),
    (Decimal("1E+2"), 100),
    (Decimal("0.49999999999999999999999999999999999999"), 0),
    (Decimal("0.50000000000000000000000000000000000000"), 1),
]


@pytest.mark.parametrize(("value", "expected"), WORKED, ids=str)
def test_m3_rounding_is_half_up_worked_values(value: Fraction | Decimal, expected: int) -> None:
    assert round_half_up(value) == expected


@pytest.mark.parametrize(("value", "expected"), WORKED, ids=str)
def test_m3_the_oracles_agree_with_the_worked_values(
    value: Fraction | Decimal, expected: int
) -> None:
    """The oracles below are only as good as this: each gives every hand-worked value."""
    exact = Fraction(value)
    assert by_long_division(exact) == expected
    if decimal_places(exact) is not None:
        assert by_decimal_module(exact) == expected


def finite_decimal_fractions() -> st.SearchStrategy[Fraction]:
    """Fractions with a finite decimal form: any integer over 2**a * 5**b, ties included."""
    return st.builds(
        lambda numerator, twos, fives: Fraction(numerator, 2**twos * 5**fives),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=40),
    )


@PURE
@given(value=finite_decimal_fractions())
def test_m3_round_half_up_matches_decimal_round_half_up(value: Fraction) -> None:
    assert round_half_up(value) == by_decimal_module(value)


@PURE
@given(
    numerator=st.integers(min_value=-(10**18), max_value=10**18),
    denominator=st.integers(min_value=1, max_value=10**12),
)
def test_m3_round_half_up_matches_long_division(numerator: int, denominator: int) -> None:
    value = Fraction(numerator, denominator)
    assert round_half_up(value) == by_long_division(value)


@PURE
@given(whole=st.integers(min_value=-(10**20), max_value=10**20))
def test_m3_an_exact_half_goes_away_from_zero(whole: int) -> None:
    tie = whole + Fraction(1, 2)  # whole .5: the next integer up, or down when negative
    assert round_half_up(tie) == (whole + 1 if tie > 0 else whole)
    assert round_half_up(Decimal(whole) + Decimal("0.5")) == round_half_up(tie)


@PURE
@given(
    value=st.decimals(
        min_value=Decimal("-1E+40"),
        max_value=Decimal("1E+40"),
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_m3_decimals_round_like_the_same_fraction(value: Decimal) -> None:
    assert round_half_up(value) == by_long_division(Fraction(value))


def test_m3_rounding_a_decimal_does_not_depend_on_the_decimal_context() -> None:
    with localcontext() as narrow:
        narrow.prec = 3
        narrow.rounding = ROUND_DOWN
        assert round_half_up(Decimal("123456.5")) == 123457
        assert round_half_up(Decimal("2.5")) == 3
    assert round_half_up(Decimal("1E+30")) == 10**30


def test_m3_round_half_up_is_exact_for_fractions_with_many_digits() -> None:
    just_below_half = Fraction(12345 * 10**26 + 5 * 10**25 - 1, 10**26)
    assert round_half_up(just_below_half) == 12345
    assert round_half_up(just_below_half + Fraction(1, 10**26)) == 12346
    assert round_half_up(-just_below_half) == -12345


# M3: 20 % of each price of the default catalogue, worked by hand.
DEFAULT_DISCOUNTS = [
    ("starter", "monthly", 4900, 980),
    ("starter", "annual", 49900, 9980),
    ("enterprise", "monthly", 19900, 3980),
    ("enterprise", "annual", 199900, 39980),
    ("premium", "monthly", 39900, 7980),
    ("premium", "annual", 399900, 79980),
]


@pytest.mark.parametrize(("edition", "billing", "price", "discount"), DEFAULT_DISCOUNTS)
def test_m3_reseller_discount_on_each_default_price(
    edition: str, billing: Billing, price: int, discount: int
) -> None:
    catalogue = load_catalogue()
    assert catalogue.price(edition, billing) == Money(amount=price, currency="EUR")
    assert share_of(catalogue.price(edition, billing), catalogue.discount_rate) == Money(
        amount=discount, currency="EUR"
    )


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (4903, Fraction(1, 5), 981),  # 980.6
        (4902, Fraction(1, 5), 980),  # 980.4
        (4905, Fraction(1, 10), 491),  # 490.5: half up, not to even (490)
        (4915, Fraction(1, 10), 492),  # 491.5
        (1, Fraction(1, 2), 1),  # 0.5
        (3, Fraction(1, 6), 1),  # 0.5
        (1, Fraction(1, 3), 0),  # 0.33...
        (2, Fraction(1, 3), 1),  # 0.66...
        (0, Fraction(1, 5), 0),
        (4900, Fraction(0), 0),
    ],
)
def test_m3_share_of_rounds_fractional_cents_half_up(
    amount: int, rate: Fraction, expected: int
) -> None:
    assert share_of(Money(amount=amount, currency="USD"), rate) == Money(
        amount=expected, currency="USD"
    )


@PURE
@given(
    amount=st.integers(min_value=0, max_value=10**12),
    discount=st.decimals(min_value=0, max_value=Decimal("0.999999"), places=6),
)
def test_m3_share_of_a_configured_discount_matches_decimal_arithmetic(
    amount: int, discount: Decimal
) -> None:
    """As configured (a decimal rate in the catalogue), computed as ``decimal`` would."""
    rate = Catalogue(currency="EUR", reseller_discount=discount, editions=[]).discount_rate
    with localcontext() as context:
        context.prec = 40  # 13 + 6 digits at most: the product is exact
        context.traps[Inexact] = True
        product = Decimal(amount) * discount
    expected = product.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert share_of(Money(amount=amount), rate).amount == int(expected)


# --- M1 / M3: the shipped catalogue ----------------------------------------------------


def test_m3_default_catalogue_prices_in_eur_cents() -> None:
    catalogue = load_catalogue()
    assert catalogue.currency == "EUR"
    prices = {
        (e.name, billing): catalogue.price(e.name, billing).amount
        for e in catalogue.editions
        if e.name != FREE
        for billing in ("monthly", "annual")
    }
    assert prices == {
        ("starter", "monthly"): 4900,
        ("starter", "annual"): 49900,
        ("enterprise", "monthly"): 19900,
        ("enterprise", "annual"): 199900,
        ("premium", "monthly"): 39900,
        ("premium", "annual"): 399900,
    }


def test_m3_default_reseller_discount_is_twenty_percent_exactly() -> None:
    catalogue = load_catalogue()
    assert catalogue.reseller_discount == Decimal("0.20")
    assert catalogue.discount_rate == Fraction(1, 5)


def test_m1_editions_are_ranked_free_starter_enterprise_premium() -> None:
    catalogue = load_catalogue()
    ranked = sorted(catalogue.editions, key=lambda e: e.rank)
    assert [e.name for e in ranked] == ["free", "starter", "enterprise", "premium"]


def test_m1_unknown_edition_is_refused() -> None:
    with pytest.raises(Refused) as refused:
        load_catalogue().price("platinum", "monthly")
    assert refused.value.code == ErrorCode.UNKNOWN_EDITION


def test_m1_free_edition_is_not_sold() -> None:
    with pytest.raises(Refused) as refused:
        load_catalogue().price("free", "annual")
    assert refused.value.code == ErrorCode.UNKNOWN_EDITION


def test_m1_catalogue_refuses_two_editions_with_one_rank() -> None:
    with pytest.raises(ValidationError, match="own rank"):
        Catalogue(
            currency="EUR",
            reseller_discount=Decimal("0.2"),
            editions=[
                Edition(name="a", rank=1, prices={"monthly": 1}),
                Edition(name="b", rank=1, prices={"monthly": 2}),
            ],
        )


def test_m1_catalogue_refuses_a_discount_of_one_hundred_percent() -> None:
    with pytest.raises(ValidationError):
        Catalogue(currency="EUR", reseller_discount=Decimal("1"), editions=[])


def test_m1_catalogue_is_configuration_a_custom_price_is_used() -> None:
    catalogue = Catalogue(
        currency="USD",
        reseller_discount=Decimal("0.10"),
        editions=[Edition(name="starter", rank=1, prices={"monthly": 4905})],
    )
    assert catalogue.price("starter", "monthly") == Money(amount=4905, currency="USD")
    assert catalogue.discount_rate == Fraction(1, 10)


# --- Clock: aware UTC, milliseconds ----------------------------------------------------


def test_clock_utc_ms_truncates_to_milliseconds_never_rounds_up() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
    assert utc_ms(moment) == datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def test_clock_system_clock_reads_aware_utc_milliseconds() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0
    assert before - timedelta(milliseconds=1) <= now <= datetime.now(UTC)


def test_clock_fixed_clock_advances_by_hand_in_milliseconds() -> None:
    clock = FixedClock(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    clock.advance(timedelta(minutes=2, microseconds=1500))
    assert clock.now() == datetime(2026, 2, 1, 0, 1, 0, 1000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2026, 3, 10, 9, 30, tzinfo=UTC), 1, datetime(2026, 4, 10, 9, 30, tzinfo=UTC)),
        (datetime(2026, 3, 10, 9, 30, tzinfo=UTC), 12, datetime(2027, 3, 10, 9, 30, tzinfo=UTC)),
        (datetime(2026, 1, 31, tzinfo=UTC), 1, datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 3, 31, tzinfo=UTC), 1, datetime(2026, 4, 30, tzinfo=UTC)),
        (datetime(2026, 11, 15, tzinfo=UTC), 2, datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2028, 2, 29, tzinfo=UTC), 12, datetime(2029, 2, 28, tzinfo=UTC)),
        (datetime(2026, 12, 31, tzinfo=UTC), 14, datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_o6_c1_add_months_clamps_to_the_last_day_of_the_month(
    start: datetime, months: int, expected: datetime
) -> None:
    assert add_months(start, months) == expected


def test_clock_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_ms(datetime(2026, 1, 1))


def test_clock_other_offsets_are_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    converted = utc_ms(datetime(2026, 6, 1, 12, 0, tzinfo=paris))
    assert converted == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert converted.utcoffset() == timedelta(0)


# --- Emails: validated, normalised, compared case-insensitively ---------------------------


def test_o5_email_is_normalised_lower_case_and_stripped() -> None:
    assert normalise_email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"


@pytest.mark.parametrize("raw", ["", "jane", "jane@", "@example.com", "jane doe@example.com"])
def test_o5_invalid_email_is_refused(raw: str) -> None:
    with pytest.raises(Refused) as refused:
        normalise_email(raw)
    assert refused.value.code == ErrorCode.INVALID_EMAIL
