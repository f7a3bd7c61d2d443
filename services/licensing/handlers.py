"""Licensing's handlers: plan events, operations commands and queries, the appliance HTTP
API, and the periodic jobs (expiry checks, purge of attempt counters)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from services.licensing.domain.customer import Customer
from services.licensing.domain.entitlement import Entitlement
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import (
    RegistrationLimits,
    retry_after,
    too_many_attempts,
)
from services.licensing.domain.registration import admit, customer_key_of, invalid_registration
from services.licensing.domain.views import Licensee, licence_claims, status_view
from services.licensing.licence_cache import LicenceCache
from services.licensing.signing import LicenceSigner
from services.licensing.store import LicensingStore
from shared.basics.attempts import source_key
from shared.basics.clock import Clock
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
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
from shared.runtime.store import reading_ahead

log = get_logger(__name__)
CHECK_BATCH = 500


def bad_credentials() -> NoReturn:
    raise Refused(ErrorCode.INVALID_APPLIANCE_CREDENTIALS, "unknown appliance or wrong secret")


def refuse_registration(_email: str) -> NoReturn:
    """No customer to register with: the one answer of L2, never ``unknown_customer``."""
    raise invalid_registration()


@dataclass(frozen=True)
class LicensingDeps:
    store: LicensingStore
    signer: LicenceSigner
    policy: Policy
    clock: Clock
    limits: RegistrationLimits = field(default_factory=RegistrationLimits)
    # The licence check's views, per process; ``app.wire`` makes every customer save of
    # this process forget its entry.
    licences: LicenceCache = field(default_factory=LicenceCache)


# --- plan events (L1, O7) -------------------------------------------------------------


async def _change_customer(
    raw_email: str, decide: Callable[[Customer], None], delivery: Delivery, deps: LicensingDeps
) -> None:
    """Apply an order event to the customer it names, creating the customer if new."""
    await deps.store.customers.mutate(
        normalise_email(raw_email),
        decide,
        message_id=delivery.message_id,
        digest=delivery.digest,
        create=Customer.new,
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
    command: SuspendLicense | ReinstateLicense,
    suspended: bool,
    delivery: Delivery,
    deps: LicensingDeps,
) -> SuspensionResult:
    email = normalise_email(command.customer_email)
    reason, operator = command.reason, command.operator
    now = deps.clock.now()

    def decide(customer: Customer) -> None:
        if suspended:
            customer.suspend(reason=reason, now=now, operator=operator)
        else:
            customer.reinstate(reason=reason, now=now, operator=operator)

    saved = await deps.store.customers.mutate(email, decide, message_id=delivery.message_id)
    event = "license_suspended" if suspended else "license_reinstated"  # as the events say
    log.info(event, customer_email=email, reason=reason, operator=operator)
    return SuspensionResult(
        customer_email=email, status=saved.aggregate.entitlement(now, deps.policy).status
    )


async def suspend_licence(
    command: SuspendLicense, delivery: Delivery, *, deps: LicensingDeps
) -> SuspensionResult:
    """``license.suspend`` (L8): every appliance of the customer falls to ``free``."""
    return await _set_suspended(command, True, delivery, deps)


async def reinstate_licence(
    command: ReinstateLicense, delivery: Delivery, *, deps: LicensingDeps
) -> SuspensionResult:
    """``license.reinstate`` (L8): the plans' editions are back."""
    return await _set_suspended(command, False, delivery, deps)


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
    log.info(
        "registration_token_reissued",
        customer_email=email,
        reason=command.reason,
        operator=command.operator,
    )
    return RegistrationReissueResult(
        customer_email=email, issued_at=now, tokens_revoked=saved.decision or 0
    )


# --- the appliance HTTP API (L2-L5) -----------------------------------------------------


async def _counted(key: str, limit: int, *, deps: LicensingDeps) -> int | None:
    """Count one attempt for ``key`` now (every replica counts against the same number);
    ``None`` if it is within ``limit``, else the seconds to wait."""
    now, window = deps.clock.now(), deps.limits.window
    previous, current = await deps.store.attempts.count_sliding(key, now=now, window=window)
    return retry_after(previous=previous, current=current, limit=limit, window=window, now=now)


async def register_appliance(
    request: RegisterAppliance, *, source: str, deps: LicensingDeps
) -> Registration:
    """``POST /v1/appliances/register`` (L2, L3, L5).

    1. The attempt is counted for its source while the email's customer is read (a read
       counts nothing); a source past its limit is refused before anything else is
       counted, the email's count included (rate_limits: nobody locks a customer out with
       a source that is already refused).
    2. The token is checked against the digests read. A wrong email, a wrong token and an
       unknown email then count the attempt for the email and end in the same refusal,
       after the same counting, the same store read and the same number of digest
       comparisons; past the email's limit the refusal is ``too_many_attempts``, yet the
       right token registers (``registration.admit``). So the right token's save needs
       no count's answer: the two go out together, and the save takes the customer read
       in step 1 (``reading_ahead``) instead of reading it again.
    """
    try:
        email = normalise_email(request.email)
    except Refused:
        email = "invalid@invalid.invalid"
    with reading_ahead():
        source_wait, known = await asyncio.gather(
            _counted(f"source:{source_key(source)}", deps.limits.per_source, deps=deps),
            deps.store.tokens_of(email),
        )
        if source_wait is not None:
            log.warning("registration_rate_limited", limit="source", source=source)
            raise too_many_attempts(source_wait)
        probe = known or Customer.new(email)
        token_valid = probe.token_matches(request.registration_token) and known is not None
        counted = asyncio.ensure_future(
            _counted(f"email:{email}", deps.limits.per_email, deps=deps)
        )
        if not token_valid:  # refused; the email's count says which refusal
            email_wait = await counted
            if email_wait is not None:
                log.warning("registration_rate_limited", limit="email", source=source)
            admit(token_valid=False, email_wait=email_wait)
        random_part = secrets.token_urlsafe(32)  # 256 bits

        def register(customer: Customer) -> None:
            customer.register(
                appliance_id=request.appliance_id,
                secret=customer.appliance_secret(random_part),
                move=request.move,
                now=deps.clock.now(),
                policy=deps.policy,
            )

        try:  # the right token: saved while the attempt is counted
            saved = await deps.store.customers.mutate(
                email, register, message_id=None, create=refuse_registration
            )
        finally:
            if await counted is not None:
                log.warning(
                    "registration_rate_limited", limit="email", source=source, admitted=True
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
    """``GET /v1/appliances/{id}/license`` (L4): status, reason, edition, signed licence.

    The customer's ``LicenceView`` comes from this process's cache (at most
    ``LICENSE_CACHE_SECONDS`` old, ``licence_cache``) or from one indexed read; the
    secret is checked against it on every request, and only a view whose secret matched
    is cached. A cached view the secret does not match is read again before the refusal:
    the appliance may have registered at another replica since (a wrong secret costs one
    read, as an unknown key does). The entitlement is computed now; the licence signed
    for that same entitlement from the same cached view is handed out again, else one is
    signed."""
    key = customer_key_of(secret)
    if key is None:
        bad_credentials()
    view = deps.licences.get(key)
    if view is None or not view.secret_matches(appliance_id, secret):
        ticket = deps.licences.ticket()
        view = await deps.store.licence_view(key)
        if view is None or not view.secret_matches(appliance_id, secret):
            bad_credentials()
        deps.licences.put(key, view, ticket=ticket)
    now = deps.clock.now()
    entitlement = view.appliance_entitlement(appliance_id, now, deps.policy)
    signed = deps.licences.signed(key, appliance_id, entitlement, now)
    if signed is not None:
        return signed
    answer = ApplianceLicense(
        status=entitlement.status,
        reason=entitlement.reason,
        edition=entitlement.edition,
        valid_until=entitlement.valid_until,
        support=entitlement.support,
        license=_signature(view, appliance_id, entitlement, now, deps),
    )
    deps.licences.keep_signed(key, appliance_id, entitlement, now, answer)
    return answer


def _signed_licence(
    customer: Customer, appliance_id: str, deps: LicensingDeps
) -> tuple[Entitlement, str]:
    """What the appliance may unlock now, and the licence that says so, signed (L3)."""
    now = deps.clock.now()
    entitlement = customer.appliance_entitlement(appliance_id, now, deps.policy)
    return entitlement, _signature(customer, appliance_id, entitlement, now, deps)


def _signature(
    licensee: Licensee,
    appliance_id: str,
    entitlement: Entitlement,
    now: datetime,
    deps: LicensingDeps,
) -> str:
    """The signed licence of ``entitlement`` at ``now`` (L3)."""
    claims = licence_claims(
        licensee, appliance_id, entitlement, now, deps.policy, key_id=deps.signer.key_id
    )
    return deps.signer.sign(claims)


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
