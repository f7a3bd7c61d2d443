"""Time: always timezone-aware UTC, truncated to the millisecond.

BSON dates keep milliseconds only; truncating at the source means a value read
back from MongoDB equals the value the domain decided with.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Protocol


def utc_ms(moment: datetime) -> datetime:
    """``moment`` as aware UTC truncated to milliseconds; naive input is refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time in xo-reseller is timezone-aware UTC")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Clock(Protocol):
    """What the domain and the periodic jobs ask for the time (injectable in tests)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utc_ms(datetime.now(UTC))


def add_months(start: datetime, months: int) -> datetime:
    """``start`` plus whole calendar months, clamped to the target month's last day
    (Jan 31 + 1 month = Feb 28/29): plan periods (O6) and credit validity (C1)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return start.replace(
        year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1])
    )
