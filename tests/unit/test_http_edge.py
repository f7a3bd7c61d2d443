"""The shared HTTP edge (issue: hardened edges): one error envelope, bodies limited before
they are read, client addresses from trusted proxies only, a store outage as 503."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import registry as prometheus
from pydantic import BaseModel
from pymongo.errors import ServerSelectionTimeoutError

from shared.runtime.http import JSON_BODY_LIMIT, add_edge, admin_app

read_bytes: list[int] = []


class Body(BaseModel):
    name: str


async def _ready() -> dict[str, bool]:
    return {"broker": True, "database": True}


def _app(trusted: list[str] | None = None) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_edge(
        app,
        service="probe",
        ready=_ready,
        large_bodies=[(r"/files/[^/]+", 1000)],
        trusted_proxies=trusted or [],
    )

    @app.post("/json")
    async def json_route(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.post("/files/{name}")
    async def file_route(name: str, request: Request) -> dict[str, int]:
        data = await request.body()
        read_bytes.append(len(data))
        return {"size": len(data)}

    @app.get("/who")
    async def who(request: Request) -> dict[str, str]:
        return {"client": request.client.host if request.client else ""}

    @app.get("/store")
    async def store_down() -> None:
        raise ServerSelectionTimeoutError("no primary")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def _client(app: FastAPI, peer: str = "203.0.113.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 5000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://edge")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/json", 405, "method_not_allowed"),
        ("POST", "/json", 422, "invalid_request"),
    ],
)
async def test_framework_errors_use_the_envelope(
    method: str, path: str, status: int, code: str
) -> None:
    async with _client(_app()) as http:
        response = await http.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert "detail" not in response.json()


async def test_malformed_json_is_a_422_envelope() -> None:
    async with _client(_app()) as http:
        response = await http.post(
            "/json", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_a_declared_oversize_json_body_is_refused_before_it_is_read() -> None:
    async with _client(_app()) as http:
        response = await http.post("/json", content=b"x" * (JSON_BODY_LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_a_streamed_body_is_cut_at_its_routes_limit() -> None:
    read_bytes.clear()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"y" * 100  # 5,000 bytes, no Content-Length

    async with _client(_app()) as http:
        response = await http.post("/files/a", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert read_bytes == [] or read_bytes[0] <= 1000  # the route never got it all


async def test_a_file_route_takes_its_own_larger_limit() -> None:
    async with _client(_app()) as http:
        ok = await http.post("/files/a", content=b"z" * 900)
        refused = await http.post("/json", content=b"z" * (JSON_BODY_LIMIT + 10))
    assert ok.status_code == 200 and ok.json() == {"size": 900}
    assert refused.status_code == 413


async def test_a_store_outage_is_a_503_with_retry_after() -> None:
    async with _client(_app()) as http:
        response = await http.get("/store")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert int(response.headers["retry-after"]) > 0


async def test_an_unexpected_error_is_a_500_envelope_without_internals() -> None:
    async with _client(_app()) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text


@pytest.mark.parametrize(
    ("peer", "forwarded", "seen"),
    [
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a proxy: header ignored
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),  # trusted proxy, valid address
        ("10.0.0.2", "198.51.100.7, 10.0.0.3", "198.51.100.7"),  # chain of proxies
        ("10.0.0.2", "evil, 198.51.100.7", "198.51.100.7"),  # nearest untrusted hop wins
        ("10.0.0.2", "<script>", "10.0.0.2"),  # garbage: the proxy's own address
        ("10.0.0.2", "", "10.0.0.2"),
    ],
)
async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: str, seen: str
) -> None:
    async with _client(_app(trusted=["10.0.0.0/24"]), peer=peer) as http:
        response = await http.get("/who", headers={"X-Forwarded-For": forwarded})
    assert response.json() == {"client": seen}


async def test_docs_and_metrics_are_on_the_admin_app_only() -> None:
    public = _app()
    async with _client(public) as http:
        for path in ("/docs", "/openapi.json", "/redoc", "/metrics"):
            assert (await http.get(path)).status_code == 404, path
        assert (await http.get("/health")).status_code == 200
    async with _client(admin_app(public, service="probe", ready=_ready)) as admin:
        assert (await admin.get("/metrics")).status_code == 200
        assert "/json" in (await admin.get("/openapi.json")).json()["paths"]
        assert (await admin.get("/ready")).json()["ready"] is True


def _counted(path: str, status: str) -> float:
    value = prometheus.REGISTRY.get_sample_value(
        "xo_http_requests_total", {"service": "probe", "route": path, "status": status}
    )
    return value or 0.0


async def test_each_answer_is_counted_by_route_template_and_status() -> None:
    """``xo_http_requests_total``: the route's template (not the raw path), the status
    sent, an unmatched path as ``unmatched``, and a route that fails as its 500."""
    before = {
        key: _counted(*key)
        for key in [
            ("/files/{name}", "200"),
            ("/files/{name}", "413"),
            ("unmatched", "404"),
            ("/boom", "500"),
        ]
    }
    async with _client(_app()) as http:
        assert (await http.post("/files/a", content=b"x" * 10)).status_code == 200
        assert (await http.post("/files/b", content=b"x" * 10)).status_code == 200
        assert (await http.post("/files/c", content=b"x" * 2000)).status_code == 413
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.get("/boom")).status_code == 500
    after = {key: _counted(*key) - value for key, value in before.items()}
    assert after == {
        ("/files/{name}", "200"): 2,
        ("/files/{name}", "413"): 0,  # refused before routing: counted, but unmatched
        ("unmatched", "404"): 1,
        ("/boom", "500"): 1,
    }
