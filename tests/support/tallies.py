"""The smallest aggregate, for the runtime's own tests (messaging, read-ahead, the outbox
relay): a count; and a publish function that records what the relay published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.runtime.store import Aggregate, OutboxEntry


class Tally(Aggregate):
    count: int = 0

    @staticmethod
    def bump(tally: Tally) -> int:
        tally.count += 1
        return tally.count


class Recorder:
    """A publish function: records what it published; fails what ``failing`` says."""

    def __init__(self, failing: Callable[[OutboxEntry], bool] = lambda _: False) -> None:
        self.failing = failing
        self.published: list[str] = []
        self.attempted: list[str] = []

    async def __call__(self, entry: OutboxEntry) -> None:
        self.attempted.append(entry.event_id)
        await asyncio.sleep(0)  # let the other relay run: a real publish awaits the broker
        if self.failing(entry):
            raise ConnectionError(f"{entry.event_id}: nacked")
        self.published.append(entry.event_id)
