"""The licence check's per-process cache: what a customer's appliances are entitled to,
read from the store at most ``LICENSE_CACHE_SECONDS`` ago.

Appliances check often and the answer rarely changes, so each process keeps the
``LicenceView`` of the customers whose appliances checked lately, by the customer key
that prefixes every appliance secret. What bounds the staleness:

- **Age.** An entry is served for at most ``ttl`` seconds counted from the moment the
  store read that made it *began* (its ``Ticket``), then read again. A document the read
  returned was current at some moment after that, so a change saved by another replica
  (a suspension, L8; a move, L5; a new plan, L1) is in every replica's answers to the
  requests that arrive ``ttl`` or more after it was saved.
- **This process's own saves** replace the customer's entry at once with the view of
  the customer as saved (``saved``, called for every customer ``DocumentStore.mutate``
  saves here): an appliance checking right after it registered, or after a suspension
  this process applied, is answered from memory with what was just written. A read that
  began before such a save may finish after it with the old document: ``put`` then drops
  it (its ticket's generation is no longer current), so it cannot outlive the save.
- **Time itself** is never cached: the entitlement is computed from the view at each
  request, so a plan's end or its grace's end is seen at once.
- **Size.** At most ``max_entries`` (least recently used first out): 100,000 appliances
  cannot grow a process. Misses are never cached, so unknown keys cannot push out
  known ones, and the handler fills only after the appliance's secret matched.

The secret itself is not cached: it is checked on every request, in constant time,
against the digest in the view (``LicenceView.secret_matches``).

**Signatures** are the other cost of a check (an Ed25519 signature and its JSON): the
answer signed for an appliance is kept with the customer's entry (``SignedAnswer``) and
handed out again while the entitlement computed now is the one it was signed for. So a
licence handed out says what would be signed now, and its own ``issued_at`` (and the
``valid_until`` derived from it) is honest: at most ``ttl`` seconds in the past.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.licensing.domain.customer import Customer
from services.licensing.domain.entitlement import Entitlement
from services.licensing.domain.licence_view import LicenceView
from shared.contracts.licensing import ApplianceLicense
from shared.runtime.store import DocumentStore

DEFAULT_SECONDS = 2.0
DEFAULT_ENTRIES = 10_000


@dataclass(frozen=True)
class SignedAnswer:
    """A licence check's answer, signed at ``issued_at`` for ``entitlement``."""

    entitlement: Entitlement
    issued_at: datetime
    answer: ApplianceLicense

    def still_says(self, entitlement: Entitlement, now: datetime, max_age: timedelta) -> bool:
        """Whether it may be handed out at ``now``: the entitlement computed now is the one
        it was signed for (status, reason, edition, plan and end), and it was issued at
        most ``max_age`` ago by the service's clock (never in its future)."""
        return (
            entitlement == self.entitlement
            and entitlement.plan == self.entitlement.plan
            and timedelta(0) <= now - self.issued_at <= max_age
        )


@dataclass(frozen=True)
class Ticket:
    """Taken just before a store read: when it began, and the cache's generation then."""

    generation: int
    taken_at: float  # on the cache's monotonic clock


@dataclass(frozen=True)
class _Entry:
    view: LicenceView
    expires_at: float  # on the cache's monotonic clock
    signed: dict[str, SignedAnswer] = field(default_factory=dict)  # by appliance id


class LicenceCache:
    """Customer key -> ``LicenceView``, each at most ``ttl`` seconds old, LRU-bounded.

    ``now`` is a monotonic clock in seconds (``time.monotonic``; tests pass a fake). A
    ``ttl`` of 0 turns the cache off: every check reads the store."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_SECONDS,
        max_entries: int = DEFAULT_ENTRIES,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("a licence cache needs ttl >= 0 and max_entries >= 1")
        self.ttl = ttl
        self._max_age = timedelta(seconds=ttl)
        self.max_entries = max_entries
        self._now = now
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def ticket(self) -> Ticket:
        """Take it just before reading the store; give it back to ``put``."""
        return Ticket(self._generation, self._now())

    def get(self, key: str) -> LicenceView | None:
        """The view of ``key`` if it was read less than ``ttl`` seconds ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._now() >= entry.expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.view

    def signed(
        self, key: str, appliance_id: str, entitlement: Entitlement, now: datetime
    ) -> ApplianceLicense | None:
        """The answer signed for this appliance from the cached view of ``key``, if it
        still says ``entitlement`` and is at most ``ttl`` old (``SignedAnswer``)."""
        entry = self._entries.get(key)
        kept = None if entry is None else entry.signed.get(appliance_id)
        if kept is None or not kept.still_says(entitlement, now, self._max_age):
            return None
        return kept.answer

    def keep_signed(
        self,
        key: str,
        appliance_id: str,
        entitlement: Entitlement,
        now: datetime,
        answer: ApplianceLicense,
    ) -> None:
        """Keep ``answer`` (signed at ``now`` for ``entitlement``) with the view of ``key``,
        for as long as that view is kept; nothing if the view is not (or no longer) cached."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.signed[appliance_id] = SignedAnswer(entitlement, now, answer)

    def put(self, key: str, view: LicenceView, *, ticket: Ticket) -> None:
        """Keep ``view``, read from the store after ``ticket`` was taken, until ``ttl``
        after that; dropped if this process saved a customer since (the read may predate
        that save) or if the read outlasted ``ttl``."""
        expires_at = ticket.taken_at + self.ttl
        if ticket.generation != self._generation or self._now() >= expires_at:
            return
        self._entries[key] = _Entry(view, expires_at)
        self._entries.move_to_end(key)
        self._drop_expired_or_least_used()

    def _drop_expired_or_least_used(self) -> None:
        """Past ``max_entries``, the least recently used go; expired ones go from the
        same end as they are met, so that a spread of appliances checked once each does
        not keep ``max_entries`` dead entries for the collector to walk."""
        now = self._now()
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= self.max_entries and oldest.expires_at > now:
                return
            del self._entries[key]

    def follow(self, customers: DocumentStore[Customer]) -> None:
        """Keep each customer this process saves through ``customers``, as saved."""
        customers.on_change(self.saved)

    def saved(self, customer: Customer) -> None:
        """This process saved ``customer``: its entry is now the view of what was written
        (current now, so kept ``ttl`` from now), and a read begun before is dropped."""
        self.forget(customer.key)
        if self.ttl > 0:
            self._entries[customer.key] = _Entry(LicenceView.of(customer), self._now() + self.ttl)
            self._drop_expired_or_least_used()

    def forget(self, key: str) -> None:
        """The customer of ``key`` changed: its next check reads the store."""
        self._generation += 1
        self._entries.pop(key, None)
