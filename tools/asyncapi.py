"""The AsyncAPI 3.0 document of the public messages, generated from ``shared.contracts``.

Why generated: the pydantic models *are* the contract (CONTRACT.md); a hand-written
document would drift from them. ``--check`` lets the test suite catch a model changed
without the published document (``docs/asyncapi.json``) being regenerated.

    python -m tools.asyncapi docs/asyncapi.json          # write
    python -m tools.asyncapi --check docs/asyncapi.json  # exit 1 if stale

Output is deterministic (sorted keys, no timestamps), so the committed file only
changes when the contract does.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from shared.basics.errors import ErrorCode
from shared.contracts import REGISTRY, Command, ErrorBody, Message, Query
from shared.contracts.identities import OUTSIDE_ROLES, SERVICE_ROLES, allowed_publishers
from shared.runtime.messaging import (
    CALL_ID_HEADER,
    RETRY_COUNT_HEADER,
    RETRY_ERROR_HEADER,
    RETRY_WAITED_HEADER,
)
from shared.runtime.topology import (
    COMMANDS,
    DEAD_LETTERS_EXCHANGE,
    DEAD_LETTERS_QUEUE,
    EVENTS,
    RETRY_EXCHANGE,
)

JSONObject = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SCHEMAS_REF = "#/components/schemas/"
DEAD_LETTER_CHANNEL = "dead-letters"
ERROR_REPLY_SCHEMA = "ErrorReply"

# What ``shared.runtime.messaging.Bus.dead_letter`` adds to a dead letter, and why it is there.
DEAD_LETTER_HEADERS: dict[str, str] = {
    "x-death-reason": "Why the message was refused, e.g. which field was invalid.",
    "x-original-exchange": "The exchange the message was first published to.",
    "x-original-routing-key": "Its routing key (also kept as the dead letter's routing key).",
    "x-rejected-by": "The service that refused it (quotes, orders, credits, licensing).",
    "x-rejected-at": "When it was refused (ISO 8601, UTC).",
    "x-original-publisher": "The validated user_id of whoever published it (may be empty).",
}
# What a message that was retried also carries (``Bus._retry_later``), dead-lettered or not.
RETRY_HEADERS: dict[str, str] = {
    RETRY_COUNT_HEADER: "How many times it was retried after a transient failure.",
    RETRY_WAITED_HEADER: "The milliseconds its retries waited in delay queues, in all.",
    RETRY_ERROR_HEADER: "The last transient error (type and message).",
}
# The reasons in ``x-death-reason``: the first word, then the details.
DEAD_LETTER_REASONS: dict[str, str] = {
    "invalid message": "not JSON, or a field missing, unknown or invalid (which, and why).",
    "missing message_id": "no `message_id` property: every message needs a unique one.",
    "unauthorized_publisher": "its publisher's role may not send it (who may).",
    "idempotency_key_reused": "an event whose `message_id` was already used for another "
    "message (a command gets a refusal instead).",
    "retries_exhausted": "its handling failed for a transient reason (a service or the "
    "store unavailable) again and again until the retries had waited their total "
    "(`RETRY_TOTAL_SECONDS`, 15 minutes by default); with the attempts and the last error.",
}

DESCRIPTION = (
    f"""\
The messages internal systems (partner portal, accounting, mailer) and operations
tooling exchange with xo-reseller over RabbitMQ. Generated from `shared.contracts`;
do not edit by hand.

## Conventions
- Exchanges (durable, topic): `{COMMANDS}` (commands and queries: things asked of the
  system) and `{EVENTS}` (facts that happened). Routing key = the message name.
- Body: JSON, UTF-8. AMQP properties: `message_id` (required and unique; resending the
  same id does not act twice), `correlation_id` (the order line's id for everything in
  that line's workflow), `content_type=application/json`. Events also carry
  `type` = routing key, a timestamp and the header `schema-version`.
- Money: `{{"amount": <int, minor units>, "currency": "EUR"}}`. Times: ISO 8601 with
  offset, UTC.
- Every command and query may be sent with `reply_to` (request/reply). The reply is
  `{{"ok": true, "result": {{...}}}}` or
  `{{"ok": false, "error": {{"code": "<snake_case>", "message": "<human text>"}}}}`.
  A command sent without `reply_to` that is refused publishes `command.rejected`.
- Each service consumes through its own durable quorum queue named
  `<service>.<routing key>`, with a delivery limit (a guard against a message that crashes
  its consumer again and again).
- Replies echo the request's `correlation_id` and, when the request has one, its header
  `{CALL_ID_HEADER}` (the services match their own requests' replies by it).

## Identities
Every process connects as its own RabbitMQ user, `<prefix><role>` (prefix `xo-` by
default), and sets the AMQP `user_id` property to it (RabbitMQ refuses a mismatch).
Roles: the services {", ".join(f"`{r}`" for r in SERVICE_ROLES)}; outside them
{", ".join(f"`{r}`" for r in OUTSIDE_ROLES)}. Each message below lists in
`x-allowed-publishers` the roles whose messages of that kind are applied: a command
from another role is answered `forbidden` (or `command.rejected`), an event from
another publisher is never applied; both are dead-lettered with reason
`unauthorized_publisher`. Topic permissions let each user publish only those routing
keys. A `message_id` reused with another routing key or body is refused with
`idempotency_key_reused`; nothing is applied.

## Retries
A message whose handling fails for a transient reason (another service or the store
unavailable) is not lost and not retried at once: a copy waits in a delay queue
`{RETRY_EXCHANGE}.<delay>` (1 s, 5 s, 30 s, then every 2 minutes by default:
`RETRY_DELAYS_SECONDS`), published through the headers exchange `{RETRY_EXCHANGE}`, and
RabbitMQ moves it back to the queue it failed in when the delay has passed. The copy keeps
the body and properties (`message_id`, `correlation_id`, `reply_to`...), so it is applied
once and a reply still reaches a requester that waits. Its headers say how it went:
"""
    + "".join(f"- `{name}`: {meaning}\n" for name, meaning in RETRY_HEADERS.items())
    + f"""
Invalid and unauthorized messages are never retried: they are dead-lettered at once.

## Dead letters
A message that is refused (see the reasons below) is moved to the dead-letter exchange
`{DEAD_LETTERS_EXCHANGE}` (topic, durable) with its original routing key and body, and
lands in the queue `{DEAD_LETTERS_QUEUE}` (bound with `#`). RabbitMQ also dead-letters
there a message that crashed its consumer more times than the queue's delivery limit (with
its own `x-death` header). The headers a refused message carries:
"""
    + "".join(f"- `{name}`: {meaning}\n" for name, meaning in DEAD_LETTER_HEADERS.items())
    + """
The reasons `x-death-reason` starts with:
"""
    + "".join(f"- `{reason}`: {meaning}\n" for reason, meaning in DEAD_LETTER_REASONS.items())
)


def _exchange_binding(exchange: str) -> JSONObject:
    """AMQP channel binding: publish to ``exchange`` with the channel address as routing key."""
    return {
        "amqp": {
            "bindingVersion": AMQP_BINDING_VERSION,
            "exchange": {
                "autoDelete": False,
                "durable": True,
                "name": exchange,
                "type": "topic",
                "vhost": "/",
            },
            "is": "routingKey",
        }
    }


def _own_doc(model: type[BaseModel]) -> str | None:
    """The class's own docstring: ``inspect.getdoc`` would inherit the base class's."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def _kind(model: type[Message]) -> str:
    if issubclass(model, Query):
        return "query"
    return "command" if issubclass(model, Command) else "event"


def public_messages(
    registry: Mapping[str, type[Message]] | None = None,
) -> dict[str, type[Message]]:
    """The registry restricted to ``shared.contracts``.

    Any module may subclass ``Message``; filtering makes the document independent of
    what else the process happened to import (e.g. a test run importing the services).
    """
    registry = REGISTRY if registry is None else registry
    return {
        key: model
        for key, model in sorted(registry.items())
        if model.__module__.startswith("shared.contracts")
    }


Names = dict[tuple[type[BaseModel], JsonSchemaMode], str]


def _schemas(messages: Mapping[str, type[Message]]) -> tuple[Names, JSONObject]:
    """Every payload schema in one namespace: name of each model's schema, and all schemas.

    ``models_json_schema`` is ``model_json_schema`` for many models at once: the ``$defs``
    are hoisted together and named without collisions, refs point at components.
    Commands are documented as accepted (validation mode), events and results as sent.
    """
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for model in messages.values():
        if issubclass(model, Command):
            wanted.append((model, "validation"))
            if model.RESULT is not None:
                wanted.append((model.RESULT, "serialization"))
        else:
            wanted.append((model, "serialization"))
    refs, top = models_json_schema(wanted, ref_template=SCHEMAS_REF + "{model}")
    names: Names = {}
    for item in wanted:
        ref = refs[item].get("$ref")
        if not isinstance(ref, str) or not ref.startswith(SCHEMAS_REF):
            raise TypeError(f"{item[0].__name__}: expected a $ref schema, got {refs[item]!r}")
        names[item] = ref.removeprefix(SCHEMAS_REF)
    schemas: JSONObject = dict(top.get("$defs", {}))
    return names, schemas


def _ref(name: str) -> JSONObject:
    return {"$ref": SCHEMAS_REF + name}


def _add_schema(schemas: JSONObject, name: str, schema: JSONObject) -> None:
    if name in schemas and schemas[name] != schema:
        raise ValueError(f"schema name {name!r} is taken by a message model")
    schemas[name] = schema


def _reply_schema(result: str | None) -> JSONObject:
    ok: JSONObject = {
        "properties": {"ok": {"const": True, "type": "boolean"}},
        "required": ["ok"],
        "type": "object",
    }
    if result is not None:
        ok["properties"]["result"] = _ref(result)
        ok["required"] = ["ok", "result"]
    return {"oneOf": [ok, _ref(ERROR_REPLY_SCHEMA)]}


def _message(
    model: type[Message], payload: str, schemas: Mapping[str, Any], *, kind: str
) -> JSONObject:
    key = model.ROUTING_KEY
    doc = _own_doc(model) or f"`{key}` ({kind})."
    message: JSONObject = {
        "contentType": "application/json",
        "correlationId": {
            "description": "The AMQP correlation_id: the order line's id in its workflow.",
            "location": "$message.header#/correlation_id",
        },
        "description": doc,
        "name": model.__name__,
        "payload": _ref(payload),
        "summary": doc.splitlines()[0],
        "tags": [{"name": kind}],
        "title": key,
        "x-schema-version": model.SCHEMA_VERSION,
        # CONTRACT.md, Identities: whose messages of this kind a consumer applies
        "x-allowed-publishers": sorted(allowed_publishers(model)),
    }
    examples = schemas.get(payload, {}).get("examples")
    if isinstance(examples, list) and examples:
        message["examples"] = [
            {"name": f"example-{i}", "payload": example} for i, example in enumerate(examples, 1)
        ]
    if kind == "event":
        message["bindings"] = {"amqp": {"bindingVersion": AMQP_BINDING_VERSION, "messageType": key}}
        message["headers"] = {
            "properties": {
                "schema-version": {
                    "const": model.SCHEMA_VERSION,
                    "description": "The version of this message's schema.",
                    "type": "integer",
                }
            },
            "type": "object",
        }
    return message


def _dead_letter_parts() -> tuple[JSONObject, JSONObject, JSONObject]:
    """Channel, message and operation for ``reseller.dlx``, for operations tooling."""
    channel: JSONObject = {
        "address": None,
        "bindings": _exchange_binding(DEAD_LETTERS_EXCHANGE),
        "description": (
            f"Refused messages, published to `{DEAD_LETTERS_EXCHANGE}` with their original "
            f"routing key and body; all of them land in the queue `{DEAD_LETTERS_QUEUE}`. "
            "The consumer that refused one also keeps a copy (publisher as RabbitMQ "
            "validated it, routing key, reason, attempts, headers, body) and answers "
            "`deadletter.list`, `deadletter.replay` (the same consumer path, judged against "
            "the original publisher, deduplicated by the original message id) and "
            "`deadletter.discard` for its own name; dead letters RabbitMQ itself moved after "
            "the delivery limit (`x-death`) are in the queue only."
        ),
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "title": DEAD_LETTERS_EXCHANGE,
    }
    message: JSONObject = {
        "description": (
            "The original message, body and properties unchanged, with these headers added "
            "when a service refused it, and those of its retries when it was retried. A "
            "message dead-lettered by RabbitMQ after the delivery limit carries RabbitMQ's own "
            "`x-death` header instead."
        ),
        "headers": {
            "properties": {
                **{
                    name: {"description": meaning, "type": "string"}
                    for name, meaning in DEAD_LETTER_HEADERS.items()
                },
                **{
                    name: {
                        "description": meaning,
                        "type": "string" if name == RETRY_ERROR_HEADER else "integer",
                    }
                    for name, meaning in RETRY_HEADERS.items()
                },
            },
            "type": "object",
        },
        "name": "DeadLetter",
        "payload": {"description": "The original body, unchanged (possibly not even JSON)."},
        "title": "dead letter",
    }
    operation: JSONObject = {
        "action": "send",
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDING_VERSION, "deliveryMode": 2}},
        "channel": {"$ref": f"#/channels/{DEAD_LETTER_CHANNEL}"},
        "messages": [{"$ref": f"#/channels/{DEAD_LETTER_CHANNEL}/messages/DeadLetter"}],
        "summary": "Refused messages, with the reason in their headers.",
    }
    return channel, message, operation


def build(registry: Mapping[str, type[Message]] | None = None) -> JSONObject:
    """The AsyncAPI 3.0 document, as a JSON-ready dict."""
    messages = public_messages(registry)
    names, schemas = _schemas(messages)
    _add_schema(
        schemas,
        ERROR_REPLY_SCHEMA,
        {
            "description": "A refusal. `code` is one of the stable snake_case error codes.",
            "properties": {
                "error": _ref(names[(ErrorBody, "serialization")]),
                "ok": {"const": False, "type": "boolean"},
            },
            "required": ["ok", "error"],
            "type": "object",
        },
    )
    channels: JSONObject = {}
    operations: JSONObject = {}
    component_messages: JSONObject = {}
    for key, model in messages.items():
        kind = _kind(model)
        message_id = model.__name__
        if message_id in component_messages:
            raise ValueError(f"two public messages are named {message_id}")
        is_command = issubclass(model, Command)
        payload = names[(model, "validation" if is_command else "serialization")]
        component_messages[message_id] = _message(model, payload, schemas, kind=kind)
        channels[key] = {
            "address": key,
            "bindings": _exchange_binding(COMMANDS if is_command else EVENTS),
            "description": component_messages[message_id]["description"],
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "title": key,
        }
        operation: JSONObject = {
            "action": "receive" if is_command else "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{message_id}"}],
            "summary": component_messages[message_id]["summary"],
            "tags": [{"name": kind}],
        }
        if is_command:
            operation["bindings"] = {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}}
            result = getattr(model, "RESULT", None)
            reply_id = f"{message_id}Reply"
            reply_channel = f"{key}.reply"
            _add_schema(
                schemas,
                reply_id,
                _reply_schema(None if result is None else names[(result, "serialization")]),
            )
            component_messages[reply_id] = {
                "contentType": "application/json",
                "correlationId": {"location": "$message.header#/correlation_id"},
                "description": (
                    f"The answer to `{key}`: `ok` and its `result`, or `ok: false` and an "
                    "error. Sent only when the request had `reply_to`."
                ),
                "name": reply_id,
                "payload": _ref(reply_id),
                "title": f"{key} reply",
            }
            channels[reply_channel] = {
                "address": None,
                "description": f"The queue named by the `reply_to` of a `{key}` request.",
                "messages": {reply_id: {"$ref": f"#/components/messages/{reply_id}"}},
                "title": f"{key} reply",
            }
            operation["reply"] = {
                "address": {
                    "description": "The request's AMQP reply_to property.",
                    "location": "$message.header#/reply_to",
                },
                "channel": {"$ref": f"#/channels/{reply_channel}"},
                "messages": [{"$ref": f"#/channels/{reply_channel}/messages/{reply_id}"}],
            }
        else:
            operation["bindings"] = {
                "amqp": {
                    "bindingVersion": AMQP_BINDING_VERSION,
                    "deliveryMode": 2,
                    "timestamp": True,
                }
            }
        operations[f"{operation['action']}.{key}"] = operation

    channel, message, operation = _dead_letter_parts()
    channels[DEAD_LETTER_CHANNEL] = channel
    component_messages["DeadLetter"] = message
    operations["send.dead-letter"] = operation
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "channels": channels,
        "components": {"messages": component_messages, "schemas": schemas},
        "defaultContentType": "application/json",
        "info": {
            "description": DESCRIPTION,
            "title": "xo-reseller messages",
            "version": "1",
            "x-error-codes": [str(code) for code in ErrorCode],
        },
        "operations": operations,
        "servers": {
            "rabbitmq": {
                "description": "The broker at AMQP_URL (default shown).",
                "host": "127.0.0.1:5672",
                "pathname": "/",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
            }
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sync(path: Path, text: str, *, check: bool) -> str | None:
    """Write ``text`` to ``path``; with ``check``, only say how ``path`` differs (None if not).

    Shared with ``tools.openapi`` so both generators behave the same way.
    """
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return None
    if not path.exists():
        return f"{path} is missing"
    current = path.read_text(encoding="utf-8")
    if current == text:
        return None
    diff = list(
        difflib.unified_diff(
            current.splitlines(), text.splitlines(), str(path), "generated", lineterm="", n=1
        )
    )
    shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
    return f"{path} is out of date:\n{shown}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.asyncapi", description="Write the AsyncAPI document of the messages."
    )
    parser.add_argument("--check", action="store_true", help="fail if PATH is not up to date")
    parser.add_argument("path", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    problem = sync(args.path, render(build()), check=args.check)
    if problem is not None:
        print(problem, file=sys.stderr)
        print(f"regenerate it with: python -m tools.asyncapi {args.path}", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
