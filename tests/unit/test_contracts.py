"""The public messages (CONTRACT.md): validation rules, tolerant events, the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.basics.errors import ErrorCode
from shared.contracts import REGISTRY, Command, Event, Query
from shared.contracts.base import ErrorBody, Reply
from shared.contracts.licensing import RegisterAppliance
from shared.contracts.orders import (
    BindPlan,
    CancelOrder,
    OrderCancelled,
    OrderPlacedResult,
    PlaceOrder,
    ReviewProof,
)
from shared.contracts.quotes import RedeemQuote, RequestQuote
from tests.unit.team_contract import read_contract, routing_keys

# Transcribed from CONTRACT.md (command, query and event tables), so that these tests read
# on their own; test_contract_transcription_is_current keeps them equal to the file.
CONTRACT_COMMANDS = [
    "quote.request",
    "order.place",
    "order.cancel",
    "proof.review",
    "plan.bind",
    "plan.upgrade",
    "license.suspend",
    "license.reinstate",
]
CONTRACT_QUERIES = ["order.get", "order.list", "credits.balance", "license.status"]
CONTRACT_EVENTS = [
    "quote.issued",
    "order.placed",
    "order.cancelled",
    "order.expired",
    "proof.submitted",
    "proof.accepted",
    "proof.rejected",
    "plan.bound",
    "plan.upgraded",
    "plan.superseded",
    "credit.granted",
    "credit.reserved",
    "credit.released",
    "credit.consumed",
    "credit.expired",
    "license.unlocked",
    "license.changed",
    "license.expiring",
    "license.expired",
    "license.suspended",
    "license.reinstated",
    "appliance.registered",
    "appliance.moved",
    "customer.notification",
    "command.rejected",
]
AT = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


# --- Registry ---------------------------------------------------------------------------


def test_contract_transcription_is_current() -> None:
    keys = routing_keys(read_contract())
    assert set(CONTRACT_COMMANDS) == keys.commands
    assert set(CONTRACT_QUERIES) == keys.queries
    assert set(CONTRACT_EVENTS) == keys.events


@pytest.mark.parametrize("routing_key", CONTRACT_COMMANDS)
def test_contract_every_command_is_registered_as_a_command(routing_key: str) -> None:
    model = REGISTRY[routing_key]
    assert issubclass(model, Command)
    assert not issubclass(model, Query)


@pytest.mark.parametrize("routing_key", CONTRACT_QUERIES)
def test_contract_every_query_is_registered_as_a_query(routing_key: str) -> None:
    assert issubclass(REGISTRY[routing_key], Query)


@pytest.mark.parametrize("routing_key", CONTRACT_EVENTS)
def test_contract_every_event_is_registered_as_an_event(routing_key: str) -> None:
    assert issubclass(REGISTRY[routing_key], Event)


def test_contract_two_messages_cannot_share_a_routing_key() -> None:
    with pytest.raises(TypeError, match=r"share the routing key 'order\.place'"):

        class Impostor(Command):
            ROUTING_KEY = "order.place"

    assert REGISTRY["order.place"] is PlaceOrder


def test_contract_every_command_names_its_result() -> None:
    missing = [
        key
        for key in CONTRACT_COMMANDS + CONTRACT_QUERIES
        if getattr(REGISTRY[key], "RESULT", None) is None
    ]
    assert missing == []


# --- O1: order.place ----------------------------------------------------------------------


def test_o1_place_order_needs_a_quote_number_or_edition_and_billing() -> None:
    with pytest.raises(ValidationError, match="quote_number, or edition and billing"):
        PlaceOrder.model_validate({"reseller_id": "r-42", "space": "reseller"})


@pytest.mark.parametrize(
    "partial", [{"edition": "starter"}, {"billing": "monthly"}], ids=["no-billing", "no-edition"]
)
def test_o1_place_order_with_half_an_edition_is_refused(partial: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        PlaceOrder.model_validate({"reseller_id": "r-42", "space": "reseller", **partial})


@pytest.mark.parametrize(
    "body",
    [
        {"reseller_id": "r-42", "space": "reseller", "quote_number": "Q-2026-000001"},
        {"reseller_id": "r-42", "space": "personal", "edition": "starter", "billing": "annual"},
        {
            "reseller_id": "r-42",
            "space": "personal",
            "edition": "starter",
            "billing": "annual",
            "use_credit": False,
        },
    ],
    ids=["quote", "edition", "edition-no-credit"],
)
def test_o1_place_order_from_a_quote_or_an_edition_uses_credit_by_default(
    body: dict[str, Any],
) -> None:
    """CONTRACT.md: ``quote_number`` or ``edition + billing``; ``use_credit`` defaults to true."""
    assert PlaceOrder.model_validate(body).use_credit is body.get("use_credit", True)


def test_o1_place_order_refuses_an_unknown_billing_period() -> None:
    with pytest.raises(ValidationError):
        PlaceOrder.model_validate(
            {"reseller_id": "r-42", "space": "reseller", "edition": "starter", "billing": "weekly"}
        )


def test_q1_quote_request_refuses_an_unknown_space() -> None:
    with pytest.raises(ValidationError):
        RequestQuote.model_validate(
            {"reseller_id": "r-42", "space": "family", "edition": "starter", "billing": "monthly"}
        )


def test_q2_redeem_quote_needs_a_quote_number_or_edition_and_billing() -> None:
    with pytest.raises(ValidationError):
        RedeemQuote.model_validate({"reseller_id": "r-42", "space": "reseller", "order_id": "o"})


# --- Commands refuse unknown fields; events ignore them -----------------------------------


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (
            PlaceOrder,
            {"reseller_id": "r-42", "space": "reseller", "quote_number": "Q", "quote": "typo"},
        ),
        (CancelOrder, {"reseller_id": "r-42", "order_id": "ol_1", "force": True}),
        (
            ReviewProof,
            {"order_id": "ol_1", "decision": "accept", "reviewer": "ops", "approved": True},
        ),
        (BindPlan, {"reseller_id": "r", "order_id": "o", "customer_email": "a@b.c", "x": 1}),
        (
            RequestQuote,
            {
                "reseller_id": "r-42",
                "space": "reseller",
                "edition": "starter",
                "billing": "monthly",
                "discount": 99,
            },
        ),
    ],
)
def test_contract_commands_refuse_unknown_fields(
    model: type[Command], body: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate(body)


def test_contract_commands_strip_whitespace() -> None:
    cmd = CancelOrder.model_validate({"reseller_id": "  r-42 ", "order_id": "ol_1\n"})
    assert (cmd.reseller_id, cmd.order_id) == ("r-42", "ol_1")


def test_contract_command_ids_cannot_be_empty() -> None:
    with pytest.raises(ValidationError):
        CancelOrder.model_validate({"reseller_id": "", "order_id": "ol_1"})


def test_o4_review_decision_is_accept_or_reject() -> None:
    with pytest.raises(ValidationError):
        ReviewProof.model_validate({"order_id": "ol_1", "decision": "maybe", "reviewer": "ops"})


def test_contract_events_ignore_unknown_fields() -> None:
    event = OrderCancelled.model_validate(
        {
            "order_id": "ol_1",
            "reseller_id": "r-42",
            "occurred_at": "2026-03-10T09:30:00+00:00",
            "correlation_id": "ol_1",
            "added_in_v2": {"anything": True},
        }
    )
    assert event.occurred_at == AT
    assert "added_in_v2" not in event.model_dump()


def test_contract_event_times_must_carry_an_offset() -> None:
    with pytest.raises(ValidationError):
        OrderCancelled.model_validate(
            {"order_id": "ol_1", "reseller_id": "r-42", "occurred_at": "2026-03-10T09:30:00"}
        )


def test_m2_money_in_messages_is_integer_minor_units() -> None:
    with pytest.raises(ValidationError):
        OrderPlacedResult.model_validate(
            {
                "order_id": "ol_1",
                "status": "awaiting_proof",
                "amount_due": {"amount": 39.2, "currency": "EUR"},
                "credit_reserved": {"amount": 0, "currency": "EUR"},
                "quote_number": "Q",
            }
        )


def test_contract_error_reply_shape() -> None:
    reply: Reply[OrderPlacedResult] = Reply(
        ok=False, error=ErrorBody(code=ErrorCode.QUOTE_EXPIRED, message="expired")
    )
    assert reply.model_dump(mode="json", exclude_none=True) == {
        "ok": False,
        "error": {"code": "quote_expired", "message": "expired"},
    }


def test_l5_register_appliance_move_defaults_to_false() -> None:
    body = RegisterAppliance.model_validate(
        {"email": "a@b.example.com", "registration_token": "t", "appliance_id": "xoa-1"}
    )
    assert body.move is False


def test_l2_register_appliance_refuses_odd_appliance_ids() -> None:
    with pytest.raises(ValidationError):
        RegisterAppliance.model_validate(
            {"email": "a@b.example.com", "registration_token": "t", "appliance_id": "../etc"}
        )
