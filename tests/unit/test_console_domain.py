"""The console's pure rules: log entries, lines folded from them, stuck lines, passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.console.domain import (
    StuckRules,
    entry_of,
    fold_line,
    format_age,
    format_money,
    new_operator,
    stuck,
)
from shared.basics.errors import ErrorCode, Refused
from shared.runtime.web import hash_password, verify_password

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PRICE = {
    "list_price": {"amount": 199900, "currency": "EUR"},
    "discount": {"amount": 39980, "currency": "EUR"},
    "credit_applied": {"amount": 0, "currency": "EUR"},
    "amount_due": {"amount": 159920, "currency": "EUR"},
    "first_sale_credit": {"amount": 0, "currency": "EUR"},
}


def _event(key: str, at: datetime, n: int, **body: Any) -> Any:
    body = {"order_id": "ol_1", "reseller_id": "r-1", "occurred_at": at.isoformat(), **body}
    return entry_of(
        key, body, message_id=f"m{n}", publisher="xo-orders", correlation_id="ol_1", received_at=at
    )


def _placed(at: datetime = T0, **extra: Any) -> Any:
    return _event(
        "order.placed",
        at,
        1,
        space="reseller",
        edition="enterprise",
        billing="annual",
        price=PRICE,
        **extra,
    )


def _submitted(at: datetime, n: int = 2) -> Any:
    return _event(
        "proof.submitted",
        at,
        n,
        proof_id=f"p{n}",
        sha256="ab" * 32,
        size=1234,
        content_type="application/pdf",
    )


def test_an_entry_is_indexed_by_every_line_it_names_and_keeps_no_secret() -> None:
    entry = entry_of(
        "customer.notification",
        {
            "customer_email": "Bob@Example.com",
            "order_id": "ol_2",
            "registration_token": "s3cret",
            "occurred_at": T0.isoformat(),
        },
        message_id="m",
        publisher="xo-licensing",
        correlation_id=None,
        received_at=T0,
    )
    assert entry.customer_email == "bob@example.com"
    assert entry.body["registration_token"] == "[redacted]"
    upgraded = _event("plan.upgraded", T0, 9, previous_order_id="ol_0")
    assert upgraded.order_ids == ["ol_1", "ol_0"]


def test_o4_a_line_folds_to_its_latest_status_whatever_the_arrival_order() -> None:
    events = [
        _submitted(T0 + timedelta(hours=1)),
        _placed(),
        _event("proof.rejected", T0 + timedelta(hours=2), 3, reviewer="ops", reason="blurry"),
    ]
    line = fold_line("ol_1", reversed(events))
    assert line is not None
    assert (line.status, line.rejection_reason, line.amount_due) == (
        "awaiting_proof",
        "blurry",
        159920,
    )
    assert line.status_since == T0 + timedelta(hours=2)  # the awaiting clock restarts
    again = fold_line(
        "ol_1",
        [
            *events,
            _submitted(T0 + timedelta(hours=3), 4),
            _event("proof.accepted", T0 + timedelta(hours=4), 5, reviewer="ops"),
        ],
    )
    assert again is not None and again.status == "paid" and again.proofs == 2


def test_within_one_instant_the_workflow_order_decides() -> None:
    events = [_event("proof.accepted", T0, 3, reviewer="ops"), _submitted(T0), _placed()]
    line = fold_line("ol_1", events)
    assert line is not None and line.status == "paid"


def test_an_unknown_line_folds_to_nothing() -> None:
    assert fold_line("ol_9", [_placed()]) is None


@pytest.mark.parametrize(
    ("events", "after", "kind"),
    [
        ([_placed()], timedelta(days=7, seconds=1), "awaiting_proof"),
        ([_placed()], timedelta(days=7), None),
        ([_placed(), _submitted(T0)], timedelta(hours=24, seconds=1), "review_overdue"),
        ([_placed(), _submitted(T0)], timedelta(hours=23), None),
        (
            [_placed(), _submitted(T0), _event("proof.accepted", T0, 3, reviewer="o")],
            timedelta(days=8),
            "paid_unbound",
        ),
        ([_placed(upgrade_of="ol_0")], timedelta(hours=25), "upgrade_pending"),
        (
            [_event("credit.reserved", T0, 7, amount={"amount": 5, "currency": "EUR"})],
            timedelta(hours=25),
            "orphaned_reservation",
        ),
        (
            [_event("credit.reserved", T0, 7, amount={"amount": 5, "currency": "EUR"}), _placed()],
            timedelta(hours=25),
            None,
        ),
        (
            [
                _placed(),
                _submitted(T0),
                _event("proof.accepted", T0, 3, reviewer="o"),
                _event("plan.bound", T0, 4, customer_email="c@example.com"),
            ],
            timedelta(days=90),
            None,
        ),
    ],
)
def test_stuck_rules(events: list[Any], after: timedelta, kind: str | None) -> None:
    line = fold_line("ol_1", events)
    assert line is not None
    found = stuck(line, T0 + after, StuckRules())
    assert (found.kind if found else None) == kind
    if found:
        assert found.age_seconds == int(after.total_seconds())


def test_a_personal_line_is_never_paid_unbound() -> None:
    personal = _event(
        "order.placed", T0, 1, space="personal", edition="pro", billing="monthly", price=PRICE
    )
    line = fold_line("ol_1", [personal, _event("proof.accepted", T0, 3, reviewer="o")])
    assert line is not None and stuck(line, T0 + timedelta(days=30), StuckRules()) is None


def test_formats() -> None:
    assert format_money(159920) == "1\u202f599.20 EUR"
    assert format_money(-5) == "-0.05 EUR"
    assert format_age(timedelta(days=3, hours=4, minutes=5)) == "3d 4h"
    assert format_age(timedelta(minutes=42)) == "42m"


def test_operator_accounts_need_an_email_and_a_long_password() -> None:
    op = new_operator(
        " Alice@Ops.Example ", "Alice", "correct horse battery", password_hash="h", now=T0
    )
    assert op.email == "alice@ops.example"
    with pytest.raises(Refused) as weak:
        new_operator("a@ops.example", "A", "short", password_hash="h", now=T0)
    assert weak.value.code == ErrorCode.WEAK_PASSWORD


def test_passwords_are_argon2id_and_an_unknown_account_never_verifies() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password(None, "anything")
    assert not verify_password("not a hash", "anything")
