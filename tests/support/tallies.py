"""The smallest aggregate, for the runtime's own tests (messaging, read-ahead): a count."""

from __future__ import annotations

from shared.runtime.store import Aggregate


class Tally(Aggregate):
    count: int = 0

    @staticmethod
    def bump(tally: Tally) -> int:
        tally.count += 1
        return tally.count
