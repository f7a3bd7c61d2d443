"""The arrows of the architecture map (README, Architecture) only point down.

Product code (``services``) and the packages it runs on (``shared``) import no tooling
and no tests; ``shared`` imports no service; no service imports another; ``bench``
imports no ``tests``. Checked on the source, so a new import that breaks a rule fails
here before it confuses a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in ``package``."""
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("shared", {"services", "tools", "testkit", "tests", "bench"}),
        ("services", {"tools", "testkit", "tests", "bench"}),
        ("tools", {"tests", "bench"}),
        ("testkit", {"tests", "bench"}),
        ("bench", {"tests"}),
    ],
)
def test_imports_point_down(package: str, forbidden: set[str]) -> None:
    wrong = [(f, m) for f, m in _imports(package) if _top(m) in forbidden]
    assert wrong == [], f"{package} must not import {sorted(forbidden)}"


def test_no_service_imports_another() -> None:
    wrong = [
        (f, m)
        for f, m in _imports("services")
        if m.startswith("services.") and m.split(".")[1] != Path(f).parts[1]
    ]
    assert wrong == []


def test_the_domain_does_no_io() -> None:
    """Domain modules decide; they import no driver, framework or runtime wiring (only the
    ``Aggregate`` base of ``shared.runtime.store``)."""
    io = {"pymongo", "aio_pika", "aiormq", "faststream", "httpx", "fastapi", "gridfs", "uvicorn"}
    wiring = {"shared.runtime.service", "shared.runtime.messaging", "shared.runtime.http"}
    wrong = [
        (f, m)
        for f, m in _imports("services")
        if "domain" in Path(f).parts[-1] or "domain" in Path(f).parts[:-1]
        if _top(m) in io or m in wiring
    ]
    assert wrong == []
