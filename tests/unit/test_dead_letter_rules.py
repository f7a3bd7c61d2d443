"""The kept dead letter's own rules (shared.runtime.dead_letters.DeadLetter), pure."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from shared.basics.errors import ErrorCode, Refused
from shared.contracts.operations import DeadLetterDiscarded, DeadLetterReplayed
from shared.runtime.dead_letters import DeadLetter

AT = datetime(2026, 3, 1, tzinfo=UTC)


def kept() -> DeadLetter:
    return DeadLetter(
        id="m-1",
        message_id="m-1",
        routing_key="order.place",
        exchange="reseller.commands",
        route="order.place",
        publisher="xo-storefront",
        reason="retries_exhausted: 4 attempts",
        dead_at=AT,
        correlation_id="c-1",
        body_base64=base64.b64encode(b"{}").decode(),
        digest="d",
    )


def test_a_replay_that_applied_settles_it_and_is_audited_with_the_operator() -> None:
    letter = kept()
    letter.replayed(service="orders", outcome="ok", operator="fay", deaths_before=1, at=AT)
    assert (letter.status, letter.replays, letter.last_outcome) == ("replayed", 1, "ok")
    [event] = letter.recorded()
    assert isinstance(event, DeadLetterReplayed)
    assert (event.operator, event.outcome, event.message_id, event.service) == (
        "fay",
        "ok",
        "m-1",
        "orders",
    )
    assert event.correlation_id == "c-1" and event.routing_key == "order.place"


@pytest.mark.parametrize("outcome", ["invalid", "unauthorized", "refused"])
def test_a_replay_that_died_again_leaves_it_dead(outcome: str) -> None:
    letter = kept()
    letter.died_again(reason="invalid message: x", attempts=1, at=AT)  # kept again meanwhile
    letter.replayed(service="orders", outcome=outcome, operator="fay", deaths_before=1, at=AT)
    assert (letter.status, letter.deaths, letter.last_outcome) == ("dead", 2, outcome)


def test_a_replay_the_broker_could_not_even_retry_leaves_it_dead() -> None:
    letter = kept()
    letter.replayed(service="orders", outcome="failed", operator="fay", deaths_before=1, at=AT)
    assert letter.status == "dead" and letter.replays == 1


def test_discard_names_operator_and_reason_once() -> None:
    letter = kept()
    letter.discarded(service="orders", operator="fay", reason="a typo", at=AT)
    assert (letter.status, letter.operator, letter.discard_reason) == ("discarded", "fay", "a typo")
    [event] = letter.recorded()
    assert isinstance(event, DeadLetterDiscarded) and event.reason == "a typo"
    with pytest.raises(Refused) as refused:
        letter.discarded(service="orders", operator="gus", reason="again", at=AT)
    assert refused.value.code == ErrorCode.DEAD_LETTER_SETTLED
    assert letter.operator == "fay"
