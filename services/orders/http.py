"""Orders' HTTP routes: the proof upload (O3), since files don't belong in messages.

The credential is checked before the body is read: a request without a valid reseller
API key or internal-system token (CONTRACT.md, Identities), for a line it may not send
a proof to, is answered without reading a byte of its file. Then the body is parsed
here (one file, a few small fields), within the route's own body limit
(``shared.runtime.http.BodyLimit``, set by ``app.py`` from ``PROOF_MAX_BYTES``).

No ``from __future__ import annotations``: FastAPI reads these route signatures at runtime.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile

from services.orders import handlers
from services.orders.handlers import OrdersDeps
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.orders import ProofView

PROOF_PATH = r"/v1/orders/[^/]+/proofs"
MULTIPART_OVERHEAD = 64 * 1024  # bytes beyond the proof: boundaries, part headers, the name
FORM_FIELDS = 4  # small text fields a client may add beside the file (ignored)
FORM_FIELD_BYTES = 1024

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The proof: one PDF, PNG or JPEG file.",
                        }
                    },
                }
            }
        },
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description}


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("unauthorised: no bearer credential, a wrong one, or a revoked API key"),
    403: _error("forbidden (an API key sent for another reseller) or not_your_order"),
    404: _error("unknown_order"),
    409: _error("order_not_awaiting_proof, or too_many_proofs on this line"),
    413: _error("body_too_large or proof_too_large"),
    415: _error("unsupported_proof_type: not a PDF, PNG or JPEG by content"),
    422: _error("empty_proof; invalid_proof (does not parse or decode, or carries more)"),
    503: _error("busy: too many uploads to this line at once; see Retry-After"),
}


async def _read_proof(request: Request, max_bytes: int) -> tuple[str | None, bytes]:
    """The multipart field ``file``: its name as sent and at most ``max_bytes + 1`` bytes
    (one over is enough to refuse)."""
    async with request.form(
        max_files=1, max_fields=FORM_FIELDS, max_part_size=FORM_FIELD_BYTES
    ) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Refused(
                ErrorCode.INVALID_REQUEST,
                "send the proof as the file of the multipart/form-data field `file`",
            )
        return upload.filename, await upload.read(max_bytes + 1)


def router(deps: OrdersDeps) -> APIRouter:
    routes = APIRouter(prefix="/v1")
    bearer = HTTPBearer(
        auto_error=False,
        description="A reseller API key (`xo_...`, acts as its reseller) or the "
        "internal-system token (acts for `X-Reseller-Id`).",
    )

    @routes.post(
        "/orders/{order_id}/proofs",
        status_code=201,
        summary="Upload a wire-transfer proof (PDF, PNG or JPEG) for an order line (O3)",
        openapi_extra=UPLOAD_BODY,
        responses=UPLOAD_RESPONSES,
    )
    async def upload_proof(
        order_id: Annotated[str, Path(min_length=1, max_length=128)],
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        x_reseller_id: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=128,
                description="The reseller acted for: required with the internal-system "
                "token; with an API key, if sent, it must be the key's reseller.",
            ),
        ] = None,
    ) -> ProofView:
        reseller_id = await handlers.authenticate(
            credentials.credentials if credentials else "", acting_for=x_reseller_id, deps=deps
        )
        return await handlers.submit_proof(
            order_id=order_id,
            reseller_id=reseller_id,
            body=lambda: _read_proof(request, deps.proof_max_bytes),
            deps=deps,
        )

    return routes
