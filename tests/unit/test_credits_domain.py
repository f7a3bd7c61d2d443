"""C2, C3, C6: the balance is derived from an append-only ledger (services/credits/domain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.credits.domain import CreditAccount, CreditLot, EntryKind, LedgerEntry, LotSource
from shared.money import Money
from tests.unit.builders import PURE

GRANTED = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
EXPIRES = datetime(2027, 1, 15, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def lot(
    lot_id: str = "lot_1",
    amount: int = 9980,
    *,
    expires_at: datetime = EXPIRES,
    source: LotSource = "first_sale",
) -> CreditLot:
    return CreditLot(
        lot_id=lot_id, amount=amount, granted_at=GRANTED, expires_at=expires_at, source=source
    )


def entry(
    kind: EntryKind, amount: int, *, lot_id: str = "lot_1", order_id: str | None = None
) -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"e_{kind}_{lot_id}_{amount}_{order_id}",
        kind=kind,
        lot_id=lot_id,
        amount=amount,
        at=GRANTED,
        order_id=order_id,
    )


def account(lots: list[CreditLot], entries: list[LedgerEntry]) -> CreditAccount:
    return CreditAccount(id="r-42", lots=lots, entries=entries)


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def test_c3_grant_makes_the_lot_available() -> None:
    acc = account([lot()], [entry("grant", 9980)])
    assert acc.remaining("lot_1") == 9980
    assert acc.available(NOW) == 9980
    assert acc.reserved() == 0


def test_c3_reserve_moves_credit_from_available_to_reserved() -> None:
    acc = account([lot()], [entry("grant", 9980), entry("reserve", 3000, order_id="ol_1")])
    assert acc.remaining("lot_1") == 6980
    assert acc.available(NOW) == 6980
    assert acc.reserved() == 3000


def test_c3_release_gives_reserved_credit_back() -> None:
    acc = account(
        [lot()],
        [
            entry("grant", 9980),
            entry("reserve", 3000, order_id="ol_1"),
            entry("release", 3000, order_id="ol_1"),
        ],
    )
    assert acc.available(NOW) == 9980
    assert acc.reserved() == 0


def test_c3_consume_spends_reserved_credit_for_good() -> None:
    acc = account(
        [lot()],
        [
            entry("grant", 9980),
            entry("reserve", 3000, order_id="ol_1"),
            entry("consume", 3000, order_id="ol_1"),
        ],
    )
    assert acc.available(NOW) == 6980
    assert acc.reserved() == 0
    assert acc.remaining("lot_1") == 6980


def test_c3_expire_takes_the_remainder_off_the_lot() -> None:
    acc = account(
        [lot()],
        [entry("grant", 9980), entry("reserve", 1000, order_id="ol_1"), entry("expire", 8980)],
    )
    assert acc.remaining("lot_1") == 0
    assert acc.available(NOW) == 0
    assert acc.reserved() == 1000


def test_c3_entries_of_one_lot_do_not_touch_another() -> None:
    acc = account(
        [lot("lot_1", 9980), lot("lot_2", 500, source="upgrade_excess")],
        [
            entry("grant", 9980, lot_id="lot_1"),
            entry("grant", 500, lot_id="lot_2"),
            entry("reserve", 200, lot_id="lot_2", order_id="ol_1"),
        ],
    )
    assert acc.remaining("lot_1") == 9980
    assert acc.remaining("lot_2") == 300
    assert acc.available(NOW) == 10280
    assert acc.reserved() == 200


def test_c6_expired_lot_is_not_available() -> None:
    expiry = datetime(2026, 2, 1, tzinfo=UTC)
    acc = account(
        [lot("old", 1000, expires_at=expiry), lot("new", 2000)],
        [entry("grant", 1000, lot_id="old"), entry("grant", 2000, lot_id="new")],
    )
    assert acc.available(expiry - timedelta(milliseconds=1)) == 3000
    assert acc.available(expiry) == 2000
    assert acc.available(expiry + timedelta(days=1)) == 2000
    assert acc.remaining("old") == 1000


def test_c6_reservation_made_while_valid_stays_reserved_after_expiry() -> None:
    expiry = datetime(2026, 2, 1, tzinfo=UTC)
    acc = account(
        [lot("old", 1000, expires_at=expiry)],
        [entry("grant", 1000, lot_id="old"), entry("reserve", 600, lot_id="old", order_id="o")],
    )
    assert acc.available(expiry) == 0
    assert acc.reserved() == 600


def test_c2_balance_shows_lots_remainders_and_expiry() -> None:
    acc = account(
        [lot("lot_1", 9980), lot("lot_2", 500, source="upgrade_excess")],
        [
            entry("grant", 9980, lot_id="lot_1"),
            entry("grant", 500, lot_id="lot_2"),
            entry("reserve", 1980, lot_id="lot_1", order_id="ol_1"),
        ],
    )
    balance = acc.balance(NOW)
    assert balance.reseller_id == "r-42"
    assert balance.available == eur(8500)
    assert balance.reserved == eur(1980)
    assert [
        (v.lot_id, v.amount, v.remaining, v.granted_at, v.expires_at, v.source)
        for v in balance.lots
    ] == [
        ("lot_1", eur(9980), eur(8000), GRANTED, EXPIRES, "first_sale"),
        ("lot_2", eur(500), eur(500), GRANTED, EXPIRES, "upgrade_excess"),
    ]


def test_c2_empty_account_has_a_zero_balance() -> None:
    balance = CreditAccount(id="r-1").balance(NOW)
    assert balance.available == eur(0)
    assert balance.reserved == eur(0)
    assert balance.lots == []


MOVES: list[EntryKind] = ["reserve", "release", "consume"]
OPS = st.lists(
    st.tuples(st.sampled_from(MOVES), st.integers(min_value=1, max_value=5000)), max_size=30
)


@PURE
@given(granted=st.integers(min_value=0, max_value=20000), ops=OPS, expire=st.booleans())
def test_c3_balance_always_reconciles_with_the_ledger(
    granted: int, ops: list[tuple[EntryKind, int]], expire: bool
) -> None:
    """granted == available + reserved + consumed + expired, after any valid sequence."""
    acc = account([lot(amount=granted)], [entry("grant", granted)])
    free, held, consumed = granted, 0, 0
    entries = list(acc.entries)
    for i, (kind, amount) in enumerate(ops):
        if kind == "reserve" and amount <= free:
            free, held = free - amount, held + amount
        elif kind == "release" and amount <= held:
            free, held = free + amount, held - amount
        elif kind == "consume" and amount <= held:
            held, consumed = held - amount, consumed + amount
        else:
            continue
        entries.append(entry(kind, amount, order_id=f"o{i}"))
    expired = 0
    if expire and free:
        entries.append(entry("expire", free))
        expired, free = free, 0
    acc.entries = entries
    assert acc.available(NOW) == free
    assert acc.reserved() == held
    assert acc.remaining("lot_1") == free
    assert acc.available(NOW) + acc.reserved() + consumed + expired == granted
    assert acc.available(NOW) >= 0
