"""The published AsyncAPI and OpenAPI documents are current and cover the public contract.

Why: ``docs/*.json`` are what other teams read; a contract model or route changed
without regenerating them, or a name of CONTRACT.md missing from them, must fail here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.basics.errors import ErrorCode
from shared.runtime.settings import SERVICES
from shared.runtime.topology import COMMANDS, EVENTS
from tools import asyncapi, openapi

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# CI lays the team folder beside the checkout: <checkout>/../shared/CONTRACT.md.
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
ROUTING_KEY = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`")

REQUIRED_HTTP = {
    "orders": [("post", "/v1/orders/{order_id}/proofs")],
    "licensing": [
        ("post", "/v1/appliances/register"),
        ("get", "/v1/appliances/{appliance_id}/license"),
        ("get", "/v1/public-key"),
    ],
}


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _section(markdown: str, heading: str) -> list[str]:
    """The lines under the ``## <heading>...`` title, up to the next ``## `` title."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {heading}")), None)
    assert start is not None, f"CONTRACT.md has no '## {heading}' section: did its layout change?"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1 : end]


def contract_routing_keys(markdown: str) -> dict[str, set[str]]:
    """Routing keys CONTRACT.md names: first table column (commands, queries), events paragraph."""
    table_keys: set[str] = set()
    for line in _section(markdown, "Commands"):
        if line.startswith("|"):
            first_cell = line.strip("|").split("|")[0]
            table_keys.update(ROUTING_KEY.findall(first_cell))
    events_lines = _section(markdown, "Events")
    while events_lines and not events_lines[0].strip():
        events_lines = events_lines[1:]
    paragraph = []
    for line in events_lines:
        if not line.strip():
            break
        paragraph.append(line)
    event_keys = set(ROUTING_KEY.findall("\n".join(paragraph)))
    return {"commands": table_keys, "events": event_keys}


@pytest.fixture(scope="module")
def asyncapi_doc() -> dict[str, Any]:
    return _load(DOCS / "asyncapi.json")


def test_asyncapi_doc_is_up_to_date() -> None:
    path = DOCS / "asyncapi.json"
    problem = asyncapi.sync(path, asyncapi.render(asyncapi.build()), check=True)
    assert problem is None, f"{problem}\nrun: python -m tools.asyncapi docs/asyncapi.json"


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_doc_is_up_to_date(service: str) -> None:
    path = openapi.path_of(DOCS, service)
    problem = asyncapi.sync(path, asyncapi.render(openapi.build(service)), check=True)
    assert problem is None, f"{problem}\nrun: python -m tools.openapi docs"


def test_every_contract_routing_key_is_a_channel(asyncapi_doc: dict[str, Any]) -> None:
    if not CONTRACT.is_file():
        pytest.skip(f"team contract not found at {CONTRACT} (CI lays it at ../shared)")
    keys = contract_routing_keys(CONTRACT.read_text(encoding="utf-8"))
    # Guard against a layout change making this test vacuous.
    assert len(keys["commands"]) >= 10, f"parsed too few commands/queries: {keys['commands']}"
    assert len(keys["events"]) >= 20, f"parsed too few events: {keys['events']}"
    channels = asyncapi_doc["channels"]
    by_address = {c["address"]: c for c in channels.values() if c.get("address")}
    expected_exchange = {"commands": COMMANDS, "events": EVENTS}
    for kind, names in keys.items():
        missing = sorted(names - by_address.keys())
        assert not missing, f"CONTRACT.md {kind} missing from docs/asyncapi.json: {missing}"
        for name in names:
            exchange = by_address[name]["bindings"]["amqp"]["exchange"]["name"]
            assert exchange == expected_exchange[kind], f"{name} is on {exchange}"


def test_commands_document_their_reply_and_every_error_code(
    asyncapi_doc: dict[str, Any],
) -> None:
    schemas = asyncapi_doc["components"]["schemas"]
    assert set(schemas["ErrorCode"]["enum"]) == {str(code) for code in ErrorCode}
    receives = {k: op for k, op in asyncapi_doc["operations"].items() if op["action"] == "receive"}
    assert receives
    for name, operation in receives.items():
        assert "reply" in operation, f"{name} documents no reply"


def test_dead_letters_are_documented(asyncapi_doc: dict[str, Any]) -> None:
    description = asyncapi_doc["info"]["description"]
    for name in ["reseller.dlx", *asyncapi.DEAD_LETTER_HEADERS]:
        assert name in description


def test_message_examples_are_valid_messages(asyncapi_doc: dict[str, Any]) -> None:
    models = {model.__name__: model for model in asyncapi.public_messages().values()}
    checked = 0
    for name, message in asyncapi_doc["components"]["messages"].items():
        for example in message.get("examples", []):
            models[name].model_validate(example["payload"])
            checked += 1
    assert checked, "no message documents an example"


@pytest.mark.parametrize("service", sorted(REQUIRED_HTTP))
def test_openapi_docs_have_the_contract_routes(service: str) -> None:
    paths = _load(openapi.path_of(DOCS, service))["paths"]
    for method, route in REQUIRED_HTTP[service]:
        assert method in paths.get(route, {}), f"{method.upper()} {route} missing for {service}"
