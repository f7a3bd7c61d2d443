"""The HTTP edge every service shares: ``/health``, ``/ready``, ``/metrics`` and error bodies.

Refusals become a 4xx with ``{"error": {"code", "message"}}``; the status comes from
one table so the same code always means the same status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.runtime import metrics

STATUS_OF: dict[ErrorCode, int] = {
    ErrorCode.UNKNOWN_ORDER: 404,
    ErrorCode.UNKNOWN_QUOTE: 404,
    ErrorCode.UNKNOWN_CUSTOMER: 404,
    ErrorCode.NOT_YOUR_ORDER: 403,
    ErrorCode.UNAUTHORISED: 401,
    ErrorCode.INVALID_REGISTRATION: 401,
    ErrorCode.INVALID_APPLIANCE_CREDENTIALS: 401,
    ErrorCode.LICENSE_SUSPENDED: 403,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.MOVE_LIMIT_REACHED: 429,
    ErrorCode.PROOF_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_PROOF_TYPE: 415,
    ErrorCode.EMPTY_PROOF: 422,
    ErrorCode.INVALID_MESSAGE: 422,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
}


def error_response(code: ErrorCode, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": str(code), "message": message}},
        status_code=status or STATUS_OF.get(code, 409),
    )


def add_edge(
    app: FastAPI, *, service: str, ready: Callable[[], Awaitable[dict[str, bool]]]
) -> None:
    """Install the operational routes and the error mapping on ``app``."""

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        response = error_response(exc.code, exc.message)
        if isinstance(exc, RateLimited):  # 429: when to try again, in whole seconds
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        body = {
            "error": {"code": "invalid_request", "message": "invalid request", "details": details}
        }
        return JSONResponse(body, status_code=422)

    @app.middleware("http")
    async def _count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_REQUESTS.labels(service, path, str(response.status_code)).inc()
        return response

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "alive", "service": service}

    @app.get("/ready", include_in_schema=False)
    async def is_ready() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
