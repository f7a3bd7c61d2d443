"""Registration attempts, limited over a sliding window (L2): the arithmetic. No I/O.

The counting itself is the store's (one ``$inc`` counter per key and fixed window, shared
by every replica); this module says which window an attempt falls in, who counts as one
source, and, from the counts, whether the attempt passes or how long to wait.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def source_key(host: str) -> str:
    """Who is counted as one source: an IPv4 address, or an IPv6 /64 (one site's prefix:
    an attacker rotating addresses inside it is still one source)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:128]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def window_index(now: datetime, window: timedelta) -> int:
    """Fixed windows of ``window`` counted from the epoch; the limit slides over two."""
    return (now - EPOCH) // window


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
