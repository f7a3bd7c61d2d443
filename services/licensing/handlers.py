"""Licensing's handlers: the ``plan.bound`` consumer, operations queries, appliance HTTP."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import NoReturn

from services.licensing.domain import Customer, Entitlement, invalid_registration
from services.licensing.signing import LicenceSigner
from services.licensing.store import LicensingStore
from shared.catalogue import Catalogue
from shared.clock import Clock
from shared.contracts.licensing import (
    ApplianceLicense,
    GetLicenseStatus,
    LicenseStatusResult,
    RegisterAppliance,
    Registration,
)
from shared.contracts.orders import PlanBound
from shared.emails import normalise_email
from shared.errors import ErrorCode, Refused
from shared.messaging import Delivery


def bad_credentials() -> NoReturn:
    raise Refused(ErrorCode.INVALID_APPLIANCE_CREDENTIALS, "unknown appliance or wrong secret")


def refuse_registration() -> NoReturn:
    raise invalid_registration()


@dataclass(frozen=True)
class LicensingDeps:
    store: LicensingStore
    signer: LicenceSigner
    catalogue: Catalogue
    clock: Clock


async def on_plan_bound(event: PlanBound, delivery: Delivery, *, deps: LicensingDeps) -> None:
    """``plan.bound`` -> the email gains the edition, the customer gets a registration token."""
    email = normalise_email(event.customer_email)
    token = secrets.token_urlsafe(24)  # 192 bits
    await deps.store.customers.mutate(
        email,
        lambda customer: customer.add_plan(event, token=token, now=deps.clock.now()),
        message_id=delivery.message_id,
        missing=lambda: Customer(id=email),
    )


async def license_status(
    query: GetLicenseStatus, _: Delivery, *, deps: LicensingDeps
) -> LicenseStatusResult:
    """``license.status`` for operations."""
    email = normalise_email(query.customer_email)
    customer = await deps.store.customers.get(email) or Customer(id=email)
    return customer.status_view(deps.clock.now(), deps.catalogue)


def _licence(deps: LicensingDeps, customer: Customer, appliance_id: str, e: Entitlement) -> str:
    return deps.signer.sign(
        {
            "customer_email": customer.email,
            "appliance_id": appliance_id,
            "edition": e.edition,
            "status": e.status,
            "support": e.support,
            "valid_until": e.valid_until.isoformat() if e.valid_until else None,
            "issued_at": deps.clock.now().isoformat(),
        }
    )


async def register_appliance(request: RegisterAppliance, *, deps: LicensingDeps) -> Registration:
    """``POST /v1/appliances/register`` (L2, L3, L5).

    A wrong email, a wrong token and an unknown email all end in the same refusal,
    after the same digest comparisons.
    """
    try:
        email = normalise_email(request.email)
    except Refused:
        email = "invalid@invalid.invalid"
    customer = await deps.store.customers.get(email)
    probe = customer or Customer(id=email)
    if not probe.token_matches(request.registration_token) or customer is None:
        refuse_registration()
    secret = secrets.token_urlsafe(32)
    await deps.store.index_appliance(request.appliance_id, email)
    customer = await deps.store.customers.mutate(
        email,
        lambda c: c.register(
            appliance_id=request.appliance_id,
            secret=secret,
            move=request.move,
            now=deps.clock.now(),
            catalogue=deps.catalogue,
        ),
        message_id=None,
        missing=refuse_registration,
    )
    entitlement = customer.appliance_entitlement(
        request.appliance_id, deps.clock.now(), deps.catalogue
    )
    return Registration(
        appliance_secret=secret,
        license=_licence(deps, customer, request.appliance_id, entitlement),
    )


async def appliance_license(
    appliance_id: str, secret: str, *, deps: LicensingDeps
) -> ApplianceLicense:
    """``GET /v1/appliances/{id}/license`` (L4): status, reason, edition, signed licence."""
    customer = await deps.store.customer_of_appliance(appliance_id)
    if customer is None or not customer.secret_matches(appliance_id, secret):
        bad_credentials()
    entitlement = customer.appliance_entitlement(appliance_id, deps.clock.now(), deps.catalogue)
    return ApplianceLicense(
        status=entitlement.status,
        reason=entitlement.reason,
        edition=entitlement.edition,
        valid_until=entitlement.valid_until,
        support=entitlement.support,
        license=_licence(deps, customer, appliance_id, entitlement),
    )
