"""A clock tests move by hand (test-only: the product runs on ``SystemClock``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.basics.clock import utc_ms


class FixedClock:
    """A clock tests move by hand, so that no test sleeps to see time pass."""

    def __init__(self, start: datetime) -> None:
        self._now = utc_ms(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now = utc_ms(self._now + delta)
