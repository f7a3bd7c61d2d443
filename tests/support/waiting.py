"""Waiting for what arrives asynchronously (events, the state they change), with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 15
) -> T:
    """Poll ``probe`` until ``done`` holds (messages arrive asynchronously), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {value!r}")
        await asyncio.sleep(0.05)
