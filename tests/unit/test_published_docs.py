"""The published AsyncAPI and OpenAPI documents are current and cover the public contract.

Why: ``docs/*.json`` are what other teams read; a contract model or route changed
without regenerating them, or a name of CONTRACT.md missing from them, must fail here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faststream.rabbit.annotations import RabbitMessage

from shared.runtime.messaging import Bus
from shared.runtime.settings import SERVICES
from shared.runtime.topology import COMMANDS, DEAD_LETTERS_EXCHANGE, EVENTS, Topology
from tests.support.clock import FixedClock
from tests.unit.team_contract import read_contract, routing_keys
from tools import asyncapi, openapi

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

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
    keys = routing_keys(read_contract())
    channels = asyncapi_doc["channels"]
    by_address = {c["address"]: c for c in channels.values() if c.get("address")}
    expected_exchange = {
        "commands": (keys.commands, COMMANDS),
        "queries": (keys.queries, COMMANDS),
        "events": (keys.events, EVENTS),
    }
    for kind, (names, exchange_of_kind) in expected_exchange.items():
        missing = sorted(names - by_address.keys())
        assert not missing, f"CONTRACT.md {kind} missing from docs/asyncapi.json: {missing}"
        for name in names:
            exchange = by_address[name]["bindings"]["amqp"]["exchange"]["name"]
            assert exchange == exchange_of_kind, f"{name} is on {exchange}"


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: dict[str, Any] = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reply_documents_the_error_and_its_codes(asyncapi_doc: dict[str, Any]) -> None:
    """A caller reading any reply finds ``ok: false`` with an ``ErrorBody`` whose ``code``
    lists the error codes, and the ``ok: true`` shape with its result."""
    receives = {k: op for k, op in asyncapi_doc["operations"].items() if op["action"] == "receive"}
    replies = {k: op for k, op in receives.items() if "reply" in op}
    assert replies, "no operation documents a reply"
    codes = asyncapi_doc["components"]["schemas"]["ErrorCode"]["enum"]
    assert "invalid_message" in codes  # the runtime's own refusal of a malformed message
    for name, operation in replies.items():
        for ref in operation["reply"]["messages"]:
            message = _resolve(asyncapi_doc, _resolve(asyncapi_doc, ref["$ref"])["$ref"])
            shapes = _resolve(asyncapi_doc, message["payload"]["$ref"])["oneOf"]
            refused = [_resolve(asyncapi_doc, s["$ref"]) for s in shapes if "$ref" in s]
            accepted = [s for s in shapes if "$ref" not in s]
            assert len(refused) == 1 and len(accepted) == 1, f"{name}: {shapes}"
            error = _resolve(asyncapi_doc, refused[0]["properties"]["error"]["$ref"])
            assert error["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
            assert accepted[0]["properties"]["ok"]["const"] is True, name
            assert "result" in accepted[0]["required"], name


def test_commands_each_document_a_reply(asyncapi_doc: dict[str, Any]) -> None:
    """CONTRACT.md: every command may be sent with ``reply_to``."""
    keys = routing_keys(read_contract())
    replied = {
        _resolve(asyncapi_doc, op["channel"]["$ref"])["address"]
        for op in asyncapi_doc["operations"].values()
        if op["action"] == "receive" and "reply" in op
    }
    missing = sorted((keys.commands | keys.queries) - replied)
    assert not missing, f"documented without a reply: {missing}"


def test_dead_letters_go_where_the_contract_says(asyncapi_doc: dict[str, Any]) -> None:
    """CONTRACT.md names the dead-letter exchange; the code and the document use it."""
    match = re.search(r"Dead letters go to `([^`]+)`", read_contract())
    assert match, "CONTRACT.md no longer names the dead-letter exchange"
    assert match.group(1) == DEAD_LETTERS_EXCHANGE
    assert f"`{match.group(1)}`" in asyncapi_doc["info"]["description"]


async def test_dead_letter_headers_documented_are_the_ones_set() -> None:
    """The headers the document lists are exactly those ``Bus.dead_letter`` adds.

    ``dead_letter`` runs on a stand-in for the bus (only what it reads), so that this
    test follows the method, not the bus's constructor."""
    published: list[dict[str, Any]] = []

    class Link:
        async def publish(self, exchange: str, message: Any, routing_key: str) -> None:
            published.append({"exchange": exchange, "headers": message.headers})

    class Message:
        raw_message = SimpleNamespace(
            routing_key="order.place",
            headers={"kept": "yes"},
            exchange="reseller.commands",
            body=b"{}",
            message_id="m-1",
            correlation_id=None,
            content_type="application/json",
            user_id="storefront",
            **dict.fromkeys(
                ("content_encoding", "priority", "reply_to", "timestamp", "type", "app_id")
            ),
        )
        acked = False

        async def ack(self) -> None:
            self.acked = True

    bus = SimpleNamespace(
        link=Link(),
        topology=Topology(),
        service="orders",
        identity=SimpleNamespace(user_id="orders"),
        clock=FixedClock(datetime(2026, 3, 10, tzinfo=UTC)),
        keeper=None,
    )
    message = Message()
    await Bus.dead_letter(
        cast(Bus, bus),
        cast(RabbitMessage, message),
        "invalid message: body: not JSON",
        route="order.place",
    )
    assert message.acked
    [sent] = published
    assert sent["exchange"] == DEAD_LETTERS_EXCHANGE
    assert sent["headers"]["kept"] == "yes"
    assert set(sent["headers"]) - {"kept"} == set(asyncapi.DEAD_LETTER_HEADERS)


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
