"""The console's event log: every event once, with its publisher; lines folded from it;
it survives a restart and a replay of every event without duplicates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import aio_pika
import pytest
from prometheus_client import registry as prometheus
from pymongo import AsyncMongoClient

from services.console.domain import LogEntry, entry_of
from services.console.store import Appended, ConsoleStore
from shared.contracts.identities import OWNERS
from shared.runtime.store import Document, connect
from tests.integration.console_support import Console, running_console
from tests.support.commands import CommandLog
from tests.support.flows import paid_order, place, upload
from tests.support.system import System
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def _keys_of(console: Console, order_id: str) -> list[str]:
    return [e.routing_key for e in await console.store.timeline(order_id)]


async def test_a_sale_lands_in_the_log_with_its_publishers_and_operator(system: System) -> None:
    async with running_console(system) as console:
        order_id = await paid_order(system, "r-log")
        keys = await eventually(
            lambda: _keys_of(console, order_id), lambda k: "proof.accepted" in k
        )
        assert {"order.placed", "proof.submitted", "proof.accepted"} <= set(keys)
        entries = await console.store.timeline(order_id)
        users = system.client.users
        by_key = {e.routing_key: e for e in entries}
        assert by_key["order.placed"].publisher == users["orders"]["username"]
        operator = by_key["proof.accepted"].operator or ""
        assert operator.startswith("ops")  # the reviewer flows.paid_order names
        assert all(
            e.correlation_id == order_id
            for e in entries
            if e.routing_key.startswith(("order.", "proof."))
        )
        line = await console.store.line(order_id)
        assert line is not None and line.status == "paid" and line.reseller_id == "r-log"
        assert line.amount_due == 199900 and line.proof is not None


async def test_a_rejected_proof_puts_the_line_back_to_awaiting_proof(system: System) -> None:
    async with running_console(system) as console:
        order_id = (await place(system, "r-rej"))["order_id"]
        assert (await upload(system, order_id, "r-rej")).status_code == 201
        await eventually(
            lambda: console.store.line(order_id),
            lambda x: x is not None and x.status == "proof_submitted",
        )
        system.clock.advance(timedelta(seconds=1))
        await system.client.ok(
            "proof.review",
            {"order_id": order_id, "decision": "reject", "reviewer": "ops-2", "reason": "blurry"},
        )
        line = await eventually(
            lambda: console.store.line(order_id),
            lambda x: x is not None and x.status == "awaiting_proof",
        )
        assert (
            line is not None
            and line.rejection_reason == "blurry"
            and (line.reviewer or "").startswith("ops-2")
        )


def _handled() -> float:
    """Events the console handled (a resent event is applied again: ``ok``, not
    ``duplicate``; the log's own key keeps it from being written twice)."""
    total = 0.0
    for metric in prometheus.REGISTRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "xo_messages_total" and labels.get("service") == "operations":
                total += sample.value if labels.get("outcome") in ("ok", "duplicate") else 0
    return total


async def test_the_log_survives_a_restart_and_a_replay_of_every_event_once(system: System) -> None:
    async with running_console(system) as console:
        order_id = await paid_order(system, "r-replay")
        await eventually(lambda: _keys_of(console, order_id), lambda k: "credit.granted" in k)
        count = await console.store.count()
        entries = await console.store.recent(1000)
    # every event again, byte for byte, with its own message id, as its owner publishes it
    published = [(k, m) for k, _, m in system.client.events if k in OWNERS]
    assert len(published) >= 4
    async with running_console(system) as console:  # a new process on the same database
        assert await console.store.count() == count
        before = _handled()
        for key, message in published:
            sender = await system.client.sender(sorted(OWNERS[key])[0])
            await sender.events.publish(
                aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    content_type="application/json",
                    user_id=sender.user_id,
                ),
                routing_key=key,
            )

        async def replayed() -> float:
            return _handled() - before

        await eventually(replayed, lambda n: n >= len(published))
        assert await console.store.count() == count
        # beyond the inbox's retention the log's own key still keeps one entry per event
        assert not await console.store.append(entries[0])
        assert await console.store.count() == count
        # and the console goes on logging new events
        second = (await place(system, "r-replay-2"))["order_id"]
        await eventually(lambda: _keys_of(console, second), lambda k: "order.placed" in k)


async def test_a_log_kept_before_line_entries_is_copied_once_and_lines_fold_from_it(
    mongo_url: str,
) -> None:
    """A console upgraded over an existing log: at start every entry gets its line
    copies (an entry naming two lines, both), once; a line then folds from its own
    entries, and the timeline still finds each entry once."""
    client = connect(mongo_url)
    name = f"console_{uuid4().hex[:10]}"
    try:
        store = ConsoleStore(client[name])
        at = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)

        def logged(key: str, body: dict[str, str], message_id: str, second: int) -> LogEntry:
            moment = at + timedelta(seconds=second)
            return entry_of(
                key,
                {**body, "occurred_at": moment.isoformat()},
                message_id=message_id,
                publisher="orders",
                correlation_id=body["order_id"],
                received_at=moment,
            )

        placed = logged("order.placed", {"order_id": "o1", "reseller_id": "r"}, "m1", 0)
        upgraded = logged("plan.upgraded", {"order_id": "o2", "previous_order_id": "o1"}, "m2", 1)
        assert upgraded.order_ids == ["o2", "o1"]
        for entry in (placed, upgraded):  # as the console wrote them before line_entries
            await store.log.insert_one(entry.model_dump(by_alias=True))
        assert await store.line_log("o1") == []
        await store.create_indexes()
        await store.create_indexes()  # a second start copies nothing again
        assert [e.id for e in await store.line_log("o1")] == ["m1", "m2"]
        assert [e.id for e in await store.line_log("o2")] == ["m2"]
        assert await store.line_entries.count_documents({}) == 3
        assert [e.id for e in await store.timeline("o1")] == ["m1", "m2"]
        assert not await store.append(placed)  # a redelivery: no second entry anywhere
        assert await store.line_entries.count_documents({}) == 3
        line = await store.refresh_line("o1")
        assert line is not None and line.reseller_id == "r"
    finally:
        await client.drop_database(name)
        await client.close()


async def test_events_arriving_together_are_written_as_one_group_commit(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ConsoleStore.record``: 40 events of 8 lines recorded at once take two inserts and
    one fold per line (read and write) per commit, not five store commands each; every
    entry is logged once and each line folds from all its entries. A failed commit fails
    every entry in it; recorded again (their redeliveries), each is logged once. An id
    logged for another event writes nothing."""
    log = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[log]
    )
    name = f"console_{uuid4().hex[:10]}"
    try:
        store = ConsoleStore(client[name])
        await store.create_indexes()
        at = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
        entries = [
            entry_of(
                "order.placed",
                {"order_id": f"o{n % 8}", "reseller_id": "r", "occurred_at": at.isoformat()},
                message_id=f"m{n}",
                publisher="orders",
                correlation_id=f"o{n % 8}",
                received_at=at + timedelta(seconds=n),
            )
            for n in range(40)
        ]
        log.sent.clear()
        await asyncio.gather(*(store.record(entry) for entry in entries))
        commits = log.sent.count(("insert", "event_log"))
        assert 1 <= commits <= 2, log.sent  # the first alone, then all the others
        assert len(log.sent) <= commits * 2 + 2 * 2 * 8, log.sent
        assert await store.count() == 40
        assert await store.line_entries.count_documents({}) == 40
        for n in range(8):
            line = await store.line(f"o{n}")
            assert line is not None and line.events == 5

        async def store_down(_: object) -> list[bool]:
            raise ConnectionError("store down")

        monkeypatch.setattr(store, "append_all", store_down)
        again = [
            entries[0],
            entries[1],
            *[entries[2].model_copy(update={"id": f"x{n}"}) for n in range(3)],
        ]
        failed = await asyncio.gather(*(store.record(e) for e in again), return_exceptions=True)
        assert all(isinstance(outcome, ConnectionError) for outcome in failed), failed
        monkeypatch.undo()
        await asyncio.gather(*(store.record(e) for e in again))
        assert await store.count() == 43  # the redeliveries of m0 and m1 are not logged twice

        # an id logged for another event: refused (the handler raises MessageIdReused),
        # nothing of it written, while the redelivery in the same commit is fine
        forged = entries[3].model_copy(update={"order_ids": ["o-other"], "body": {"x": 1}})
        outcomes = await asyncio.gather(store.record(forged), store.record(entries[3]))
        assert list(outcomes) == [
            Appended(new=False, reused_by="order.placed"),
            Appended(new=False),
        ]
        assert await store.count() == 43
        assert await store.line_log("o-other") == [] and await store.line("o-other") is None
    finally:
        await client.drop_database(name)
        await client.close()
