"""Registration attempts, limited over a sliding window (L2): the arithmetic. No I/O.

The counting itself is the store's (one ``$inc`` counter per key and fixed window, shared
by every replica); which window an attempt falls in and who counts as one source are
``shared.basics.attempts`` (the web faces' sign-in limits use the same); this module
says, from the counts, whether the attempt passes or how long to wait.

Two limits, in this order, so that nobody can lock a customer out:

1. per source: an attempt is counted for its source first; past the source's limit it is
   refused (429) and counted for nothing else: a source over its limit cannot use up the
   email's attempts;
2. per email: every attempt of a source under its limit is counted for the email, whatever
   its token; past the email's limit a wrong token is refused (429), but the right one
   registers (``registration.admit``): the email's limit only stops guessing, so wrong
   tokens sent from many sources cannot keep the customer out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from shared.basics.attempts import EPOCH
from shared.basics.errors import ErrorCode, RateLimited

MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class RegistrationLimits:
    """L2: registration attempts allowed per source and per email over a sliding window."""

    window: timedelta = timedelta(minutes=15)
    per_source: int = 20
    per_email: int = 10


def too_many_attempts(wait: int) -> RateLimited:
    """The one answer past either limit (429), with the seconds to wait (``Retry-After``)."""
    return RateLimited(
        ErrorCode.TOO_MANY_ATTEMPTS,
        "too many registration attempts; try again later",
        retry_after=wait,
    )


def retry_after(
    *, previous: int, current: int, limit: int, window: timedelta, now: datetime
) -> int | None:
    """Sliding-window counter: ``None`` if the attempt just counted is allowed, else the
    seconds until the next attempt would be.

    ``previous`` attempts in the last fixed window weigh by how much of it still lies in
    the sliding window; ``current`` includes the attempt being decided. Counting first
    and deciding on the count returned makes the limit exact across replicas. Exact
    arithmetic (milliseconds, fractions): the answer at a boundary is never a rounding.
    """
    length = window // MS
    elapsed = ((now - EPOCH) % window) // MS
    into = Fraction(elapsed, length)
    if previous * (1 - into) + current <= limit:
        return None
    room = limit - current - 1
    if room >= 0 and previous > 0:  # later in this window, once enough of `previous` slid out
        wait = (1 - Fraction(room, previous) - into) * length
    else:  # in the next window, once enough of this one slid out
        wait = (length - elapsed) + max(Fraction(0), 1 - Fraction(limit - 1, current)) * length
    return max(1, math.ceil(wait / 1000))
