"""Reading a handler's aggregate beside the inbox's claim (``Route.read_ahead``), against
the real store server: the handler's first load takes that read (one store round trip
fewer per message), never one this process has written past since."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shared.basics.errors import ErrorCode, Refused
from shared.contracts.orders import OrderCancelled
from shared.runtime.outbox import OutboxRelay
from shared.runtime.store import (
    DocumentStore,
    OutboxEntry,
    reading_ahead,
)
from tests.support.commands import CommandLog, logged_database
from tests.support.tallies import Tally

pytestmark = pytest.mark.integration


def counted(tally: Tally) -> int:
    """``Tally.bump``, recording an event (any will do) for the relay to publish."""
    tally.record(
        OrderCancelled,
        at=datetime(2026, 3, 10, tzinfo=UTC),
        order_id=tally.id,
        reseller_id="r",
        correlation_id=tally.id,
    )
    return Tally.bump(tally)


def _unknown(key: str) -> Refused:
    return Refused(ErrorCode.NOT_FOUND, f"no tally {key}")


@pytest.fixture
async def commands_and_tallies(
    mongo_url: str,
) -> AsyncIterator[tuple[CommandLog, DocumentStore[Tally]]]:
    async with logged_database(mongo_url, "read_ahead") as (log, db):
        yield log, DocumentStore(db["tallies"], Tally, unknown=_unknown)


async def test_the_first_load_of_a_delivery_takes_the_read_made_ahead_and_only_the_first(
    commands_and_tallies: tuple[CommandLog, DocumentStore[Tally]],
) -> None:
    log, tallies = commands_and_tallies
    await tallies.mutate("t1", Tally.bump, message_id="m1", create=Tally.new)
    with reading_ahead():
        await tallies.read_ahead("t1")
        await tallies.read_ahead("t-none")  # absent is an answer too
        log.sent.clear()

        saved = await tallies.mutate("t1", Tally.bump, message_id="m2")
        assert await tallies.get("t-none") is None

        assert saved.aggregate.count == 2
        assert [name for name, _ in log.sent] == ["update"]  # the save only, no find
        log.sent.clear()
        assert (await tallies.load("t1")).count == 2  # served once: this one reads
        assert [name for name, _ in log.sent] == ["find"]


async def test_a_document_this_process_wrote_after_reading_it_ahead_is_read_again(
    commands_and_tallies: tuple[CommandLog, DocumentStore[Tally]],
) -> None:
    log, tallies = commands_and_tallies
    await tallies.mutate("t1", Tally.bump, message_id="m1", create=Tally.new)
    with reading_ahead():
        await tallies.read_ahead("t1")
        await tallies.read_ahead("t2")  # absent when read ahead...
        await tallies.mutate("t1", Tally.bump, message_id="m-other")  # another delivery's save
        await tallies.mutate("t2", Tally.bump, message_id="m-other", create=Tally.new)  # ...created
        log.sent.clear()

        assert (await tallies.load("t1")).count == 2
        assert (await tallies.load("t2")).count == 1
        assert [name for name, _ in log.sent] == ["find", "find"]  # neither read was used


async def test_a_check_loaded_ahead_serves_the_change_after_it_with_one_read(
    commands_and_tallies: tuple[CommandLog, DocumentStore[Tally]],
) -> None:
    """``load_ahead`` (a proof upload checks its line, reads the body, then saves): one find
    for both; the read serves one load only; unknown is refused."""
    log, tallies = commands_and_tallies
    await tallies.mutate("t1", Tally.bump, message_id="m1", create=Tally.new)
    with reading_ahead():
        log.sent.clear()
        assert (await tallies.load_ahead("t1")).count == 1
        assert (await tallies.mutate("t1", Tally.bump, message_id="m2")).aggregate.count == 2
        assert [name for name, _ in log.sent] == ["find", "update"]
    with reading_ahead():
        await tallies.load_ahead("t1")
        await tallies.mutate("t1", Tally.bump, message_id="m-between")  # takes the read
        log.sent.clear()
        assert (await tallies.mutate("t1", Tally.bump, message_id="m3")).aggregate.count == 4
        assert [name for name, _ in log.sent] == ["find", "update"]  # reads for itself
        with pytest.raises(Refused) as refused:
            await tallies.load_ahead("t-none")
    assert refused.value.message == "no tally t-none"


async def test_outside_a_delivery_a_read_ahead_is_only_a_read(
    commands_and_tallies: tuple[CommandLog, DocumentStore[Tally]],
) -> None:
    log, tallies = commands_and_tallies
    assert await tallies.find_ahead("t1") is None
    await tallies.mutate("t1", Tally.bump, message_id="m1", create=Tally.new)
    assert (await tallies.find_ahead("t1") or {})["count"] == 1
    with reading_ahead():
        assert (await tallies.load("t1")).count == 1
    assert [name for name, _ in log.sent] == ["find", "find", "insert", "find", "find"]


async def test_nothing_is_read_ahead_while_this_process_publishes_the_last_save(
    commands_and_tallies: tuple[CommandLog, DocumentStore[Tally]],
) -> None:
    """Its published entries are still to be removed: a read now would be old."""
    log, plain = commands_and_tallies
    confirmed = asyncio.Event()

    async def publish(_: OutboxEntry) -> None:
        await confirmed.wait()  # the broker's confirm is slow

    relay = OutboxRelay(publish, name="saver")
    await relay.watch([plain.collection])
    tallies = DocumentStore(plain.collection, Tally, unknown=_unknown, relay=relay)
    await tallies.mutate("t1", counted, message_id="m1", create=Tally.new)
    with reading_ahead():
        log.sent.clear()
        await tallies.read_ahead("t1")
        assert log.sent == []
        confirmed.set()
        await relay.finish()
        await tallies.read_ahead("t1")
        assert [name for name, _ in log.sent] == ["update", "find"]  # the removal, then the read
