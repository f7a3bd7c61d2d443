"""The HTTP edge every service shares: health, errors, limits, client addresses, admin.

- Every error, ours or the framework's (400, 404, 405, 413, 422, 503, 500), is one
  envelope ``{"error": {"code", "message"}}``; the status comes from one table so the
  same code always means the same status. A store outage answers 503, never a bare 500.
- Bodies are limited **before** they are read (``BodyLimit``): a declared length over the
  limit is refused at once, a streamed body as soon as it passes the limit. JSON APIs
  get a few KB; a route that takes files names its own limit.
- The client address is the TCP peer, or what ``X-Forwarded-For`` says only when the
  peer is a configured proxy and the value parses as an address (``ClientAddress``).
- The public listener serves the API, ``/health`` and ``/ready``; ``/metrics``, ``/docs``
  and ``/openapi.json`` are on the admin listener (``admin_app``), bound to 127.0.0.1
  by default, never facing appliances.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.runtime import metrics
from shared.runtime.logging import get_logger

log = get_logger(__name__)
JSON_BODY_LIMIT = 16 * 1024  # bytes: every JSON API
BODY_TIMEOUT_SECONDS = 30.0  # a client that stops sending its body mid-way is cut off
STORE_RETRY_AFTER_SECONDS = 5

STATUS_OF: dict[ErrorCode, int] = {
    ErrorCode.UNKNOWN_ORDER: 404,
    ErrorCode.UNKNOWN_QUOTE: 404,
    ErrorCode.UNKNOWN_CUSTOMER: 404,
    ErrorCode.UNKNOWN_API_KEY: 404,
    ErrorCode.UNKNOWN_PARTNER: 404,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.PARTNER_DISABLED: 403,
    ErrorCode.INVALID_LINK: 410,
    ErrorCode.WEAK_PASSWORD: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NOT_YOUR_ORDER: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAUTHORISED: 401,
    ErrorCode.INVALID_REGISTRATION: 401,
    ErrorCode.INVALID_APPLIANCE_CREDENTIALS: 401,
    ErrorCode.LICENSE_SUSPENDED: 403,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.MOVE_LIMIT_REACHED: 429,
    ErrorCode.PROOF_TOO_LARGE: 413,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_PROOF_TYPE: 415,
    ErrorCode.EMPTY_PROOF: 422,
    ErrorCode.INVALID_PROOF: 422,
    ErrorCode.TOO_MANY_PROOFS: 409,
    ErrorCode.INVALID_MESSAGE: 422,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.BUSY: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}
# The framework's own HTTP errors, in the same envelope.
CODE_OF_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORISED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.BODY_TOO_LARGE,
    422: ErrorCode.INVALID_REQUEST,
    503: ErrorCode.BUSY,
}


def error_body(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, **extra}}


def error_response(code: ErrorCode, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status or STATUS_OF.get(code, 409))


STORE_DOWN: tuple[type[Exception], ...] = (ConnectionFailure, ServerSelectionTimeoutError)


def add_errors(app: FastAPI) -> None:
    """Every error as the envelope, with its status from ``STATUS_OF``."""

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
        body = error_body(ErrorCode.INVALID_REQUEST, "invalid request", details=details)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_OF_STATUS.get(exc.status_code, ErrorCode.BAD_REQUEST)
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    async def _store_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("store_unavailable", error=type(exc).__name__)
        response = error_response(
            ErrorCode.STORE_UNAVAILABLE, "the store is unavailable; try again shortly"
        )
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
        return response

    for kind in STORE_DOWN:
        app.add_exception_handler(kind, _store_down)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("http_request_failed", error=type(exc).__name__)
        return error_response(ErrorCode.INTERNAL_ERROR, "internal error; it was logged")


Ready = Callable[[], Awaitable[dict[str, bool]]]


def add_health(app: FastAPI, *, service: str, ready: Ready) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "alive", "service": service}

    @app.get("/ready", include_in_schema=False)
    async def is_ready() -> JSONResponse:
        """200 when every check holds; else 503 with the failing checks named, in the
        error envelope (``store_unavailable`` when the database is one of them)."""
        checks = await ready()
        failing = [name for name, ok in checks.items() if not ok]
        if not failing:
            return JSONResponse({"ready": True, "checks": checks})
        code = ErrorCode.STORE_UNAVAILABLE if "database" in failing else ErrorCode.BUSY
        body = {
            "ready": False,
            "checks": checks,
            **error_body(code, "not ready: " + ", ".join(failing)),
        }
        return JSONResponse(body, status_code=503)


def add_edge(
    app: FastAPI,
    *,
    service: str,
    ready: Ready,
    large_bodies: Iterable[tuple[str, int]] = (),
    trusted_proxies: Iterable[str] = (),
) -> None:
    """Install the public edge on ``app``: errors, health, limits, client address, counts."""
    add_errors(app)
    add_health(app, service=service, ready=ready)

    # Each one added wraps the others: the address and the limits apply before any route
    # reads a byte, and the count sees every answer.
    app.add_middleware(RequestCount, service=service)
    app.add_middleware(BodyLimit, large_bodies=list(large_bodies))
    app.add_middleware(ClientAddress, trusted_proxies=list(trusted_proxies))


def admin_app(public: FastAPI, *, service: str, ready: Ready) -> FastAPI:
    """The admin listener: health, metrics, and the public API's docs."""
    app = FastAPI(title=f"{public.title} (admin)", docs_url=None, redoc_url=None, openapi_url=None)
    add_errors(app)
    add_health(app, service=service, ready=ready)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return public.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=public.title)

    return app


async def _send_error(send: Send, status: int, code: ErrorCode, message: str) -> None:
    body = JSONResponse(error_body(code, message)).body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestCount:
    """Count each request by route template and status (``xo_http_requests_total``).

    Plain ASGI: Starlette's ``@app.middleware("http")`` ran every request, the licence
    checks appliances send most, through a task group and memory streams. A request the
    app fails on without answering counts as the 500 the error handler then sends."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(self.service, path, str(status)).inc()


class BodyLimit:
    """Refuse a body over its route's limit before the route reads it (413, envelope).

    ``large_bodies`` lists ``(path regex, limit)`` for routes that take files; every
    other request gets ``JSON_BODY_LIMIT``. A declared ``Content-Length`` over the limit
    is refused before a byte is read; a streamed body is cut at the limit: the route sees
    the client gone, and the client gets the 413. A body that stalls for
    ``BODY_TIMEOUT_SECONDS`` gets 408 the same way.
    """

    def __init__(self, app: ASGIApp, large_bodies: list[tuple[str, int]]) -> None:
        self.app = app
        self.large = [(re.compile(pattern), limit) for pattern, limit in large_bodies]

    def limit_for(self, path: str) -> int:
        return next((n for p, n in self.large if p.fullmatch(path)), JSON_BODY_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = (413, ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _send_error(send, *too_large)
            return
        received = 0
        refusal: tuple[int, ErrorCode, str] | None = None
        started = False

        async def limited() -> Message:
            nonlocal received, refusal
            if refusal is not None:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_SECONDS)
            except TimeoutError:
                refusal = (408, ErrorCode.REQUEST_TIMEOUT, "the body came too slowly")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refusal = too_large
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None and not started:
                return  # the route's answer to a cut body is replaced by ours
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if refusal is None or started:
                raise
        if refusal is not None and not started:
            await _send_error(send, *refusal)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


class ClientAddress:
    """The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    nearest ``X-Forwarded-For`` hop that is not itself a trusted proxy, if (and only if)
    it parses as an IP address. Anything else in the header is ignored."""

    def __init__(self, app: ASGIApp, trusted_proxies: list[str]) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def is_trusted(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(
            ipaddress.ip_address(address) in net for net in self.trusted
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and self.trusted and client and self.is_trusted(client[0]):
            forwarded = dict(scope["headers"]).get(b"x-forwarded-for", b"").decode("latin-1")
            for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
                address = _address(hop)
                if address is None:
                    break  # garbage: keep the proxy's address rather than trust it
                if not self.is_trusted(address):
                    scope = {**scope, "client": (address, 0)}
                    break
        await self.app(scope, receive, send)
