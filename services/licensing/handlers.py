"""Licensing's handlers: plan events, operations commands and queries, the appliance HTTP
API, and the periodic jobs (expiry checks, purge of attempt counters)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from services.licensing.domain.customer import Customer
from services.licensing.domain.entitlement import Entitlement
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import retry_after, source_key
from services.licensing.domain.registration import invalid_registration
from services.licensing.domain.views import licence_claims, status_view
from services.licensing.signing import LicenceSigner
from services.licensing.store import LicensingStore
from shared.basics.clock import Clock
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.contracts.licensing import (
    ApplianceLicense,
    GetLicenseStatus,
    LicenseStatusResult,
    RegisterAppliance,
    Registration,
    RegistrationReissueResult,
    ReinstateLicense,
    ReissueRegistrationToken,
    SuspendLicense,
    SuspensionResult,
)
from shared.contracts.orders import PlanBound, PlanSuperseded, PlanUpgraded
from shared.runtime.logging import get_logger
from shared.runtime.messaging import Delivery

log = get_logger(__name__)
CHECK_BATCH = 500


def bad_credentials() -> NoReturn:
    raise Refused(ErrorCode.INVALID_APPLIANCE_CREDENTIALS, "unknown appliance or wrong secret")


def refuse_registration(_email: str) -> NoReturn:
    """No customer to register with: the one answer of L2, never ``unknown_customer``."""
    raise invalid_registration()


@dataclass(frozen=True)
class RegistrationLimits:
    """L2: registration attempts allowed per source and per email over a sliding window."""

    window: timedelta = timedelta(minutes=15)
    per_source: int = 20
    per_email: int = 10


@dataclass(frozen=True)
class LicensingDeps:
    store: LicensingStore
    signer: LicenceSigner
    policy: Policy
    clock: Clock
    limits: RegistrationLimits = RegistrationLimits()


# --- plan events (L1, O7) -------------------------------------------------------------


async def _change_customer(
    raw_email: str, decide: Callable[[Customer], None], delivery: Delivery, deps: LicensingDeps
) -> None:
    """Apply an order event to the customer it names, creating the customer if new."""
    await deps.store.customers.mutate(
        normalise_email(raw_email), decide, message_id=delivery.message_id, create=Customer.new
    )


async def on_plan_bound(event: PlanBound, delivery: Delivery, *, deps: LicensingDeps) -> None:
    """``plan.bound`` -> the email gains the edition, the customer gets a registration token."""
    token = secrets.token_urlsafe(24)  # 192 bits
    await _change_customer(
        event.customer_email,
        lambda c: c.add_plan(event, token=token, now=deps.clock.now(), policy=deps.policy),
        delivery,
        deps,
    )


async def on_plan_upgraded(event: PlanUpgraded, delivery: Delivery, *, deps: LicensingDeps) -> None:
    """``plan.upgraded`` -> the new plan runs, the previous one ends; appliances follow."""
    await _change_customer(
        event.customer_email,
        lambda c: c.upgrade(event, now=deps.clock.now(), policy=deps.policy),
        delivery,
        deps,
    )


async def on_plan_superseded(
    event: PlanSuperseded, delivery: Delivery, *, deps: LicensingDeps
) -> None:
    """``plan.superseded`` -> the old plan ends (if ``plan.upgraded`` did not end it yet)."""
    await _change_customer(
        event.customer_email,
        lambda c: c.supersede(event, now=deps.clock.now(), policy=deps.policy),
        delivery,
        deps,
    )


# --- operations (L2, L8) ----------------------------------------------------------------


async def licence_status(
    query: GetLicenseStatus, _: Delivery, *, deps: LicensingDeps
) -> LicenseStatusResult:
    """``license.status`` for operations: edition, status, plans, appliances, support."""
    email = normalise_email(query.customer_email)
    customer = await deps.store.customers.get(email) or Customer.new(email)
    return status_view(customer, deps.clock.now(), deps.policy)


async def _set_suspended(
    raw_email: str, reason: str, suspended: bool, delivery: Delivery, deps: LicensingDeps
) -> SuspensionResult:
    email = normalise_email(raw_email)
    now = deps.clock.now()

    def decide(customer: Customer) -> None:
        if suspended:
            customer.suspend(reason=reason, now=now)
        else:
            customer.reinstate(reason=reason, now=now)

    saved = await deps.store.customers.mutate(email, decide, message_id=delivery.message_id)
    event = "license_suspended" if suspended else "license_reinstated"  # as the events say
    log.info(event, customer_email=email, reason=reason)
    return SuspensionResult(
        customer_email=email, status=saved.aggregate.entitlement(now, deps.policy).status
    )


async def suspend_licence(
    command: SuspendLicense, delivery: Delivery, *, deps: LicensingDeps
) -> SuspensionResult:
    """``license.suspend`` (L8): every appliance of the customer falls to ``free``."""
    return await _set_suspended(command.customer_email, command.reason, True, delivery, deps)


async def reinstate_licence(
    command: ReinstateLicense, delivery: Delivery, *, deps: LicensingDeps
) -> SuspensionResult:
    """``license.reinstate`` (L8): the plans' editions are back."""
    return await _set_suspended(command.customer_email, command.reason, False, delivery, deps)


async def reissue_registration_token(
    command: ReissueRegistrationToken, delivery: Delivery, *, deps: LicensingDeps
) -> RegistrationReissueResult:
    """``registration.reissue`` (L2): a new token through ``customer.notification``; the
    earlier ones stop working."""
    email = normalise_email(command.customer_email)
    now = deps.clock.now()
    token = secrets.token_urlsafe(24)  # 192 bits
    saved = await deps.store.customers.mutate(
        email,
        lambda c: c.reissue_token(token=token, now=now, policy=deps.policy),
        message_id=delivery.message_id,
    )
    log.info("registration_token_reissued", customer_email=email, reason=command.reason)
    return RegistrationReissueResult(
        customer_email=email, issued_at=now, tokens_revoked=saved.decision or 0
    )


# --- the appliance HTTP API (L2-L5) -----------------------------------------------------


async def _limit_attempts(source: str, email: str, *, deps: LicensingDeps) -> None:
    """L2: count the attempt per source and per email, then refuse past either limit.

    Every attempt counts, whatever its outcome, and the same way for a known and an
    unknown email: the answer (and its time) never tells whether the email is a customer.
    """
    now, limits = deps.clock.now(), deps.limits
    counted = await asyncio.gather(
        deps.store.attempts.count(f"source:{source_key(source)}", now=now, window=limits.window),
        deps.store.attempts.count(f"email:{email}", now=now, window=limits.window),
    )
    waits = [
        retry_after(previous=previous, current=current, limit=limit, window=limits.window, now=now)
        for (previous, current), limit in zip(
            counted, (limits.per_source, limits.per_email), strict=True
        )
    ]
    refused = [w for w in waits if w is not None]
    if refused:
        log.warning("registration_rate_limited", source=source, retry_after=max(refused))
        raise RateLimited(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "too many registration attempts; try again later",
            retry_after=max(refused),
        )


async def register_appliance(
    request: RegisterAppliance, *, source: str, deps: LicensingDeps
) -> Registration:
    """``POST /v1/appliances/register`` (L2, L3, L5).

    A wrong email, a wrong token and an unknown email all end in the same refusal,
    after the same counting and the same digest comparisons.
    """
    try:
        email = normalise_email(request.email)
    except Refused:
        email = "invalid@invalid.invalid"
    await _limit_attempts(source, email, deps=deps)
    known = await deps.store.tokens_of(email)
    probe = known or Customer.new(email)
    if not probe.token_matches(request.registration_token) or known is None:
        refuse_registration(email)
    random_part = secrets.token_urlsafe(32)  # 256 bits

    def register(customer: Customer) -> None:
        customer.register(
            appliance_id=request.appliance_id,
            secret=customer.appliance_secret(random_part),
            move=request.move,
            now=deps.clock.now(),
            policy=deps.policy,
        )

    saved = await deps.store.customers.mutate(
        email, register, message_id=None, create=refuse_registration
    )
    customer = saved.aggregate  # its key, as saved, prefixes the secret
    log.info("appliance_registered", appliance_id=request.appliance_id, move=request.move)
    return Registration(
        appliance_secret=customer.appliance_secret(random_part),
        license=_signed_licence(customer, request.appliance_id, deps)[1],
    )


async def appliance_licence(
    appliance_id: str, secret: str, *, deps: LicensingDeps
) -> ApplianceLicense:
    """``GET /v1/appliances/{id}/license`` (L4): status, reason, edition, signed licence."""
    customer = await deps.store.customer_for_secret(secret)
    if customer is None or not customer.secret_matches(appliance_id, secret):
        bad_credentials()
    entitlement, licence = _signed_licence(customer, appliance_id, deps)
    return ApplianceLicense(
        status=entitlement.status,
        reason=entitlement.reason,
        edition=entitlement.edition,
        valid_until=entitlement.valid_until,
        support=entitlement.support,
        license=licence,
    )


def _signed_licence(
    customer: Customer, appliance_id: str, deps: LicensingDeps
) -> tuple[Entitlement, str]:
    """What the appliance may unlock now, and the licence that says so, signed (L3)."""
    now = deps.clock.now()
    entitlement = customer.appliance_entitlement(appliance_id, now, deps.policy)
    claims = licence_claims(
        customer, appliance_id, entitlement, now, deps.policy, key_id=deps.signer.key_id
    )
    return entitlement, deps.signer.sign(claims)


# --- periodic jobs (L6, L2) ---------------------------------------------------------------


async def check_licences(now: datetime, *, deps: LicensingDeps) -> int:
    """One pass of the expiry job: every customer with something due by ``now`` publishes
    its warnings, expiries and changes of edition (once each, recorded in the customer),
    and gets its next ``next_check_at``. Returns how many customers were checked.

    Several replicas may run it at once: the versioned save lets one of them record each
    fact, the other finds it recorded.
    """
    checked: set[str] = set()
    while True:
        due = [email async for email in deps.store.due_for_check(now, batch=CHECK_BATCH)]
        fresh = [email for email in due if email not in checked]
        for email in fresh:
            checked.add(email)
            try:
                await deps.store.customers.mutate(
                    email, lambda c: c.check(now, deps.policy), message_id=None
                )
            except Exception:  # one customer's failure must not stop the others'
                log.exception("licence_check_failed", customer_email=email)
        if not fresh or len(due) < CHECK_BATCH:
            break
    if checked:
        log.info("licences_checked", customers=len(checked))
    return len(checked)


async def purge_attempts(now: datetime, *, deps: LicensingDeps) -> int:
    """Delete the registration attempt counters no window reads any more."""
    return await deps.store.attempts.purge(now)
