"""``xo-reseller``, the operations CLI, through its real console script against the real
broker: the services and the console run in this process, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.orders.domain import order_id_for
from shared.runtime.settings import Settings
from tests.integration.console_support import Console, running_console
from tests.support.dead_letters import (
    placement_dead_lettered_while_credits_is_down,
    quick_to_give_up,
)
from tests.support.flows import PNG, bound_order, place, upload
from tests.support.system import System, running_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
SCRIPT = shutil.which("xo-reseller", path=str(Path(sys.executable).parent)) or "xo-reseller"


async def cli(system: System, *args: str, stdin: str = "") -> tuple[int, Any, str]:
    """Run ``xo-reseller ARGS --json``: (exit code, parsed JSON or None, stderr)."""
    settings = system.settings
    env = {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "AMQP_NAMESPACE": settings.amqp_namespace,
        "AMQP_USER_PREFIX": settings.amqp_user_prefix,
        "BROKER_USERS_FILE": str(settings.users_file()),
        "XO_OPERATOR": "cli-tester",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        *args,
        "--json",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    text = out.decode().strip()
    return process.returncode or 0, json.loads(text) if text else None, err.decode()


async def _submitted(system: System, console: Console, reseller: str) -> str:
    order_id: str = (await place(system, reseller))["order_id"]
    assert (await upload(system, order_id, reseller, PNG, "proof.png")).status_code == 201
    await eventually(
        lambda: console.store.line(order_id),
        lambda line: line is not None and line.status == "proof_submitted",
    )
    return order_id


async def test_operator_create_sends_only_an_argon2id_hash(system: System) -> None:
    async with running_console(system) as console:
        code, made, _ = await cli(
            system,
            "operator",
            "create",
            "Alice@Ops.Example",
            "--name",
            "Alice",
            "--password-stdin",
            stdin="correct horse battery\n",
        )
        assert code == 0 and made["email"] == "alice@ops.example"
        stored = await console.store.operator("alice@ops.example")
        assert stored is not None and stored.password_hash.startswith("$argon2id$")
        assert "correct horse" not in stored.password_hash
        code, _, err = await cli(
            system,
            "operator",
            "create",
            "alice@ops.example",
            "--password-stdin",
            stdin="another long password\n",
        )
        assert code == 1 and "email_in_use" in err
        code, _, err = await cli(
            system, "operator", "create", "bob@ops.example", "--password-stdin", stdin="short\n"
        )
        assert code == 2 and "12 characters" in err


async def test_review_list_reject_accept_and_a_second_decision_is_refused(system: System) -> None:
    async with running_console(system) as console:
        order_id = await _submitted(system, console, "r-cli")
        code, queue, _ = await cli(system, "review", "list")
        assert code == 0
        item = next(i for i in queue["lines"] if i["order_id"] == order_id)
        assert (item["content_type"], item["reseller_id"]) == ("image/png", "r-cli")
        assert item["amount_due"] == 199900
        code, _, err = await cli(system, "review", "reject", order_id, "--reason", " ")
        assert code == 2
        system.clock.advance(timedelta(seconds=1))
        code, rejected, _ = await cli(system, "review", "reject", order_id, "--reason", "blurry")
        assert code == 0 and rejected["status"] == "awaiting_proof"
        system.clock.advance(timedelta(seconds=1))
        assert (await upload(system, order_id, "r-cli")).status_code == 201
        system.clock.advance(timedelta(seconds=1))
        code, accepted, _ = await cli(system, "review", "accept", order_id)
        assert code == 0 and accepted["status"] == "paid"
        code, _, err = await cli(system, "review", "accept", order_id)
        assert code == 1 and "order_not_awaiting_proof" in err
        timeline = await eventually(
            lambda: cli(system, "line", "show", order_id),
            lambda r: r[1] is not None and r[1]["status"] == "paid",
        )
        entries = timeline[1]["entries"]
        keys = [e["routing_key"] for e in entries]
        assert keys.count("proof.submitted") == 2 and "proof.rejected" in keys
        accepted_entry = next(e for e in entries if e["routing_key"] == "proof.accepted")
        assert accepted_entry["operator"].startswith("cli-tester")
        assert accepted_entry["publisher"] == system.client.users["orders"]["username"]


async def test_stuck_lines_and_customers_through_the_cli(system: System) -> None:
    async with running_console(system) as console:
        waiting = (await place(system, "r-stuck"))["order_id"]
        await eventually(lambda: console.store.line(waiting), lambda line: line is not None)
        code, stuck, _ = await cli(system, "lines", "stuck")
        assert code == 0 and waiting not in [s["order_id"] for s in stuck["lines"]]
        system.clock.advance(timedelta(days=8))
        code, stuck, _ = await cli(system, "lines", "stuck")
        found = {s["order_id"]: s for s in stuck["lines"]}
        assert found[waiting]["kind"] == "awaiting_proof"
        assert found[waiting]["age_seconds"] >= 8 * 86400

        email = "carol@example.com"
        await bound_order(system, "r-cust", email)
        await system.client.wait_event("license.unlocked", lambda b: b["customer_email"] == email)
        code, shown, _ = await cli(system, "customer", "show", email)
        assert code == 0 and shown["status"] in ("active", "expired") and len(shown["plans"]) == 1
        code, _, err = await cli(system, "customer", "suspend", email, "--reason", "chargeback")
        assert code == 0, err
        code, shown, err = await cli(system, "customer", "show", email)
        assert code == 0, err
        assert (shown["status"], shown["suspension_reason"]) == ("suspended", "chargeback")
        assert shown["suspended_by"].startswith("cli-tester")
        suspended = await system.client.wait_event(
            "license.suspended", lambda b: b["customer_email"] == email
        )
        assert suspended["operator"].startswith("cli-tester")  # who acted, in the event (L8)
        code, _, _ = await cli(system, "customer", "reinstate", email, "--reason", "paid")
        code, shown, _ = await cli(system, "customer", "show", email)
        assert code == 0 and shown["status"] != "suspended"


async def test_queues_and_exit_codes_for_scripts(system: System) -> None:
    async with running_console(system):
        code, view, _ = await cli(system, "queues")
        assert code == 0
        names = {q["name"]: q for q in view["queues"]}
        assert names["operations.order.placed"]["consumers"] >= 1
        if view["source"] == "management":
            assert names["operations.order.placed"]["unacked"] is not None
        code, _, err = await cli(system, "dlq", "list", "--service", "nobody", "--timeout", "1")
        assert code == 3 and "no answer" in err
        code, _, _ = await cli(system, "review", "frobnicate")
        assert code == 2


async def test_dlq_lists_and_replays_a_placement_kept_while_credits_was_down(
    settings: Settings,
) -> None:
    """A real dead letter: ``order.place`` past its retries while credits was down. Once
    credits is back, ``dlq replay`` places the line once; a second replay is a duplicate."""
    async with running_system(quick_to_give_up(settings)) as system:
        message_id = await placement_dead_lettered_while_credits_is_down(system, "r-dlq")
        code, letters, _ = await cli(system, "dlq", "list", "--service", "orders")
        assert code == 0
        [letter] = letters
        assert letter["message_id"] == message_id
        assert letter["routing_key"] == "order.place"
        assert letter["reason"].startswith("retries_exhausted: 4 attempts")
        assert "UpstreamUnavailable" in letter["reason"]  # credits did not answer
        assert letter["publisher"] == f"{settings.amqp_user_prefix}storefront"
        assert letter["attempts"] == 4

        code, results, _ = await cli(system, "dlq", "replay", "orders", message_id)
        assert code == 0
        assert results == [
            {"service": "orders", "message_id": message_id, "status": "replayed", "outcome": "ok"}
        ]
        lines = await system.client.ok("order.list", {"reseller_id": "r-dlq"})
        assert [line["order_id"] for line in lines["orders"]] == [order_id_for("r-dlq", message_id)]
        audit = await system.client.wait_event(
            "deadletter.replayed", lambda b: b["message_id"] == message_id
        )
        assert audit["operator"].startswith("cli-tester") and audit["outcome"] == "ok"

        code, results, _ = await cli(system, "dlq", "replay", "orders", message_id)
        assert code == 0 and results[0]["outcome"] == "duplicate"
        lines = await system.client.ok("order.list", {"reseller_id": "r-dlq"})
        assert len(lines["orders"]) == 1  # applied once
        code, letters, _ = await cli(system, "dlq", "list", "--service", "orders")
        assert (code, letters) == (0, [])
        code, letters, _ = await cli(system, "dlq", "list", "--service", "orders", "--all")
        assert code == 0
        assert [(d["status"], d["replays"], d["last_outcome"]) for d in letters] == [
            ("replayed", 2, "duplicate")
        ]
        code, results, _ = await cli(system, "dlq", "replay", "orders", "no-such-id")
        assert code == 1 and results[0]["outcome"] == "unknown_dead_letter"
