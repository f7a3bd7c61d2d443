"""Licensing's wiring: plan events, operations commands and queries, the appliance HTTP
API, and the periodic jobs (expiry checks, purge of attempt counters)."""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

from datetime import timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.licensing import handlers
from services.licensing.domain import Customer, Policy
from services.licensing.signing import LicenceSigner, generate_private_key_b64
from services.licensing.store import LicensingStore
from shared.basics.catalogue import load_catalogue
from shared.contracts.licensing import (
    ApplianceLicense,
    GetLicenseStatus,
    PublicKeys,
    RegisterAppliance,
    Registration,
    ReinstateLicense,
    ReissueRegistrationToken,
    SuspendLicense,
)
from shared.contracts.orders import PlanBound, PlanSuperseded, PlanUpgraded
from shared.runtime.messaging import Route
from shared.runtime.secrets import env_or_generated
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings


def _error(description: str) -> dict[str, Any]:
    return {"description": description}


REGISTER_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("invalid_registration: wrong email, wrong token or unknown email (one answer)"),
    403: _error("license_suspended: the customer's licence is suspended"),
    409: _error("plan_in_use (send move=true) or no_active_plan"),
    429: _error("too_many_attempts or move_limit_reached; see the Retry-After header"),
}


def appliance_router(deps: handlers.LicensingDeps) -> APIRouter:
    router = APIRouter(prefix="/v1")
    bearer = HTTPBearer(auto_error=False)

    @router.post(
        "/appliances/register",
        summary="Register an appliance with the customer's email",
        responses=REGISTER_RESPONSES,
    )
    async def register(body: RegisterAppliance, request: Request) -> Registration:
        # The TCP peer, or the client a trusted proxy names (FORWARDED_ALLOW_IPS).
        source = request.client.host if request.client else "unknown"
        return await handlers.register_appliance(body, source=source, deps=deps)

    @router.get(
        "/appliances/{appliance_id}/license",
        summary="Which edition this appliance may unlock",
        responses={401: _error("invalid_appliance_credentials")},
    )
    async def licence(
        appliance_id: str,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApplianceLicense:
        secret = credentials.credentials if credentials else ""
        return await handlers.appliance_license(appliance_id, secret, deps=deps)

    @router.get("/public-key", summary="The Ed25519 keys that verify licences offline")
    async def public_key() -> PublicKeys:
        return deps.signer.public_keys()

    return router


def policy_of(settings: Settings) -> Policy:
    return Policy(
        catalogue=load_catalogue(settings.catalogue_path),
        grace=timedelta(days=settings.license_grace_days),
        warning_days=tuple(sorted(set(settings.license_expiry_warning_days), reverse=True)),
        moves_per_window=settings.license_moves_per_30_days,
        offline_validity=timedelta(days=settings.license_offline_days),
    )


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    private_key = env_or_generated(
        settings.license_signing_key,
        settings.data_dir / "license-signing-key",
        generate_private_key_b64,
    )
    store = LicensingStore(runtime.store("customers", Customer), runtime.db)
    deps = handlers.LicensingDeps(
        store=store,
        signer=LicenceSigner.from_base64(private_key, settings.license_previous_public_keys),
        policy=policy_of(settings),
        clock=runtime.clock,
        limits=handlers.RegistrationLimits(
            window=timedelta(seconds=settings.registration_window_seconds),
            per_source=settings.registration_attempts_per_source,
            per_email=settings.registration_attempts_per_email,
        ),
    )
    return Wiring(
        routes=[
            Route(PlanBound, partial(handlers.on_plan_bound, deps=deps)),
            Route(PlanUpgraded, partial(handlers.on_plan_upgraded, deps=deps)),
            Route(PlanSuperseded, partial(handlers.on_plan_superseded, deps=deps)),
            Route(SuspendLicense, partial(handlers.suspend_license, deps=deps)),
            Route(ReinstateLicense, partial(handlers.reinstate_license, deps=deps)),
            Route(
                ReissueRegistrationToken, partial(handlers.reissue_registration_token, deps=deps)
            ),
            Route(GetLicenseStatus, partial(handlers.license_status, deps=deps)),
        ],
        http=appliance_router(deps),
        setup=store.create_indexes,
        # One pass each, every JOB_INTERVAL_SECONDS; tests call a pass with their clock.
        periodic={
            "licence_checks": partial(handlers.check_licences, deps=deps),
            "attempt_counters_purge": partial(handlers.purge_attempts, deps=deps),
        },
    )
