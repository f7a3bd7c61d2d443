"""Orders' HTTP routes: the proof upload (O3), since files don't belong in messages."""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

import hmac
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Header, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.orders import handlers
from services.orders.handlers import OrdersDeps
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.orders import ProofView


def router(deps: OrdersDeps) -> APIRouter:
    routes = APIRouter(prefix="/v1")
    bearer = HTTPBearer(auto_error=False)

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), deps.api_token.encode()):
            raise Refused(ErrorCode.UNAUTHORISED, "missing or wrong API token")

    @routes.post(
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

    return routes
