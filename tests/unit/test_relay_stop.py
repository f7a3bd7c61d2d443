"""A stopping service cancels its outbox relay's loop (``Runtime.stop``) and waits for it:
the loop must end, even when the cancel comes as a save wakes it up.

On Python 3.11, ``asyncio.wait_for`` returns the finished wait instead of raising when
the cancellation and the wake-up meet; the relay, waiting that way, went on looping and
a stop waited forever (the C5 race test hung at its replica's stop)."""

from __future__ import annotations

import asyncio

from shared.runtime.outbox import OutboxRelay
from shared.runtime.store import OutboxEntry


async def _no_publication(_: OutboxEntry) -> None:
    raise AssertionError("nothing is watched: nothing to publish")


async def test_the_relay_loop_ends_when_cancelled_as_a_save_wakes_it() -> None:
    still_running = 0
    for turns_between in range(4):  # the cancel 0..3 loop turns after the wake-up
        for _ in range(25):
            relay = OutboxRelay(_no_publication, poll_seconds=30)
            loop = asyncio.create_task(relay.run())
            for _ in range(3):
                await asyncio.sleep(0)  # the loop is waiting for a wake-up or its poll
            relay.wake()
            for _ in range(turns_between):
                await asyncio.sleep(0)
            loop.cancel()
            done, _ = await asyncio.wait([loop], timeout=0.2)
            if not done:
                still_running += 1
                loop.cancel()
                await asyncio.wait([loop], timeout=1)
            else:
                assert loop.cancelled()
    assert still_running == 0
