"""The licence check's cache (services/licensing/licence_cache.py), with a fake monotonic
clock: how stale an answer may be (``LICENSE_CACHE_SECONDS``), that this process's own
saves replace their customer's entry at once, the LRU bound, and that the secret is
checked on every request.

Two ``LicensingDeps`` over one set of documents, each with its own cache, play two
replicas: what one saves, the other sees only once its entry is older than the bound.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.licensing.domain.customer import Customer
from services.licensing.domain.licence_view import LicenceView
from services.licensing.domain.policy import Policy
from services.licensing.handlers import (
    LicensingDeps,
    appliance_licence,
    on_plan_bound,
    register_appliance,
    suspend_licence,
)
from services.licensing.licence_cache import LicenceCache
from services.licensing.signing import LicenceSigner, generate_private_key_b64
from shared.basics.catalogue import load_catalogue
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.licensing import CustomerNotification, RegisterAppliance, SuspendLicense
from shared.contracts.orders import PlanBound
from shared.runtime.messaging import Delivery
from tests.support.clock import FixedClock
from tests.support.fakes import MemoryLicensingStore
from tests.support.licensing import verify_offline

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
EMAIL = "jane@customer.example.com"
TTL = 2.0
POLICY = Policy(catalogue=load_catalogue())
SIGNER = LicenceSigner.from_base64(generate_private_key_b64())


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


def view(email: str, key: str) -> LicenceView:
    return LicenceView.model_validate({"_id": email, "key": key})


def customer(email: str, key: str, *, suspended: bool = False) -> Customer:
    return Customer(id=email, key=key, suspended=suspended)


# --- the cache on its own -----------------------------------------------------------------


def test_an_entry_is_served_until_the_bound_and_never_at_it() -> None:
    ticks = Ticks()
    cache = LicenceCache(ttl=TTL, now=ticks)
    cache.put("k1", view(EMAIL, "k1"), ticket=cache.ticket())

    ticks.advance(TTL - 0.001)
    assert cache.get("k1") is not None
    ticks.advance(0.001)
    assert cache.get("k1") is None  # read again from the store
    assert len(cache) == 0


def test_the_bound_counts_from_before_the_read() -> None:
    ticks = Ticks()
    cache = LicenceCache(ttl=TTL, now=ticks)
    ticket = cache.ticket()  # the read begins...
    ticks.advance(0.5)  # ...and takes half a second
    cache.put("k1", view(EMAIL, "k1"), ticket=ticket)

    ticks.advance(TTL - 0.5)  # TTL after the read began: gone
    assert cache.get("k1") is None

    slow = cache.ticket()
    ticks.advance(TTL)  # a read that outlasted the bound is not kept at all
    cache.put("k1", view(EMAIL, "k1"), ticket=slow)
    assert len(cache) == 0


def test_a_hit_does_not_extend_the_bound() -> None:
    ticks = Ticks()
    cache = LicenceCache(ttl=TTL, now=ticks)
    cache.put("k1", view(EMAIL, "k1"), ticket=cache.ticket())
    for _ in range(4):
        ticks.advance(TTL / 4)
        cache.get("k1")
    assert cache.get("k1") is None  # TTL after the read, however often it was served


def test_forget_drops_the_entry_and_a_read_begun_before_it() -> None:
    cache = LicenceCache(ttl=TTL, now=Ticks())
    cache.put("k1", view(EMAIL, "k1"), ticket=cache.ticket())
    before_save = cache.ticket()  # a check starts reading the store...

    cache.forget("k1")  # ...this process saves the customer meanwhile
    cache.put("k1", view(EMAIL, "k1"), ticket=before_save)  # the read ends: old data

    assert cache.get("k1") is None
    cache.put("k1", view(EMAIL, "k1"), ticket=cache.ticket())  # a read after the save
    assert cache.get("k1") is not None


def test_a_save_replaces_the_entry_and_a_read_begun_before_it_cannot_undo_that() -> None:
    ticks = Ticks()
    cache = LicenceCache(ttl=TTL, now=ticks)
    old = view(EMAIL, "k1")
    cache.put("k1", old, ticket=cache.ticket())
    before_save = cache.ticket()  # a check starts reading the store...
    ticks.advance(TTL / 2)

    cache.saved(customer(EMAIL, "k1", suspended=True))  # ...this process saves meanwhile
    cache.put("k1", old, ticket=before_save)  # the read ends with the old document

    kept = cache.get("k1")
    assert kept is not None and kept.suspended  # what was saved, not what the read saw
    ticks.advance(TTL - 0.01)  # kept TTL from the save, not from the older read
    assert cache.get("k1") is not None
    ticks.advance(0.01)
    assert cache.get("k1") is None


def test_at_most_max_entries_least_recently_used_out() -> None:
    cache = LicenceCache(ttl=TTL, max_entries=3, now=Ticks())
    for key in ("a", "b", "c"):
        cache.put(key, view(f"{key}@x.example", key), ticket=cache.ticket())
    cache.get("a")  # used lately: "b" is now the least recently used

    cache.put("d", view("d@x.example", "d"), ticket=cache.ticket())

    assert len(cache) == 3
    assert [k for k in ("a", "b", "c", "d") if cache.get(k) is not None] == ["a", "c", "d"]


def test_expired_entries_leave_as_new_ones_come() -> None:
    ticks = Ticks()
    cache = LicenceCache(ttl=TTL, max_entries=100, now=ticks)
    for key in ("a", "b", "c"):
        cache.put(key, view(f"{key}@x.example", key), ticket=cache.ticket())
    ticks.advance(TTL)

    cache.put("d", view("d@x.example", "d"), ticket=cache.ticket())

    assert len(cache) == 1  # not 4: a, b and c were dead


def test_a_zero_bound_caches_nothing() -> None:
    cache = LicenceCache(ttl=0, now=Ticks())
    cache.put("k1", view(EMAIL, "k1"), ticket=cache.ticket())
    assert cache.get("k1") is None


# --- through the licence check handler ------------------------------------------------------


def replica(store: MemoryLicensingStore, ticks: Ticks, clock: FixedClock) -> LicensingDeps:
    """One licensing process over ``store``'s documents, its cache wired as ``app.wire``
    does (its own saves forget)."""
    licences = LicenceCache(ttl=TTL, now=ticks)
    licences.follow(store.customers)
    return LicensingDeps(store=store, signer=SIGNER, policy=POLICY, clock=clock, licences=licences)


def sharing(store: MemoryLicensingStore) -> MemoryLicensingStore:
    """Another process's store over the same documents (its saves are not ours)."""
    other = MemoryLicensingStore()
    other.customers.documents = store.customers.documents
    return other


async def registered(deps: LicensingDeps, *, days: int = 31) -> tuple[str, str]:
    """A plan bound to ``EMAIL`` and appliance ``xoa-1`` registered; returns its secret
    and the registration token the customer was mailed."""
    event = PlanBound(
        order_id="ol_1",
        reseller_id="r-42",
        space="reseller",
        customer_email=EMAIL,
        edition="enterprise",
        billing="monthly",
        period_start=NOW,
        period_end=NOW + timedelta(days=days),
        occurred_at=NOW,
        correlation_id="ol_1",
    )
    delivery = Delivery(message_id="m-bound", correlation_id="ol_1", routing_key="plan.bound")
    await on_plan_bound(event, delivery, deps=deps)
    assert isinstance(deps.store, MemoryLicensingStore)
    customer = deps.store.customers.stored(EMAIL)
    [note] = [
        e
        for e in customer.recorded()
        if isinstance(e, CustomerNotification) and e.kind == "plan_bound"
    ]
    assert note.registration_token is not None
    request = RegisterAppliance(
        email=EMAIL, registration_token=note.registration_token, appliance_id="xoa-1"
    )
    registration = await register_appliance(request, source="192.0.2.7", deps=deps)
    return registration.appliance_secret, note.registration_token


async def suspend(deps: LicensingDeps) -> None:
    command = SuspendLicense(customer_email=EMAIL, reason="fraud_review")
    delivery = Delivery(message_id="m-suspend", correlation_id=None, routing_key="license.suspend")
    await suspend_licence(command, delivery, deps=deps)


async def test_l4_checks_within_the_bound_read_the_store_once() -> None:
    store, ticks = MemoryLicensingStore(), Ticks()
    deps = replica(store, ticks, FixedClock(NOW))
    secret, _ = await registered(deps)

    for _ in range(5):  # the registration's own save is cached: the first checks read nothing
        checked = await appliance_licence("xoa-1", secret, deps=deps)
        assert (checked.status, checked.edition) == ("active", "enterprise")
        ticks.advance(TTL / 10)
    assert store.licence_reads == 0

    ticks.advance(TTL)
    for _ in range(5):
        await appliance_licence("xoa-1", secret, deps=deps)
        ticks.advance(TTL / 10)
    assert store.licence_reads == 1


async def test_l8_a_suspension_saved_by_another_replica_is_served_at_most_the_bound_late() -> None:
    ticks, clock = Ticks(), FixedClock(NOW)
    here_store = MemoryLicensingStore()
    here = replica(here_store, ticks, clock)
    elsewhere = replica(sharing(here_store), ticks, clock)
    secret, _ = await registered(here)
    assert (await appliance_licence("xoa-1", secret, deps=here)).status == "active"  # cached

    await suspend(elsewhere)  # the command went to the other replica

    ticks.advance(TTL - 0.01)  # within the bound: this replica may still say active
    assert (await appliance_licence("xoa-1", secret, deps=here)).status == "active"
    ticks.advance(0.01)  # at the bound: never the stale answer again
    checked = await appliance_licence("xoa-1", secret, deps=here)
    assert (checked.status, checked.reason, checked.edition) == (
        "suspended",
        "license_suspended",
        "free",
    )


async def test_l8_a_suspension_saved_by_this_process_is_served_at_once() -> None:
    ticks = Ticks()
    deps = replica(MemoryLicensingStore(), ticks, FixedClock(NOW))
    secret, _ = await registered(deps)
    assert (await appliance_licence("xoa-1", secret, deps=deps)).status == "active"  # cached

    await suspend(deps)  # no time passes

    checked = await appliance_licence("xoa-1", secret, deps=deps)
    assert (checked.status, checked.edition) == ("suspended", "free")


async def test_l5_a_move_made_by_this_process_is_served_to_the_released_appliance_at_once() -> None:
    deps = replica(MemoryLicensingStore(), Ticks(), FixedClock(NOW))
    secret, token = await registered(deps)
    assert (await appliance_licence("xoa-1", secret, deps=deps)).status == "active"  # cached

    move = RegisterAppliance(email=EMAIL, registration_token=token, appliance_id="xoa-2", move=True)
    await register_appliance(move, source="192.0.2.7", deps=deps)

    checked = await appliance_licence("xoa-1", secret, deps=deps)
    assert (checked.status, checked.reason) == ("moved", "license_moved_to_another_appliance")


async def test_l6_time_is_never_cached_a_plan_ending_is_seen_at_once() -> None:
    ticks, clock = Ticks(), FixedClock(NOW)
    store = MemoryLicensingStore()
    deps = replica(store, ticks, clock)
    secret, _ = await registered(deps, days=1)
    assert (await appliance_licence("xoa-1", secret, deps=deps)).status == "active"
    reads = store.licence_reads

    clock.advance(timedelta(days=1))  # the plan's end, within the cache's bound
    checked = await appliance_licence("xoa-1", secret, deps=deps)

    assert checked.status == "grace"
    assert store.licence_reads == reads  # the cached view, judged at the new time


async def test_l5_an_appliance_moved_in_at_another_replica_is_known_where_it_is_cached() -> None:
    ticks, clock = Ticks(), FixedClock(NOW)
    here_store = MemoryLicensingStore()
    here = replica(here_store, ticks, clock)
    elsewhere = replica(sharing(here_store), ticks, clock)
    _, token = await registered(here)  # the customer is cached here, with xoa-1 only
    second = RegisterAppliance(
        email=EMAIL, registration_token=token, appliance_id="xoa-2", move=True
    )
    secret = (await register_appliance(second, source="192.0.2.7", deps=elsewhere)).appliance_secret
    reads = here_store.licence_reads

    checked = await appliance_licence("xoa-2", secret, deps=here)  # no time passes

    assert checked.status == "active"
    assert here_store.licence_reads == reads + 1  # the cached view lacked it: read again
    await appliance_licence("xoa-2", secret, deps=here)
    assert here_store.licence_reads == reads + 1  # and kept


async def test_l4_a_cached_customer_still_refuses_a_wrong_secret() -> None:
    store = MemoryLicensingStore()
    deps = replica(store, Ticks(), FixedClock(NOW))
    secret, _ = await registered(deps)
    await appliance_licence("xoa-1", secret, deps=deps)  # the customer is cached now
    key = secret.partition(".")[0]
    assert deps.licences.get(key) is not None

    for wrong in (f"{key}.not-the-secret", f"{key}.", secret + "x"):
        with pytest.raises(Refused) as refused:
            await appliance_licence("xoa-1", wrong, deps=deps)
        assert refused.value.code == ErrorCode.INVALID_APPLIANCE_CREDENTIALS
    with pytest.raises(Refused):  # the right secret for another appliance id
        await appliance_licence("xoa-2", secret, deps=deps)


async def test_l4_a_wrong_secret_fills_nothing() -> None:
    store = MemoryLicensingStore()
    deps = replica(store, Ticks(), FixedClock(NOW))
    secret, _ = await registered(deps)
    key = secret.partition(".")[0]
    deps.licences.forget(key)  # the registration's save filled it

    for wrong in (f"{key}.not-the-secret", "0" * 32 + ".whatever", "no-dot-at-all"):
        with pytest.raises(Refused):
            await appliance_licence("xoa-1", wrong, deps=deps)

    assert len(deps.licences) == 0
    await appliance_licence("xoa-1", secret, deps=deps)
    assert len(deps.licences) == 1


async def test_l3_a_licence_handed_out_again_is_at_most_the_bound_old_and_says_what_holds_now() -> (
    None
):
    ticks, clock = Ticks(), FixedClock(NOW)
    deps = replica(MemoryLicensingStore(), ticks, clock)
    secret, _ = await registered(deps, days=1)
    public_key = SIGNER.public_keys().public_key
    first = verify_offline(
        (await appliance_licence("xoa-1", secret, deps=deps)).license or "", public_key
    )

    ticks.advance(1.0)
    clock.advance(timedelta(seconds=1))
    again = await appliance_licence("xoa-1", secret, deps=deps)
    claims = verify_offline(again.license or "", public_key)
    assert claims == first  # the same signature: issued one second ago, within the bound
    assert clock.now() - claims.issued_at <= timedelta(seconds=TTL)

    ticks.advance(TTL)  # past the bound: signed anew, issued now
    clock.advance(timedelta(seconds=TTL))
    renewed = verify_offline(
        (await appliance_licence("xoa-1", secret, deps=deps)).license or "", public_key
    )
    assert renewed.issued_at == clock.now()

    clock.advance(timedelta(days=1))  # the plan ends within the bound: a new licence at once
    ended = await appliance_licence("xoa-1", secret, deps=deps)
    claims = verify_offline(ended.license or "", public_key)
    assert (ended.status, claims.status, claims.issued_at) == ("grace", "grace", clock.now())


async def test_l3_a_licence_is_signed_anew_when_the_service_clock_moved_past_the_bound() -> None:
    ticks, clock = Ticks(), FixedClock(NOW)
    deps = replica(MemoryLicensingStore(), ticks, clock)
    secret, _ = await registered(deps)
    await appliance_licence("xoa-1", secret, deps=deps)

    clock.advance(timedelta(days=10))  # the service's clock, not the cache's, moved
    answer = await appliance_licence("xoa-1", secret, deps=deps)

    claims = verify_offline(answer.license or "", SIGNER.public_keys().public_key)
    assert (answer.status, claims.issued_at) == ("active", clock.now())
