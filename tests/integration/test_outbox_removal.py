"""Removing what a save's publication confirmed (``OutboxRelay.fold``, ``settle_now``),
against the real store server: the aggregate's next save is the removal, and what no save
takes is removed together with the others of that moment, in one write. Counted in store
commands, the figure that changed (a removal each was a third of a sale's order-line
writes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from services.orders.domain import unknown_order
from shared.contracts.orders import OrderCancelled
from shared.runtime.outbox import OutboxRelay
from shared.runtime.store import Document, DocumentStore
from tests.support.clock import FixedClock
from tests.support.commands import CommandLog, logged_database
from tests.support.tallies import Recorder, Tally
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

AT = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


@pytest.fixture
async def logged_outbox(
    mongo_url: str,
) -> AsyncIterator[tuple[CommandLog, AsyncCollection[Document]]]:
    async with logged_database(mongo_url, "outbox_removal") as (log, db):
        yield log, db["tallies"]


def cancelled(tally: Tally) -> None:
    """One event for the relay to publish (any will do)."""
    tally.record(OrderCancelled, at=AT, order_id=tally.id, reseller_id="r", correlation_id=None)


async def saving_store(
    collection: AsyncCollection[Document], recorder: Recorder, *, settle_seconds: float
) -> tuple[DocumentStore[Tally], OutboxRelay]:
    relay = OutboxRelay(recorder, clock=FixedClock(AT), name="saver", settle_seconds=settle_seconds)
    await relay.watch([collection])
    return DocumentStore(collection, Tally, unknown=unknown_order, relay=relay), relay


async def inserted(store: DocumentStore[Tally], tally_id: str) -> Tally:
    """A new tally with one event, inserted: its publication at save starts."""
    tally = Tally(id=tally_id)
    cancelled(tally)
    assert await store.insert(tally)
    return tally


async def test_the_next_save_of_the_aggregate_removes_what_was_published_in_its_own_write(
    logged_outbox: tuple[CommandLog, AsyncCollection[Document]],
) -> None:
    log, collection = logged_outbox
    recorder = Recorder()
    store, relay = await saving_store(collection, recorder, settle_seconds=60)
    tally = await inserted(store, "t0")
    first = tally.outbox[0].event_id
    await relay.sent()
    stored = await collection.find_one({"_id": "t0"})
    assert stored is not None and [e["event_id"] for e in stored["outbox"]] == [first]
    assert stored["outbox_claimed_by"] == "saver"  # published, not removed: the claim stays

    log.sent.clear()
    saved = await store.mutate("t0", lambda t: cancelled(t), message_id="m1")
    second = saved.aggregate.outbox[-1].event_id
    assert [name for name, _ in log.sent] == ["find", "update"]  # no removal of its own
    assert [e.event_id for e in saved.aggregate.outbox] == [second]
    await relay.sent()
    assert recorder.published == [first, second]

    await relay.finish()  # stopping: what is left is removed at once
    stored = await collection.find_one({"_id": "t0"})
    assert stored is not None and stored["outbox"] == [] and stored["outbox_pending"] is False
    assert stored["outbox_claimed_by"] == "" and stored["outbox_claimed_until_ms"] == 0
    assert await relay.drain() == 0 and recorder.attempted == [first, second]


async def test_what_no_save_takes_is_removed_together_in_one_write(
    logged_outbox: tuple[CommandLog, AsyncCollection[Document]],
) -> None:
    log, collection = logged_outbox
    recorder = Recorder()
    store, relay = await saving_store(collection, recorder, settle_seconds=0.3)
    for n in range(3):
        await inserted(store, f"t{n}")
    await relay.sent()
    log.sent.clear()

    async def pending() -> int:
        return await collection.count_documents({"outbox_pending": True})

    await eventually(pending, lambda count: count == 0, timeout=5)
    updates = [name for name, _ in log.sent if name == "update"]
    assert updates == ["update"]  # three documents, one write
    async for doc in collection.find({}):
        assert doc["outbox"] == [] and doc["outbox_claimed_by"] == "" and doc["version"] == 2
    assert await relay.drain() == 0 and len(recorder.published) == 3


async def test_a_document_saved_elsewhere_meanwhile_is_read_again_and_keeps_the_new_event(
    logged_outbox: tuple[CommandLog, AsyncCollection[Document]],
) -> None:
    """Another replica saved the aggregate between the publication and its removal: its
    save carried this relay's claim, and its event must survive the removal; the release
    of the claim wakes a pass, which publishes it once."""
    _, collection = logged_outbox
    recorder = Recorder()
    store, relay = await saving_store(collection, recorder, settle_seconds=60)
    tally = await inserted(store, "t0")
    await relay.sent()
    elsewhere = DocumentStore(collection, Tally, unknown=unknown_order)  # no relay: a replica
    saved = await elsewhere.mutate("t0", lambda t: cancelled(t), message_id="m1")
    theirs = saved.aggregate.outbox[-1].event_id

    await relay.settle_now()
    stored = await collection.find_one({"_id": "t0"})
    assert stored is not None and [e["event_id"] for e in stored["outbox"]] == [theirs]
    assert stored["outbox_claimed_by"] == "" and stored["outbox_pending"] is True
    assert relay._wake.is_set()
    assert await relay.drain() == 1
    assert recorder.published == [tally.outbox[0].event_id, theirs]


async def test_a_relay_lost_before_the_removal_leaves_its_events_to_be_published_again(
    logged_outbox: tuple[CommandLog, AsyncCollection[Document]],
) -> None:
    """The price of waiting for the next save: a crash in that window publishes the
    events again once the claim expires (at least once, as after any crash between a
    confirm and its removal); never before."""
    _, collection = logged_outbox
    store, crashed = await saving_store(collection, Recorder(), settle_seconds=60)
    tally = await inserted(store, "t0")
    await crashed.sent()  # confirmed; the process dies before any removal
    clock = FixedClock(AT)
    survivor = OutboxRelay(recorder := Recorder(), clock=clock, name="survivor")
    await survivor.watch([collection])
    assert await survivor.drain() == 0  # the lost relay's claim still holds
    clock.advance(timedelta(seconds=30))
    assert await survivor.drain() == 1 and recorder.published == [tally.outbox[0].event_id]


async def test_a_removal_round_leaves_a_document_being_changed_and_removes_the_others(
    logged_outbox: tuple[CommandLog, AsyncCollection[Document]],
) -> None:
    """A round does not wait for the turn of a document this process is changing, while
    holding the other documents' turns: it removes the others, and the change folds that
    one (or a later round takes it). A stop waits for that turn and removes it."""
    _, collection = logged_outbox
    recorder = Recorder()
    relay = OutboxRelay(recorder, clock=FixedClock(AT), name="saver", settle_seconds=60)
    await relay.watch([collection])
    busy = asyncio.Lock()

    @asynccontextmanager
    async def turn(doc_id: str) -> AsyncIterator[None]:
        if doc_id != "t0":
            yield
            return
        async with busy:
            yield

    def changing(doc_id: str) -> bool:
        return doc_id == "t0" and busy.locked()

    for n in range(2):
        tally = Tally(id=f"t{n}", version=1)
        cancelled(tally)
        assert relay.hold(collection, tally)
        doc = tally.to_document()
        await collection.insert_one(doc)
        relay.publish_held(collection, doc, turn=turn, changing=changing)
    await relay.sent()

    async with busy:  # a change of t0 is under way
        await asyncio.wait_for(relay.settle_now(all_of_them=False), timeout=5)
        outboxes = {d["_id"]: len(d["outbox"]) async for d in collection.find({})}
        assert outboxes == {"t0": 1, "t1": 0}
    await relay.finish()
    assert {d["_id"]: len(d["outbox"]) async for d in collection.find({})} == {"t0": 0, "t1": 0}
    assert len(recorder.published) == 2
