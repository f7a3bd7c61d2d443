"""Attempt counters against the real store server: a sliding-window count is one store
command that returns this window's count and the previous one's (L2, registration)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.basics.attempts import window_index
from shared.runtime.attempts import AttemptCounters, sliding_id
from tests.support.commands import CommandLog, logged_database

pytestmark = pytest.mark.integration

WINDOW = timedelta(minutes=15)
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # the start of a window


@pytest.fixture
async def commands_and_counters(
    mongo_url: str,
) -> AsyncIterator[tuple[CommandLog, AttemptCounters]]:
    async with logged_database(mongo_url, "attempts") as (log, db):
        counters = AttemptCounters(db["registration_attempts"])
        await counters.create_indexes()
        yield log, counters


async def test_a_sliding_count_is_one_command_and_returns_both_windows(
    commands_and_counters: tuple[CommandLog, AttemptCounters],
) -> None:
    log, counters = commands_and_counters
    counted = []
    for minutes in (0, 1, 2, 16, 17, 31, 47):  # windows 0, 0, 0, 1, 1, 2, 3
        log.sent.clear()
        now = START + timedelta(minutes=minutes)
        counted.append(await counters.count_sliding("email:a@x.example", now=now, window=WINDOW))
        assert [name for name, _ in log.sent] == ["findAndModify"]
    assert counted == [(0, 1), (0, 2), (0, 3), (3, 1), (3, 2), (2, 1), (1, 1)]
    assert await counters.count_sliding("email:b@x.example", now=START, window=WINDOW) == (0, 1)
    doc = await counters.collection.find_one({"_id": sliding_id("email:a@x.example")})
    kept = [str(window_index(START + timedelta(minutes=m), WINDOW)) for m in (31, 47)]
    assert doc is not None
    assert sorted(doc["windows"]) == kept  # the windows before the previous one are gone


async def test_a_sliding_counter_is_purged_two_windows_after_its_last_count(
    commands_and_counters: tuple[CommandLog, AttemptCounters],
) -> None:
    _, counters = commands_and_counters
    await counters.count_sliding("source:192.0.2.1", now=START, window=WINDOW)
    assert await counters.purge(START + 2 * WINDOW - timedelta(seconds=1)) == 0
    assert await counters.purge(START + 2 * WINDOW) == 1
    assert await counters.collection.count_documents({}) == 0
