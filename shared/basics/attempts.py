"""What every attempt limit counts in (registration, sign-in, password reset): one source
per address, fixed windows from the epoch. Pure, so the licensing domain and the web
faces share one definition of "the same source" and "the same window"."""

from __future__ import annotations

import ipaddress
import math
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_index(now: datetime, window: timedelta) -> int:
    """Fixed windows of ``window`` counted from the epoch."""
    return (now - EPOCH) // window


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


def wait_if_over(count: int, *, limit: int, now: datetime, window: timedelta) -> int | None:
    """``None`` if the ``count``-th attempt of this window is within ``limit``, else the
    seconds until the next window opens (``Retry-After``)."""
    if count <= limit:
        return None
    window_end = EPOCH + window * (window_index(now, window) + 1)
    return max(1, math.ceil((window_end - now).total_seconds()))
