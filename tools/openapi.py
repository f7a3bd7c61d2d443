"""The OpenAPI documents of the four services' HTTP APIs, generated from their FastAPI apps.

Why generated offline: CI and the docs check must not need RabbitMQ or MongoDB. Each
app is built the way ``shared.runtime.service.http_app`` builds it (title, version, the shared
edge, the service's router) but without a ``Runtime``. A service with HTTP routes has
``services/<name>/http.py`` with ``router(deps: <Deps>) -> APIRouter``; the router only
closes over its dependencies, so a placeholder of the ``deps`` type that refuses every
use is enough to describe it. Nothing here lists the routers: a new one is found.

    python -m tools.openapi docs          # write docs/openapi-<service>.json
    python -m tools.openapi --check docs  # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, get_type_hints

from fastapi import APIRouter, FastAPI

from shared.runtime.http import add_edge
from shared.runtime.settings import SERVICES
from tools.asyncapi import render, sync


class _Unwired:
    """Stands in for a service's dependencies: building the docs never runs a handler."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"{self._what}.{name}: documentation-only app, nothing is wired")


def router_of(service: str) -> APIRouter | None:
    """The service's HTTP router built on placeholders; None when it has no ``http`` module."""
    name = f"services.{service}.http"
    if importlib.util.find_spec(name) is None:
        return None
    make = importlib.import_module(name).router
    deps = get_type_hints(make)["deps"]
    router: APIRouter = make(deps=_Unwired(deps.__name__))
    return router


async def _never_ready() -> dict[str, bool]:
    return {"broker": False, "database": False}


def build_app(service: str) -> FastAPI:
    """The service's FastAPI app as ``http_app`` builds it, minus the lifespan and runtime."""
    app = FastAPI(title=f"xo-reseller {service}", version="1")
    add_edge(app, service=service, ready=_never_ready)
    router = router_of(service)
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
