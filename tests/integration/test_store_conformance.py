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
from shared.runtime.store import Aggregate, Document, DocumentStore, connect

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
    """The pattern behind every aggregate: 50 racing increments, none lost, none doubled."""
    store = counters(db)
    await store.insert(Counter(id="race"))
    saved = await asyncio.gather(
        *[store.mutate("race", bump, message_id=f"m{i}") for i in range(50)]
    )
    assert sorted(s.decision or 0 for s in saved) == list(range(1, 51))  # each saw its own
    stored = await store.get("race")
    assert stored is not None
    assert stored.value == 50
    assert sorted(i["n"] for i in stored.items) == list(range(1, 51))  # arrays stored whole
    assert stored.version == 51


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


async def test_gridfs_keeps_bytes_and_metadata(db: AsyncDatabase[Document]) -> None:
    bucket = AsyncGridFSBucket(db, bucket_name="proofs")
    content = b"%PDF-1.7\n" + bytes(range(256)) * 1000
    file_id = await bucket.upload_from_stream("p.pdf", content, metadata={"sha256": "abc"})
    stream = await bucket.open_download_stream(file_id)
    assert await stream.read() == content
    await bucket.delete(file_id)
    with pytest.raises(NoFile):
        await bucket.open_download_stream(file_id)
