"""L2 at the handler level: ``register_appliance`` with the store in memory
(tests/support/fakes.py). The token travels as it does in production: ``plan.bound``
gives the customer a token through ``customer.notification``; the appliance sends it back.
The real-broker and HTTP tests (tests/integration/test_appliances.py) cover the same
rules through the service; these show the handler's order: count for the source, then
count for the email and check the token, then register. The limits are L2's lockout rule:
a source over its limit counts for nothing else, and the right token passes the email's
limit (tests/security/test_registration.py probes the same through HTTP).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.licensing.domain.customer import Customer
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import RegistrationLimits
from services.licensing.handlers import (
    LicensingDeps,
    appliance_licence,
    on_plan_bound,
    register_appliance,
)
from services.licensing.signing import LicenceSigner, generate_private_key_b64
from shared.basics.catalogue import load_catalogue
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.contracts.licensing import CustomerNotification, RegisterAppliance
from shared.contracts.orders import PlanBound
from shared.runtime.messaging import Delivery
from tests.support.clock import FixedClock
from tests.support.fakes import MemoryLicensingStore
from tests.support.licensing import verify_offline

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
EMAIL = "jane@customer.example.com"
STRANGER = "nobody@customer.example.com"
SIGNER = LicenceSigner.from_base64(generate_private_key_b64())
WINDOW = timedelta(minutes=15)


def licensing(limits: RegistrationLimits | None = None) -> LicensingDeps:
    return LicensingDeps(
        store=MemoryLicensingStore(),
        signer=SIGNER,
        policy=Policy(catalogue=load_catalogue()),
        clock=FixedClock(NOW),
        limits=limits or RegistrationLimits(),
    )


def store_of(deps: LicensingDeps) -> MemoryLicensingStore:
    assert isinstance(deps.store, MemoryLicensingStore)
    return deps.store


def clock_of(deps: LicensingDeps) -> FixedClock:
    assert isinstance(deps.clock, FixedClock)
    return deps.clock


async def bound(deps: LicensingDeps, email: str = EMAIL) -> str:
    """``plan.bound`` for ``email``; returns the token the mailer was given for it."""
    event = PlanBound(
        order_id="ol_1",
        reseller_id="r-42",
        space="reseller",
        customer_email=email,
        edition="enterprise",
        billing="monthly",
        period_start=NOW,
        period_end=NOW + timedelta(days=31),
        occurred_at=NOW,
        correlation_id="ol_1",
    )
    delivery = Delivery(message_id="m-bound", correlation_id="ol_1", routing_key="plan.bound")
    await on_plan_bound(event, delivery, deps=deps)
    customer = store_of(deps).customers.stored(email)
    [note] = [e for e in customer.recorded() if isinstance(e, CustomerNotification)]
    assert note.registration_token is not None
    return note.registration_token


async def attempt(
    deps: LicensingDeps, email: str, token: str, *, source: str = "192.0.2.7"
) -> Refused | None:
    """One registration of ``xoa-1``; the refusal it got, or None if it registered."""
    request = RegisterAppliance(email=email, registration_token=token, appliance_id="xoa-1")
    try:
        await register_appliance(request, source=source, deps=deps)
    except Refused as refusal:
        return refusal
    return None


def answer(refusal: Refused | None) -> tuple[object, ...]:
    """Everything a caller can tell about a refusal."""
    assert refusal is not None, "registered, but a refusal was expected"
    return (type(refusal), refusal.code, refusal.message, getattr(refusal, "retry_after", None))


async def test_l2_the_token_sent_to_the_customer_registers_an_appliance() -> None:
    deps = licensing()
    token = await bound(deps)
    request = RegisterAppliance(
        email="  Jane@Customer.EXAMPLE.com ", registration_token=token, appliance_id="xoa-1"
    )

    registration = await register_appliance(request, source="192.0.2.7", deps=deps)

    claims = verify_offline(registration.license, SIGNER.public_keys().public_key)
    assert (claims.customer_email, claims.appliance_id) == (EMAIL, "xoa-1")
    assert (claims.edition, claims.status) == ("enterprise", "active")
    customer = store_of(deps).customers.stored(EMAIL)
    assert [a.appliance_id for a in customer.appliances] == ["xoa-1"]
    # L3/L4: the secret it was given is its credential for the licence check
    checked = await appliance_licence("xoa-1", registration.appliance_secret, deps=deps)
    assert (checked.status, checked.edition) == ("active", "enterprise")


async def test_l2_wrong_token_unknown_email_and_malformed_email_get_one_identical_refusal() -> None:
    deps = licensing()
    token = await bound(deps)
    store = store_of(deps)
    before = (dict(store.customers.documents), list(store.customers.writes))

    refusals = [
        await attempt(deps, EMAIL, "not-the-token"),
        await attempt(deps, STRANGER, token),
        await attempt(deps, STRANGER, "not-the-token"),
        await attempt(deps, "not an email", token),
    ]

    [(kind, code, _, retry_after)] = {answer(r) for r in refusals}  # one answer for all
    assert (kind, code, retry_after) == (Refused, ErrorCode.INVALID_REGISTRATION, None)
    assert (store.customers.documents, store.customers.writes) == before  # nothing registered
    # every attempt was counted, once per source and once per email, whatever its outcome
    assert sum(store.attempts.counts.values()) == 2 * len(refusals)


async def test_l2_past_the_email_limit_the_right_token_still_registers_a_wrong_one_waits() -> None:
    """L2 lockout: guesses from rotated sources use up the email's attempts, but the email's
    limit only stops guessing: the customer's own token still registers."""
    deps = licensing(RegistrationLimits(window=WINDOW, per_source=100, per_email=3))
    token = await bound(deps)
    sources = [f"192.0.2.{n}" for n in range(1, 31)]  # 30 sources, none near its own limit

    wrong = [await attempt(deps, EMAIL, "guess", source=s) for s in sources]
    customer = await attempt(deps, EMAIL, token, source="198.51.100.20")
    still_wrong = await attempt(deps, EMAIL, "guess", source="198.51.100.21")

    codes = [r.code if r else None for r in wrong]
    assert codes == [ErrorCode.INVALID_REGISTRATION] * 3 + [ErrorCode.TOO_MANY_ATTEMPTS] * 27
    assert customer is None  # registered, 31st attempt on a locked email
    assert [a.appliance_id for a in store_of(deps).customers.stored(EMAIL).appliances] == ["xoa-1"]
    assert isinstance(still_wrong, RateLimited)
    assert still_wrong.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert 0 < still_wrong.retry_after <= 2 * WINDOW.total_seconds()

    clock_of(deps).advance(timedelta(seconds=still_wrong.retry_after))
    assert answer(await attempt(deps, EMAIL, "guess"))[1] == ErrorCode.INVALID_REGISTRATION


async def test_l2_a_source_over_its_limit_is_refused_before_the_email_is_counted() -> None:
    deps = licensing(RegistrationLimits(window=WINDOW, per_source=2, per_email=3))
    token = await bound(deps)
    counts = store_of(deps).attempts.counts
    scanner = "203.0.113.9"
    for n in range(2):  # the scanner uses up its own limit on other emails
        await attempt(deps, f"guess{n}@customer.example.com", "guess", source=scanner)
    emails_before = {k: v for k, v in counts.items() if k[0].startswith("email:")}

    refused = [await attempt(deps, EMAIL, "guess", source=scanner) for _ in range(10)]
    with_token = await attempt(deps, EMAIL, token, source=scanner)

    assert {answer(r)[1] for r in [*refused, with_token]} == {ErrorCode.TOO_MANY_ATTEMPTS}
    assert {k: v for k, v in counts.items() if k[0].startswith("email:")} == emails_before
    assert store_of(deps).customers.stored(EMAIL).appliances == []  # the source limit holds
    # the email kept every one of its attempts: three wrong tokens from elsewhere get 401
    elsewhere = [await attempt(deps, EMAIL, "guess", source=f"192.0.2.{n}") for n in range(4)]
    assert [answer(r)[1] for r in elsewhere] == [ErrorCode.INVALID_REGISTRATION] * 3 + [
        ErrorCode.TOO_MANY_ATTEMPTS
    ]


def traced(deps: LicensingDeps) -> list[str]:
    """What ``register_appliance`` asks of the store, in order, emails left out."""
    store = store_of(deps)
    trace: list[str] = []
    count, tokens_of = store.attempts.count_sliding, store.tokens_of

    async def counting(key: str, *, now: datetime, window: timedelta) -> tuple[int, int]:
        trace.append(f"count {key.split(':')[0]}")
        return await count(key, now=now, window=window)

    async def reading(email: str) -> Customer | None:
        trace.append("tokens_of")
        return await tokens_of(email)

    store.attempts.count_sliding = counting  # type: ignore[method-assign]
    store.tokens_of = reading  # type: ignore[method-assign]
    return trace


async def test_l2_an_unknown_email_is_limited_exactly_like_a_customer() -> None:
    """The limit tells nothing either: the same attempts get the same answers after the
    same work, whether the email is a customer's or not, under the email's limit and past
    it (where the token is still checked, so that the right one could pass)."""
    limits = RegistrationLimits(window=WINDOW, per_source=100, per_email=2)
    outcomes, traces = [], []
    for email in (EMAIL, STRANGER):
        deps = licensing(limits)
        await bound(deps)  # EMAIL is a customer in both runs; STRANGER never is
        trace = traced(deps)
        outcomes.append([answer(await attempt(deps, email, "guess")) for _ in range(4)])
        traces.append(trace)

    customer, stranger = outcomes
    assert customer == stranger
    assert [code for _, code, _, _ in customer] == [
        ErrorCode.INVALID_REGISTRATION,
        ErrorCode.INVALID_REGISTRATION,
        ErrorCode.TOO_MANY_ATTEMPTS,
        ErrorCode.TOO_MANY_ATTEMPTS,
    ]
    # the customer is read beside the source's count (a read counts nothing)
    assert traces[0] == traces[1] == ["count source", "tokens_of", "count email"] * 4


async def test_l2_an_unknown_email_gets_no_registration_past_its_limit_whatever_the_token() -> None:
    """Letting the right token through the email's limit lets nothing else through: the
    token of another customer, or any token for an unknown email, still waits."""
    deps = licensing(RegistrationLimits(window=WINDOW, per_source=100, per_email=1))
    token = await bound(deps)
    await attempt(deps, STRANGER, "guess", source="192.0.2.1")

    answers = [
        await attempt(deps, STRANGER, token, source="192.0.2.2"),
        await attempt(deps, "not an email", token, source="192.0.2.3"),
        await attempt(deps, "not an email", token, source="192.0.2.4"),
    ]

    assert [answer(r)[1] for r in answers] == [
        ErrorCode.TOO_MANY_ATTEMPTS,
        ErrorCode.INVALID_REGISTRATION,  # its first attempt
        ErrorCode.TOO_MANY_ATTEMPTS,
    ]
    assert STRANGER not in store_of(deps).customers.documents


async def test_l2_one_ipv6_site_is_one_source_across_emails() -> None:
    deps = licensing(RegistrationLimits(window=WINDOW, per_source=2, per_email=100))
    token = await bound(deps)

    first = await attempt(deps, "a@customer.example.com", "guess", source="2001:db8:1:2::1")
    second = await attempt(deps, "b@customer.example.com", "guess", source="2001:db8:1:2::ff")
    third = await attempt(deps, EMAIL, token, source="2001:db8:1:2:abcd::7")
    elsewhere = await attempt(deps, EMAIL, token, source="2001:db8:1:3::1")

    assert [r.code if r else None for r in (first, second)] == [ErrorCode.INVALID_REGISTRATION] * 2
    assert third is not None and third.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert elsewhere is None  # another /64 is another source


@pytest.mark.parametrize("limit", [1, 3])
async def test_l2_the_limit_counts_exactly(limit: int) -> None:
    deps = licensing(RegistrationLimits(window=WINDOW, per_source=100, per_email=limit))
    await bound(deps)

    codes = [(await attempt(deps, EMAIL, "guess")) for _ in range(limit + 1)]

    assert [r.code if r else None for r in codes] == [ErrorCode.INVALID_REGISTRATION] * limit + [
        ErrorCode.TOO_MANY_ATTEMPTS
    ]
