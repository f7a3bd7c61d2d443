"""Store conformance: exactly the storage patterns the product relies on (DESIGN.md, Storage).

Runs against whichever server is configured (the embedded nx-27017 by default, or
``MONGODB_URL``), so an upgrade of the embedded server or a switch to MongoDB is
checked by the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.basics.clock import utc_ms
from shared.basics.errors import Conflict, ErrorCode, Refused
from shared.contracts.orders import OrderCancelled
from shared.runtime import metrics
from shared.runtime.outbox import OutboxRelay
from shared.runtime.store import (
    Aggregate,
    Document,
    DocumentStore,
    OutboxEntry,
    connect,
)
from tests.support.clock import FixedClock

pytestmark = pytest.mark.integration


class Counter(Aggregate):
    value: int = 0
    items: list[dict[str, int]] = []


def unknown_counter(counter_id: str) -> Refused:
    return Refused(ErrorCode.UNKNOWN_ORDER, f"no counter {counter_id}")


def counters(db: AsyncDatabase[Document]) -> DocumentStore[Counter]:
    return DocumentStore(db["counters"], Counter, unknown=unknown_counter)


def bump(c: Counter) -> int:
    c.value += 1
    c.items = [*c.items, {"n": c.value}]
    return c.value


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client = connect(mongo_url)
    name = f"conformance_{uuid4().hex[:10]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def test_versioned_replace_lets_exactly_one_of_two_stale_writers_win(
    db: AsyncDatabase[Document],
) -> None:
    store = counters(db)
    assert await store.insert(Counter(id="c", value=1))
    first, second = await store.get("c"), await store.get("c")
    assert first is not None and second is not None
    first.value, second.value = 2, 3
    await store.save(first)
    with pytest.raises(Conflict):
        await store.save(second)
    stored = await store.get("c")
    assert stored is not None and (stored.value, stored.version) == (2, 2)


async def test_insert_of_an_existing_id_reports_the_replay(db: AsyncDatabase[Document]) -> None:
    store = counters(db)
    assert await store.insert(Counter(id="x"))
    assert not await store.insert(Counter(id="x", value=9))
    stored = await store.get("x")
    assert stored is not None and stored.value == 0


async def test_50_concurrent_optimistic_writers_each_apply_once(
    db: AsyncDatabase[Document],
) -> None:
    """The pattern behind every aggregate: 50 racing increments, none lost, none doubled.
    Five stores stand for five processes (within one, changes of an aggregate take turns;
    between them only the version check keeps order)."""
    stores = [counters(db) for _ in range(5)]
    await stores[0].insert(Counter(id="race"))
    saved = await asyncio.gather(
        *[stores[i % 5].mutate("race", bump, message_id=f"m{i}") for i in range(50)]
    )
    store = stores[0]
    assert sorted(s.decision or 0 for s in saved) == list(range(1, 51))  # each saw its own
    stored = await store.get("race")
    assert stored is not None
    assert stored.value == 50
    assert sorted(i["n"] for i in stored.items) == list(range(1, 51))  # arrays stored whole
    assert stored.version == 51


async def test_changes_of_one_aggregate_in_one_process_take_turns_without_conflicts(
    db: AsyncDatabase[Document],
) -> None:
    """Concurrent messages for one aggregate in one process (a credit account) wait for
    each other instead of losing the version check and reloading again and again."""
    store = counters(db)
    await store.insert(Counter(id="turns"))
    conflicts = metrics.SAVE_CONFLICTS.labels("Counter")
    before = conflicts._value.get()
    saved = await asyncio.gather(
        *[store.mutate("turns", bump, message_id=f"m{i}") for i in range(30)]
    )
    assert sorted(s.decision or 0 for s in saved) == list(range(1, 31))
    assert conflicts._value.get() == before
    assert store._writing == {}  # no lock left behind


async def test_a_missing_aggregate_is_the_stores_unknown_unless_the_change_creates_it(
    db: AsyncDatabase[Document],
) -> None:
    store = counters(db)
    with pytest.raises(Refused) as unknown:
        await store.load("nobody")
    assert unknown.value.message == "no counter nobody"
    with pytest.raises(Refused):
        await store.mutate("nobody", bump, message_id="m1")
    assert await store.get("nobody") is None
    created = await store.mutate("new", bump, message_id="m1", create=Counter.new)
    assert (created.decision, created.replayed, created.aggregate.version) == (1, False, 1)
    again = await store.mutate("new", bump, message_id="m1", create=Counter.new)
    assert (again.decision, again.replayed, again.aggregate.value) == (None, True, 1)
    assert (await store.load("new")).value == 1


async def test_unique_index_raises_duplicate_key(db: AsyncDatabase[Document]) -> None:
    await db["q"].create_index("request_message_id", unique=True)
    await db["q"].insert_one({"_id": "a", "request_message_id": "m1"})
    with pytest.raises(DuplicateKeyError):
        await db["q"].insert_one({"_id": "b", "request_message_id": "m1"})


async def test_inc_upsert_counter_is_atomic_under_concurrency(db: AsyncDatabase[Document]) -> None:
    async def next_value() -> int:
        doc = await db["seq"].find_one_and_update(
            {"_id": "quote-2026"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return int(doc["value"])

    values = await asyncio.gather(*[next_value() for _ in range(30)])
    assert sorted(values) == list(range(1, 31))


async def test_boolean_flag_query_and_aware_datetimes_round_trip(
    db: AsyncDatabase[Document],
) -> None:
    moment = utc_ms(datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC))
    await db["o"].create_index("outbox_pending")  # the outbox relay's scan (OutboxRelay.watch)
    await db["o"].insert_many(
        [
            {"_id": 1, "outbox_pending": True, "at": moment},
            {"_id": 2, "outbox_pending": False, "at": moment},
        ]
    )
    found = [d async for d in db["o"].find({"outbox_pending": True})]
    assert [d["_id"] for d in found] == [1]
    assert found[0]["at"] == moment and found[0]["at"].tzinfo is not None
    in_range = await db["o"].count_documents(
        {
            "at": {
                "$gte": moment,
                "$lt": moment.replace(second=0, minute=0, hour=0, day=29, month=2, year=2028),
            }
        }
    )
    assert in_range == 2


NOW_MS = 1_790_000_000_000


async def test_a_lease_is_taken_by_compare_and_set_by_exactly_one_claimer(
    db: AsyncDatabase[Document],
) -> None:
    """The outbox relay's claim (``OutboxRelay.candidates`` and ``claim``): read the pending
    documents on the indexed top-level flag, compare their leases (epoch milliseconds; 0:
    free; missing: saved before leases), then ``find_one_and_update`` each free one on its
    id and the lease as read. No ``$or``, no null, no datetime in ``$set``: the embedded
    server scans every document for ``$or``, reads ``{a, $or: [b, c]}`` as
    ``(a and b) or c`` in ``find_one_and_update``, and stores a datetime given to ``$set``
    as a string."""
    leases = db["leases"]
    await leases.create_index("outbox_pending")
    await leases.insert_many(
        [
            {"_id": "free", "outbox_pending": True, "outbox_claimed_until_ms": 0, "version": 1},
            {"_id": "saved-before-leases", "outbox_pending": True, "version": 1},
            {
                "_id": "expired",
                "outbox_pending": True,
                "outbox_claimed_until_ms": NOW_MS - 1,
                "version": 1,
            },
            {
                "_id": "held",
                "outbox_pending": True,
                "outbox_claimed_until_ms": NOW_MS + 1,
                "version": 1,
            },
            {"_id": "published", "outbox_pending": False, "outbox_claimed_until_ms": 0},
        ]
    )
    pending = [
        doc
        async for doc in leases.find(
            {"outbox_pending": True}, {"_id": 1, "outbox_claimed_until_ms": 1}
        )
    ]
    assert sorted(d["_id"] for d in pending) == [
        "expired",
        "free",
        "held",
        "saved-before-leases",
    ]
    free = [d for d in pending if d.get("outbox_claimed_until_ms", 0) <= NOW_MS]

    async def claim(relay: str, seen: Document) -> Document | None:
        lease = seen.get("outbox_claimed_until_ms")
        return await leases.find_one_and_update(
            {
                "_id": seen["_id"],
                "outbox_pending": True,
                "outbox_claimed_until_ms": {"$exists": False} if lease is None else lease,
            },
            {
                "$set": {"outbox_claimed_until_ms": NOW_MS + 30_000, "outbox_claimed_by": relay},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )

    claims = await asyncio.gather(*(claim(f"relay-{n}", seen) for seen in free for n in range(4)))
    taken = [doc for doc in claims if doc is not None]
    assert sorted(doc["_id"] for doc in taken) == ["expired", "free", "saved-before-leases"]
    assert all(doc["version"] == 2 for doc in taken)  # a racing save will conflict
    assert all(doc["outbox_claimed_until_ms"] == NOW_MS + 30_000 for doc in taken)
    assert await claim("late", free[0]) is None  # a stale read claims nothing
    stored = await leases.find_one({"_id": "free"})
    assert stored is not None and isinstance(stored["outbox_claimed_until_ms"], int)


def bump_and_tell(counter: Counter) -> int:
    counter.value += 1
    counter.record(
        OrderCancelled,
        at=datetime(2026, 3, 1, tzinfo=UTC),
        order_id=f"o{counter.value}",
        reseller_id="r",
        correlation_id=None,
    )
    return counter.value


async def test_a_save_racing_a_relays_claim_reloads_and_keeps_the_claim(
    db: AsyncDatabase[Document],
) -> None:
    """A stale writer's save conflicts with the claim (which bumps the version); the retried
    change keeps the claim: a save never hands a document being published to another relay."""
    store = counters(db)
    await store.mutate("c", bump_and_tell, message_id="m1", create=Counter.new)
    stale = await store.get("c")
    assert stale is not None

    async def publish(_: OutboxEntry) -> None:
        raise AssertionError("only claimed here")

    relay = OutboxRelay(publish, clock=FixedClock(datetime.now(UTC)), name="relay-1")
    claimed = await relay.claim(store.collection)
    assert claimed is not None
    stale.value = 99
    with pytest.raises(Conflict):
        await store.save(stale)
    saved = await store.mutate("c", bump_and_tell, message_id="m2")
    assert saved.decision == 2
    stored = await store.collection.find_one({"_id": "c"})
    assert stored is not None
    assert stored["outbox_claimed_by"] == "relay-1"
    assert stored["outbox_claimed_until_ms"] == claimed["outbox_claimed_until_ms"]
    assert len(stored["outbox"]) == 2 and bool(stored["outbox_pending"])


async def test_gridfs_keeps_bytes_and_metadata(db: AsyncDatabase[Document]) -> None:
    bucket = AsyncGridFSBucket(db, bucket_name="proofs")
    content = b"%PDF-1.7\n" + bytes(range(256)) * 1000
    file_id = await bucket.upload_from_stream("p.pdf", content, metadata={"sha256": "abc"})
    stream = await bucket.open_download_stream(file_id)
    assert await stream.read() == content
    await bucket.delete(file_id)
    with pytest.raises(NoFile):
        await bucket.open_download_stream(file_id)


async def test_single_field_indexes_on_scalars_match_as_without_an_index(
    db: AsyncDatabase[Document],
) -> None:
    """What the services index: single scalar fields (ConsoleStore says why). Equality on an
    indexed scalar and a range after it find what they find without the index; an array
    field is matched by containment only where it is not indexed (the console's
    ``order_ids``: a line's entries are found through the scalar ``line``)."""
    plain, indexed = db["plain"], db["indexed"]
    docs = [
        {"_id": 1, "status": "awaiting_proof", "at": 5, "ids": ["o1"]},
        {"_id": 2, "status": "awaiting_proof", "at": 9, "ids": ["o1", "o2"]},
        {"_id": 3, "status": "paid", "at": 1, "ids": ["o3"]},
    ]
    await plain.insert_many(docs)
    await indexed.insert_many(docs)
    await indexed.create_index("status")
    for collection in (plain, indexed):
        found = collection.find({"status": "awaiting_proof", "at": {"$lte": 6}}, {"_id": 1})
        assert [doc["_id"] async for doc in found] == [1]
    contained = plain.find({"ids": "o1"}, {"_id": 1}).sort("_id", 1)
    assert [doc["_id"] async for doc in contained] == [1, 2]
