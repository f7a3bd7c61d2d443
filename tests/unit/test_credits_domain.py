"""Credit rules (C1-C6, O2, O7) on the ``CreditAccount``, pure, with hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.credits.domain import CreditAccount
from shared.basics.clock import add_months
from shared.basics.money import Money
from shared.contracts.base import Space
from shared.contracts.credits import CreditExpired, CreditGranted, CreditReserved
from shared.contracts.orders import OrderPrice
from tests.unit.builders import PURE

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def first_sale_price(credit: int) -> OrderPrice:
    return OrderPrice(
        list_price=eur(199900),
        discount=eur(0),
        credit_applied=eur(0),
        amount_due=eur(199900),
        first_sale=True,
        first_sale_credit=eur(credit),
    )


def plain_price(credit_applied: int = 0, excess: int = 0) -> OrderPrice:
    return OrderPrice(
        list_price=eur(4900),
        discount=eur(980),
        credit_applied=eur(credit_applied),
        amount_due=eur(3920 - credit_applied),
        first_sale_credit=eur(0),
        credit_note_excess=eur(excess),
    )


def funded(amount: int = 39980, at: datetime = T0) -> CreditAccount:
    """An account whose first sale was priced and paid: one first-sale lot."""
    account = CreditAccount(id="r-1")
    account.reserve(
        order_id="ol_first",
        space="reseller",
        wanted=eur(159920),
        use_credit=True,
        first_sale_requested=True,
        now=at,
        cause="m0",
    )
    account.settle_payment(
        order_id="ol_first", space="reseller", price=first_sale_price(amount), now=at, cause="m1"
    )
    return account


def reserve(account: CreditAccount, order_id: str, wanted: int, now: datetime = T0) -> int:
    result = account.reserve(
        order_id=order_id,
        space="reseller",
        wanted=eur(wanted),
        use_credit=True,
        first_sale_requested=False,
        now=now,
        cause=f"place-{order_id}",
    )
    return result.reserved.amount


def test_c1_first_sale_credit_is_granted_once_valid_12_months() -> None:
    account = funded(39980)
    [lot] = account.lots
    assert (lot.amount, lot.remaining, lot.source) == (39980, 39980, "first_sale")
    assert lot.expires_at == add_months(T0, 12) == datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    granted = [e for e in account.recorded() if isinstance(e, CreditGranted)]
    assert [(g.amount.amount, g.order_id) for g in granted] == [(39980, "ol_first")]
    # the same payment again, or a second first-sale-priced payment: nothing more
    account.settle_payment(
        order_id="ol_first",
        space="reseller",
        price=first_sale_price(39980),
        now=T0,
        cause="m1-again",
    )
    account.settle_payment(
        order_id="ol_other", space="reseller", price=first_sale_price(39980), now=T0, cause="m2"
    )
    assert len(account.lots) == 1
    assert account.balance(T0).first_sale_available is False


def test_q4_only_one_order_holds_first_sale_pricing() -> None:
    account = CreditAccount(id="r-1")
    first = account.reserve(
        order_id="a",
        space="reseller",
        wanted=eur(100),
        use_credit=True,
        first_sale_requested=True,
        now=T0,
        cause="m1",
    )
    second = account.reserve(
        order_id="b",
        space="reseller",
        wanted=eur(100),
        use_credit=True,
        first_sale_requested=True,
        now=T0,
        cause="m2",
    )
    assert (first.first_sale, second.first_sale) == (True, False)
    account.release("a", now=T0, cause="cancel-a")  # O8: the claim goes with the order
    assert account.first_sale_available
    third = account.reserve(
        order_id="c",
        space="reseller",
        wanted=eur(100),
        use_credit=True,
        first_sale_requested=True,
        now=T0,
        cause="m3",
    )
    assert third.first_sale is True


def test_c1_personal_space_never_counts_as_first_sale() -> None:
    account = CreditAccount(id="r-1")
    result = account.reserve(
        order_id="p",
        space="personal",
        wanted=eur(4900),
        use_credit=True,
        first_sale_requested=True,
        now=T0,
        cause="m",
    )
    assert result.first_sale is False
    account.settle_payment(
        order_id="p", space="personal", price=first_sale_price(980), now=T0, cause="m2"
    )
    assert account.lots == []
    assert account.first_sale_available


def test_c4_credit_is_capped_at_the_amount_due_and_used_earliest_expiry_first() -> None:
    account = funded(1000, at=T0)
    later = T0 + timedelta(days=30)
    account.settle_payment(
        order_id="ol_up", space="reseller", price=plain_price(excess=5000), now=later, cause="m"
    )
    assert reserve(account, "ol_2", 3920, now=later) == 3920
    [first, excess] = account.lots
    assert (first.remaining, excess.remaining) == (0, 2080)  # the older lot went first
    assert reserve(account, "ol_3", 3920, now=later) == 2080  # what is left, no more
    assert account.available(later) == 0
    assert account.reserved() == 6000


def test_c6_an_expired_lot_cannot_be_reserved_but_a_prior_reservation_is_honoured() -> None:
    account = funded(10000)
    assert reserve(account, "ol_a", 3000) == 3000
    after_expiry = add_months(T0, 12)
    assert reserve(account, "ol_b", 3000, now=after_expiry) == 0
    account.expire_due(after_expiry, cause="job")
    assert account.lots[0].remaining == 0
    assert [e.amount.amount for e in account.recorded() if isinstance(e, CreditExpired)] == [7000]
    account.settle_payment(
        order_id="ol_a", space="reseller", price=plain_price(3000), now=after_expiry, cause="pay"
    )
    assert account.reserved() == 0
    assert account.reconcile()


def test_c6_credit_released_after_its_lot_expired_expires_at_once() -> None:
    account = funded(10000)
    reserve(account, "ol_a", 3000)
    after_expiry = add_months(T0, 12) + timedelta(seconds=1)
    account.release("ol_a", now=after_expiry, cause="cancel")
    assert account.available(after_expiry) == 0
    assert account.lots[0].remaining == 0
    assert account.reconcile()


def test_o2_reservation_is_idempotent_per_order() -> None:
    account = funded(10000)
    assert reserve(account, "ol_a", 3000) == 3000
    assert reserve(account, "ol_a", 9000) == 3000
    assert account.reserved() == 3000
    assert len([e for e in account.recorded() if isinstance(e, CreditReserved)]) == 1


def test_c5_never_negative_when_orders_exceed_the_balance() -> None:
    account = funded(10000)
    won = [reserve(account, f"ol_{i}", 4000) for i in range(5)]
    assert won == [4000, 4000, 2000, 0, 0]
    assert account.available(T0) == 0
    assert all(lot.remaining >= 0 for lot in account.lots)


def test_o2_an_orphaned_reservation_is_released_after_the_delay_unless_confirmed() -> None:
    account = funded(10000)
    reserve(account, "ol_orphan", 3000)
    reserve(account, "ol_placed", 3000)
    account.confirm("ol_placed", T0, cause="order.placed")
    assert account.next_due_at == T0
    account.release_orphans(T0 + timedelta(hours=1), older_than=timedelta(hours=24), cause="job")
    assert account.reserved() == 6000
    account.release_orphans(T0 + timedelta(hours=24), older_than=timedelta(hours=24), cause="job")
    assert account.reserved() == 3000
    assert account.available(T0 + timedelta(hours=24)) == 7000


def test_c3_reconcile_detects_a_tampered_remainder() -> None:
    account = funded(10000)
    reserve(account, "ol_a", 3000)
    assert account.reconcile()
    account.lots[0].remaining += 1
    assert not account.reconcile()


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["grant", "reserve", "release", "pay", "expire"]),
        st.integers(min_value=0, max_value=6),  # which order
        st.integers(min_value=1, max_value=50_000),  # an amount
        st.integers(min_value=0, max_value=500),  # days after T0
    ),
    max_size=40,
)


@PURE
@given(OPERATIONS)
def test_c3_c5_random_ledgers_reconcile_never_go_negative_and_use_earliest_expiry_first(
    operations: list[tuple[str, int, int, int]],
) -> None:
    account = CreditAccount(id="r-prop")
    days = 0
    for kind, order, amount, step in operations:
        days = max(days, step)  # time only moves forward
        now = T0 + timedelta(days=days)
        order_id = f"ol_{order}"
        if kind == "grant":
            account.settle_payment(
                order_id=f"up_{len(account.lots)}",
                space="reseller",
                price=plain_price(excess=amount),
                now=now,
                cause="grant",
            )
        elif kind == "reserve":
            usable = sorted(
                (lot for lot in account.lots if lot.usable_at(now)), key=lambda lot: lot.expires_at
            )
            before = {lot.lot_id: lot.remaining for lot in usable}
            available = account.available(now)
            already = any(r.order_id == order_id for r in account.reservations)
            got = reserve(account, order_id, amount, now=now)
            if not already:
                assert got == min(amount, available)
                # earliest expiry first: a later lot is touched only once earlier ones are empty
                touched = [lot for lot in usable if lot.remaining != before[lot.lot_id]]
                for lot in usable:
                    if touched and lot.expires_at < touched[-1].expires_at:
                        assert lot.remaining == 0
        elif kind == "release":
            account.release(order_id, now=now, cause="release")
        elif kind == "pay":
            account.settle_payment(
                order_id=order_id, space="reseller", price=plain_price(), now=now, cause="pay"
            )
        else:
            account.expire_due(now, cause="expire")
        assert account.reconcile()
        assert all(lot.remaining >= 0 for lot in account.lots)
        assert account.available(now) >= 0
        assert account.reserved() >= 0
        total_granted = sum(lot.amount for lot in account.lots)
        consumed = sum(e.amount for e in account.entries if e.kind == "consume")
        expired = sum(e.amount for e in account.entries if e.kind == "expire")
        remaining = sum(lot.remaining for lot in account.lots)
        # every cent granted is exactly somewhere: left, held, spent or expired
        assert total_granted == remaining + account.reserved() + consumed + expired


def test_c2_balance_lists_lots_with_remainders_and_expiry() -> None:
    account = funded(39980)
    reserve(account, "ol_a", 3920)
    balance = account.balance(T0)
    assert balance.available == eur(36060)
    assert balance.reserved == eur(3920)
    [lot] = balance.lots
    assert (lot.amount, lot.remaining, lot.expires_at) == (
        eur(39980),
        eur(36060),
        add_months(T0, 12),
    )


@pytest.mark.parametrize("space", ["reseller", "personal"])
def test_c4_no_credit_when_the_order_does_not_ask_for_it(space: Space) -> None:
    account = funded(10000)
    result = account.reserve(
        order_id="ol_x",
        space=space,
        wanted=eur(3000),
        use_credit=False,
        first_sale_requested=False,
        now=T0,
        cause="m",
    )
    assert result.reserved == eur(0)
    assert account.available(T0) == 10000


def test_o2_an_orphan_released_too_early_is_revived_when_its_line_appears() -> None:
    account = funded(10000)
    reserve(account, "ol_late", 3000)
    account.release_orphans(T0 + timedelta(hours=25), older_than=timedelta(hours=24), cause="job")
    assert account.reserved() == 0
    shortfall = account.confirm("ol_late", T0 + timedelta(hours=26), cause="order.placed")
    assert shortfall == 0
    assert account.reserved() == 3000
    assert account.available(T0 + timedelta(hours=26)) == 7000
    assert account.reconcile()


def test_o2_reviving_an_orphan_reports_what_the_balance_no_longer_covers() -> None:
    account = funded(10000)
    reserve(account, "ol_late", 3000)
    account.release_orphans(T0 + timedelta(hours=25), older_than=timedelta(hours=24), cause="job")
    reserve(account, "ol_greedy", 9000, now=T0 + timedelta(hours=25))
    assert account.confirm("ol_late", T0 + timedelta(hours=26), cause="order.placed") == 2000
    assert account.reserved() == 10000
    assert account.reconcile()
