"""The OpenAPI documents of the four services' HTTP APIs, generated from their FastAPI apps.

Why generated offline: CI and the docs check must not need RabbitMQ or MongoDB. Each
app is built the way ``shared.runtime.service.http_app`` builds it (title, version, the shared
edge, the service's router) but without a ``Runtime``: the routers only close over
their dependencies, so placeholders that refuse every use are enough to describe them.

    python -m tools.openapi docs          # write docs/openapi-<service>.json
    python -m tools.openapi --check docs  # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

from fastapi import APIRouter, FastAPI

from services.licensing.app import appliance_router
from services.licensing.handlers import LicensingDeps
from services.orders.app import proof_router
from services.orders.handlers import OrdersDeps
from shared.runtime.http import add_edge
from shared.runtime.settings import SERVICES
from tools.asyncapi import render, sync

T = TypeVar("T")


class _Unwired:
    """Stands in for a service's dependencies: building the docs never runs a handler."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"{self._what}.{name}: documentation-only app, nothing is wired")


def _placeholder(kind: type[T]) -> T:
    return cast(T, _Unwired(kind.__name__))


# The HTTP router each service adds to the shared edge (mirrors the services' ``wire()``).
ROUTERS: dict[str, Callable[[], APIRouter | None]] = {
    "quotes": lambda: None,
    "orders": lambda: proof_router(_placeholder(OrdersDeps), api_token="not-used"),
    "credits": lambda: None,
    "licensing": lambda: appliance_router(_placeholder(LicensingDeps)),
}


async def _never_ready() -> dict[str, bool]:
    return {"broker": False, "database": False}


def build_app(service: str) -> FastAPI:
    """The service's FastAPI app as ``http_app`` builds it, minus the lifespan and runtime."""
    app = FastAPI(title=f"xo-reseller {service}", version="1")
    add_edge(app, service=service, ready=_never_ready)
    if service not in ROUTERS:
        raise KeyError(f"{service}: say in tools.openapi.ROUTERS which router it serves")
    router = ROUTERS[service]()
    if router is not None:
        app.include_router(router)
    return app


def build(service: str) -> dict[str, Any]:
    """The OpenAPI document of one service."""
    return build_app(service).openapi()


def path_of(directory: Path, service: str) -> Path:
    return directory / f"openapi-{service}.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.openapi", description="Write the OpenAPI document of each service."
    )
    parser.add_argument("--check", action="store_true", help="fail if a document is not up to date")
    parser.add_argument("directory", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    failed = False
    for service in SERVICES:
        path = path_of(args.directory, service)
        problem = sync(path, render(build(service)), check=args.check)
        if problem is not None:
            failed = True
            print(problem, file=sys.stderr)
        elif not args.check:
            print(f"wrote {path}")
    if failed:
        print(f"regenerate them with: python -m tools.openapi {args.directory}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
