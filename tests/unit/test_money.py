"""M1-M3: exact money, the one rounding rule, the shipped catalogue; plus clock and emails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.basics.catalogue import FREE, Catalogue, Edition, load_catalogue
from shared.basics.clock import utc_ms
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money, round_half_up, share_of
from tests.support.clock import FixedClock
from tests.unit.builders import PURE


def exact_half_up(numerator: int, denominator: int) -> int:
    """floor(n/d + 1/2) in integers only: the reference for non-negative values."""
    return (2 * numerator + denominator) // (2 * denominator)


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(5, 2), 3),
        (Fraction(7, 2), 4),
        (Fraction(1, 2), 1),
        (Fraction(49, 100), 0),
        (Fraction(51, 100), 1),
        (Fraction(0), 0),
        (Fraction(98049, 100), 980),
        (Fraction(98050, 100), 981),
        (Decimal("980.5"), 981),
        (Decimal("980.4999"), 980),
        (Decimal("2.5"), 3),
    ],
)
def test_m3_rounding_is_half_up(value: Fraction | Decimal, expected: int) -> None:
    assert round_half_up(value) == expected


@PURE
@given(
    numerator=st.integers(min_value=0, max_value=10**15),
    denominator=st.integers(min_value=1, max_value=10**9),
)
def test_m3_round_half_up_matches_exact_integer_formula(numerator: int, denominator: int) -> None:
    assert round_half_up(Fraction(numerator, denominator)) == exact_half_up(numerator, denominator)


@PURE
@given(
    amount=st.integers(min_value=0, max_value=10**9),
    rate=st.fractions(min_value=0, max_value=1, max_denominator=10**6),
)
def test_m3_share_of_matches_exact_integer_formula(amount: int, rate: Fraction) -> None:
    share = share_of(Money(amount=amount, currency="EUR"), rate)
    assert share.amount == exact_half_up(amount * rate.numerator, rate.denominator)
    assert share.currency == "EUR"


def test_m3_round_half_up_is_exact_for_fractions_with_many_digits() -> None:
    just_below_half = Fraction(12345 * 10**26 + 5 * 10**25 - 1, 10**26)
    assert round_half_up(just_below_half) == 12345


def test_m3_share_of_twenty_percent_of_each_default_price() -> None:
    rate = load_catalogue().discount_rate
    assert [share_of(Money(amount=a), rate).amount for a in (4900, 49900, 19900, 199900)] == [
        980,
        9980,
        3980,
        39980,
    ]
    assert share_of(Money(amount=39900), rate).amount == 7980
    assert share_of(Money(amount=399900), rate).amount == 79980


def test_m3_share_of_rounds_fractional_cents_half_up() -> None:
    assert share_of(Money(amount=4903), Fraction(1, 5)).amount == 981  # 980.6
    assert share_of(Money(amount=4902), Fraction(1, 5)).amount == 980  # 980.4
    assert share_of(Money(amount=4905), Fraction(1, 10)).amount == 491  # 490.5, not 490


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


def test_m1_highest_edition_wins_and_none_means_free() -> None:
    catalogue = load_catalogue()
    assert catalogue.highest(["starter", "premium", "enterprise"]) == "premium"
    assert catalogue.highest(["starter", "enterprise"]) == "enterprise"
    assert catalogue.highest([]) == FREE


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


def test_clock_fixed_clock_truncates_to_milliseconds() -> None:
    clock = FixedClock(datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def test_clock_fixed_clock_advances_by_hand() -> None:
    clock = FixedClock(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    clock.advance(timedelta(minutes=2, microseconds=1500))
    assert clock.now() == datetime(2026, 2, 1, 0, 1, 0, 1000, tzinfo=UTC)


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
