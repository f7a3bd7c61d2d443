"""Licensing's wiring: the ``plan.bound`` consumer, operations queries, the appliance HTTP API."""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.licensing import handlers
from services.licensing.domain import Customer
from services.licensing.signing import LicenceSigner, generate_private_key_b64
from services.licensing.store import LicensingStore
from shared.catalogue import load_catalogue
from shared.contracts.licensing import (
    ApplianceLicense,
    GetLicenseStatus,
    PublicKeys,
    RegisterAppliance,
    Registration,
)
from shared.contracts.orders import PlanBound
from shared.messaging import Route
from shared.secrets import env_or_generated
from shared.service import Runtime, Wiring


def appliance_router(deps: handlers.LicensingDeps) -> APIRouter:
    router = APIRouter(prefix="/v1")
    bearer = HTTPBearer(auto_error=False)

    @router.post("/appliances/register", summary="Register an appliance with the customer's email")
    async def register(body: RegisterAppliance) -> Registration:
        return await handlers.register_appliance(body, deps=deps)

    @router.get(
        "/appliances/{appliance_id}/license", summary="Which edition this appliance may unlock"
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


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    private_key = env_or_generated(
        settings.license_signing_key,
        settings.data_dir / "license-signing-key",
        generate_private_key_b64,
    )
    deps = handlers.LicensingDeps(
        store=LicensingStore(runtime.store("customers", Customer), runtime.db),
        signer=LicenceSigner.from_base64(private_key, settings.license_previous_public_keys),
        catalogue=load_catalogue(settings.catalogue_path),
        clock=runtime.clock,
    )
    return Wiring(
        routes=[
            Route(PlanBound, partial(handlers.on_plan_bound, deps=deps)),
            Route(GetLicenseStatus, partial(handlers.license_status, deps=deps)),
        ],
        http=appliance_router(deps),
    )
