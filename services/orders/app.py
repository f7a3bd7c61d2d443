"""Orders' wiring: its messages, and the HTTP proof upload (files don't belong in messages)."""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

import hmac
import secrets
from datetime import timedelta
from functools import partial
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Header, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.orders import handlers
from services.orders.domain import OrderLine
from services.orders.store import OrderStore
from shared.basics.catalogue import load_catalogue
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.orders import (
    BindPlan,
    CancelOrder,
    GetOrder,
    ListOrders,
    PlaceOrder,
    PlanUpgraded,
    ProofView,
    ReviewProof,
    UpgradePlan,
)
from shared.runtime.messaging import Route
from shared.runtime.secrets import env_or_generated
from shared.runtime.service import Runtime, Wiring


def proof_router(deps: handlers.OrdersDeps, api_token: str) -> APIRouter:
    router = APIRouter(prefix="/v1")
    bearer = HTTPBearer(auto_error=False)

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_token.encode()):
            raise Refused(ErrorCode.UNAUTHORISED, "missing or wrong API token")

    @router.post(
        "/orders/{order_id}/proofs",
        status_code=201,
        dependencies=[Depends(authorised)],
        summary="Upload a wire-transfer proof (PDF, PNG or JPEG) for an order line (O3)",
    )
    async def upload_proof(
        order_id: str,
        file: Annotated[UploadFile, File(description="The proof: PDF, PNG or JPEG.")],
        x_reseller_id: Annotated[str, Header(min_length=1, max_length=128)],
    ) -> ProofView:
        content = await file.read(deps.proof_max_bytes + 1)  # one byte over: enough to refuse
        return await handlers.submit_proof(
            order_id=order_id,
            reseller_id=x_reseller_id,
            filename=PurePath(file.filename or "proof").name[:255],
            content=content,
            deps=deps,
        )

    return router


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    store = OrderStore(runtime.store("order_lines", OrderLine), runtime.db)
    deps = handlers.OrdersDeps(
        store=store,
        bus=runtime.bus,
        clock=runtime.clock,
        catalogue=load_catalogue(settings.catalogue_path),
        proof_max_bytes=settings.proof_max_bytes,
        unpaid_ttl=timedelta(hours=settings.unpaid_order_ttl_hours),
    )
    api_token = env_or_generated(
        settings.reseller_api_token,
        settings.data_dir / "reseller-api-token",
        lambda: secrets.token_urlsafe(32),
    )
    routes = [
        Route(PlaceOrder, partial(handlers.place_order, deps=deps)),
        Route(CancelOrder, partial(handlers.cancel_order, deps=deps)),
        Route(ReviewProof, partial(handlers.review_proof, deps=deps)),
        Route(BindPlan, partial(handlers.bind_plan, deps=deps)),
        Route(UpgradePlan, partial(handlers.upgrade_plan, deps=deps)),
        Route(PlanUpgraded, partial(handlers.on_plan_upgraded, deps=deps)),
        Route(GetOrder, partial(handlers.get_order, deps=deps)),
        Route(ListOrders, partial(handlers.list_orders, deps=deps)),
    ]

    return Wiring(
        routes=routes,
        http=proof_router(deps, api_token),
        setup=store.create_indexes,
        periodic={"unpaid_expiry": partial(handlers.expire_unpaid_lines, deps=deps)},
    )
