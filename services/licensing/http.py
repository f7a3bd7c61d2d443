"""Licensing's HTTP routes: the appliance API (L2-L5) and the keys that verify licences.

No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
the OpenAPI generator resolves ``router``'s ``deps`` annotation to build a placeholder.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.licensing import handlers
from services.licensing.handlers import LicensingDeps
from shared.contracts.licensing import (
    APPLIANCE_ID_MAX_LENGTH,
    APPLIANCE_ID_PATTERN,
    ApplianceLicense,
    PublicKeys,
    RegisterAppliance,
    Registration,
)


def _error(description: str) -> dict[str, Any]:
    return {"description": description}


REGISTER_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("invalid_registration: wrong email, wrong token or unknown email (one answer)"),
    403: _error("license_suspended: the customer's licence is suspended"),
    409: _error("plan_in_use (send move=true) or no_active_plan"),
    413: _error("body_too_large: the body exceeds 16 KB (refused before it is read)"),
    422: _error("invalid_request: a field is missing or malformed (e.g. the appliance id)"),
    429: _error(
        "too_many_attempts (from a source past its limit, whatever the token; past the "
        "email's limit, any token but the right one) or move_limit_reached; see Retry-After"
    ),
}


def router(deps: LicensingDeps) -> APIRouter:
    """``/v1``: register an appliance, check its licence, read the public keys."""
    routes = APIRouter(prefix="/v1")
    bearer = HTTPBearer(auto_error=False)

    @routes.post(
        "/appliances/register",
        summary="Register an appliance with the customer's email",
        responses=REGISTER_RESPONSES,
    )
    async def register(body: RegisterAppliance, request: Request) -> Registration:
        # The TCP peer, or the client a trusted proxy names (TRUSTED_PROXIES).
        source = request.client.host if request.client else "unknown"
        return await handlers.register_appliance(body, source=source, deps=deps)

    @routes.get(
        "/appliances/{appliance_id}/license",
        summary="Which edition this appliance may unlock",
        response_model=ApplianceLicense,
        responses={
            401: _error("invalid_appliance_credentials"),
            422: _error("invalid_request: not an appliance id"),
        },
    )
    async def licence(
        appliance_id: Annotated[
            str,
            Path(
                min_length=1,
                max_length=APPLIANCE_ID_MAX_LENGTH,
                pattern=APPLIANCE_ID_PATTERN,
                description="As registered: the first character a letter or a digit.",
            ),
        ],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Response:
        # Serialised by its own model, once: the framework would validate it again first.
        secret = credentials.credentials if credentials else ""
        answer = await handlers.appliance_licence(appliance_id, secret, deps=deps)
        return Response(answer.model_dump_json(), media_type="application/json")

    @routes.get("/public-key", summary="The Ed25519 keys that verify licences offline")
    async def public_key() -> PublicKeys:
        return deps.signer.public_keys()

    return routes
