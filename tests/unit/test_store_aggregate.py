"""The pure parts of the storage pattern: events, outbox and applied message ids
(shared/runtime/store.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contracts.orders import OrderCancelled
from shared.runtime.inbox import MessageIdReused
from shared.runtime.store import APPLIED_MESSAGES_KEPT, Aggregate

AT = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


class Reseller(Aggregate):
    """An aggregate whose events all carry its id as ``reseller_id``."""

    def event_ids(self) -> dict[str, Any]:
        return {"reseller_id": self.id}


def cancelled(order_id: str = "ol_1") -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id, reseller_id="r-42", occurred_at=AT, correlation_id=order_id
    )


def record_cancelled(aggregate: Aggregate, order_id: str = "ol_1") -> OrderCancelled:
    return aggregate.record(
        OrderCancelled, at=AT, order_id=order_id, reseller_id="r-42", correlation_id=order_id
    )


def test_store_recorded_events_round_trip_through_the_outbox() -> None:
    aggregate = Aggregate(id="agg-1")
    assert record_cancelled(aggregate, "ol_1") == cancelled("ol_1")
    record_cancelled(aggregate, "ol_2")
    assert aggregate.recorded() == [cancelled("ol_1"), cancelled("ol_2")]
    entry = aggregate.outbox[0]
    assert entry.routing_key == "order.cancelled"
    assert entry.correlation_id == "ol_1"
    assert entry.occurred_at == AT
    assert entry.event_id != aggregate.outbox[1].event_id


def test_store_message_is_applied_once() -> None:
    aggregate = Aggregate(id="agg-1")
    assert aggregate.has_applied("m-1") is False
    aggregate.mark_applied("m-1")
    assert aggregate.has_applied("m-1") is True
    assert aggregate.has_applied("m-2") is False


def test_store_a_message_applied_with_its_digest_refuses_its_id_for_another_message() -> None:
    """A route without inbox (``Route(inbox=False)``): the aggregate binds the id to its
    message. The same message again is a resend; another message under that id is refused;
    a check without a digest, or an id applied before digests were kept, is a resend."""
    aggregate = Aggregate(id="agg-1")
    aggregate.mark_applied("m-1", "digest-a")
    aggregate.mark_applied("m-old")  # no digest: as applied before this change
    assert aggregate.has_applied("m-1", "digest-a") is True
    with pytest.raises(MessageIdReused, match="message_id m-1 was already applied to agg-1"):
        aggregate.has_applied("m-1", "digest-b")
    assert aggregate.has_applied("m-1") is True
    assert aggregate.has_applied("m-old", "digest-b") is True
    assert aggregate.has_applied("m-2", "digest-b") is False


def test_store_digests_are_kept_for_the_kept_applied_messages_only() -> None:
    aggregate = Aggregate(id="agg-1")
    for i in range(APPLIED_MESSAGES_KEPT + 2):
        aggregate.mark_applied(f"m-{i}", f"d-{i}" if i % 2 else None)
    assert set(aggregate.applied_digests) == {
        m for m in aggregate.applied_messages if int(m.removeprefix("m-")) % 2
    }
    assert len(aggregate.applied_digests) == APPLIED_MESSAGES_KEPT // 2
    loaded = Aggregate.model_validate(aggregate.to_document())
    with pytest.raises(MessageIdReused):
        loaded.has_applied("m-3", "d-other")


def test_store_message_without_id_is_never_marked() -> None:
    aggregate = Aggregate(id="agg-1")
    aggregate.mark_applied(None)
    assert aggregate.applied_messages == []
    assert aggregate.has_applied(None) is False


def test_store_only_the_latest_applied_messages_are_kept() -> None:
    aggregate = Aggregate(id="agg-1")
    for i in range(APPLIED_MESSAGES_KEPT + 1):
        aggregate.mark_applied(f"m-{i}")
    assert len(aggregate.applied_messages) == APPLIED_MESSAGES_KEPT
    assert aggregate.has_applied("m-0") is False
    assert aggregate.has_applied("m-1") is True
    assert aggregate.has_applied(f"m-{APPLIED_MESSAGES_KEPT}") is True


def test_store_document_uses_mongo_id_and_flags_pending_outbox() -> None:
    aggregate = Aggregate(id="agg-1")
    doc = aggregate.to_document()
    assert doc["_id"] == "agg-1"
    assert "id" not in doc
    assert doc["version"] == 0
    assert doc["outbox_pending"] is False
    record_cancelled(aggregate)
    assert aggregate.to_document()["outbox_pending"] is True


def test_store_document_loads_back_into_the_same_aggregate() -> None:
    aggregate = Aggregate(id="agg-1")
    record_cancelled(aggregate)
    aggregate.mark_applied("m-1")
    loaded = Aggregate.model_validate(aggregate.to_document())
    assert loaded.id == "agg-1"
    assert loaded.recorded() == [cancelled()]
    assert loaded.applied_messages == ["m-1"]


def test_store_events_carry_the_aggregates_ids_the_time_and_the_given_fields() -> None:
    reseller = Reseller(id="r-42")
    event = reseller.record(OrderCancelled, at=AT, order_id="ol_9", correlation_id="ol_9")
    assert event == cancelled("ol_9")
    overridden = reseller.record(OrderCancelled, at=AT, order_id="ol_9", reseller_id="r-other")
    assert (overridden.reseller_id, overridden.correlation_id) == ("r-other", None)


def test_store_document_carries_the_relays_claim_through_load_and_save() -> None:
    """A save writes back the claim it loaded (``OutboxRelay``): it never frees a document
    another relay is publishing."""
    aggregate = Aggregate(id="agg-1")
    record_cancelled(aggregate)
    doc = aggregate.to_document()
    assert (doc["outbox_claimed_until_ms"], doc["outbox_claimed_by"]) == (0, "")  # free
    doc.update(outbox_claimed_until_ms=1_790_000_030_000, outbox_claimed_by="relay-1")
    doc["outbox_failures"] = 2
    loaded = Aggregate.model_validate(doc)
    loaded.mark_applied("m-2")
    again = loaded.to_document()
    assert again["outbox_claimed_until_ms"] == 1_790_000_030_000
    assert again["outbox_claimed_by"] == "relay-1"
    assert again["outbox_failures"] == 2


def test_store_document_saved_before_leases_loads_as_free() -> None:
    old = {"_id": "agg-1", "version": 3, "outbox": [], "applied_messages": []}
    loaded = Aggregate.model_validate(old)
    assert (loaded.outbox_claimed_until_ms, loaded.outbox_claimed_by) == (0, "")
