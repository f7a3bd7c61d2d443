"""A real sale message dead-lettered for a real reason: credits is down for longer than
orders retries ``order.place`` (console tests: the CLI's ``dlq`` and the dead letters page).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.runtime.settings import Settings
from tests.support.system import System

#: Orders gives up on ``order.place`` within seconds: an unanswered call times out after
#: 2 s, retries wait 0.2 s then 0.4 s, 1 s of retries in all (four attempts).
FAST_RETRIES: dict[str, Any] = {
    "rpc_timeout_seconds": 2.0,
    "retry_delays_seconds": [0.2, 0.4],
    "retry_total_seconds": 1.0,
}


def quick_to_give_up(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST_RETRIES)


async def kept_dead_letters(
    system: System, service: str, *, count: int = 1, timeout: float = 30
) -> list[dict[str, Any]]:
    """``deadletter.list`` (as operations) until ``service`` keeps ``count`` dead letters."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await system.client.ok("deadletter.list", {"service": service})
        letters: list[dict[str, Any]] = answer["dead_letters"]
        if len(letters) >= count:
            return letters
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{service} kept {len(letters)} dead letters, not {count}")
        await asyncio.sleep(0.2)


async def placement_dead_lettered_while_credits_is_down(system: System, reseller: str) -> str:
    """Send ``order.place`` (no reply asked: a storefront that moved on) while credits is
    stopped; orders' ``credit.reserve`` calls go unanswered until its retries are over and
    it dead-letters the placement (``retries_exhausted``). Credits is started again before
    this returns; the message id of the dead placement is returned."""
    async with system.stopped("credits"):
        message_id = await system.client.send(
            "order.place",
            {
                "reseller_id": reseller,
                "space": "reseller",
                "edition": "enterprise",
                "billing": "annual",
            },
        )
        [kept] = await kept_dead_letters(system, "orders")
        assert kept["message_id"] == message_id, kept
        assert kept["reason"].startswith("retries_exhausted"), kept
    return message_id
