"""Dead letters kept by every consumer (shared.runtime.dead_letters), on the real broker and
the embedded store: kept with their validated publisher and reason, listed, replayed
through the consumer's own path (once, against the original publisher), discarded, audited
with the operator; only operations may ask; a store outage loses nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused
from pydantic import BaseModel

from services.orders.domain import unknown_order
from shared.contracts.quotes import RequestQuote
from shared.runtime.messaging import Delivery, Origin, Route
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings
from shared.runtime.store import Aggregate
from shared.runtime.topology import DEAD_LETTERS_QUEUE
from testkit.broker import purge_queues
from testkit.contract_client import ContractClient, read_users
from tests.support.system import System

pytestmark = pytest.mark.integration

Body = dict[str, Any]
QUOTE_REQUEST = {
    "reseller_id": "r",
    "space": "reseller",
    "edition": "starter",
    "billing": "monthly",
}
T0 = "2026-01-01T00:00:00+00:00"


async def listed(
    client: ContractClient,
    service: str,
    *,
    count: int = 1,
    status: str | None = "dead",
    reason: str | None = None,
    timeout: float = 20,
) -> list[Body]:
    """``deadletter.list`` as operations until ``service`` keeps ``count`` dead letters."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await client.ok(
            "deadletter.list", {"service": service, "status": status, "reason": reason}
        )
        assert answer["service"] == service  # the named keeper answered, nobody else
        letters: list[Body] = answer["dead_letters"]
        if len(letters) >= count or asyncio.get_running_loop().time() > deadline:
            return letters
        await asyncio.sleep(0.1)


def operator_command(service: str, message_id: str, **extra: str) -> Body:
    return {"service": service, "message_id": message_id, "operator": "alice@ops.example", **extra}


async def test_an_invalid_message_is_kept_listed_and_dies_again_when_replayed(
    system: System,
) -> None:
    """Kept with its reason, publisher and routing key (and still parked in
    ``reseller.dead-letters``); replaying it cannot make it valid: the consumer refuses it
    again, the keeper keeps it again, and the audit names the operator."""
    prefix = system.settings.amqp_user_prefix
    bad_id = await system.client.send("order.place", {"reseller_id": "r-1", "space": "moon"})
    [parked] = await system.client.dead_letters()
    assert parked.message_id == bad_id
    [kept] = await listed(system.client, "orders")
    assert kept["message_id"] == bad_id
    assert kept["routing_key"] == "order.place"
    assert kept["reason"].startswith("invalid message: space")
    assert kept["publisher"] == f"{prefix}storefront"
    assert kept["status"] == "dead" and kept["attempts"] == 1
    assert json.loads(kept["body_preview"]) == {"reseller_id": "r-1", "space": "moon"}
    assert await listed(system.client, "credits", count=0) == []  # each keeps its own

    result = await system.client.ok("deadletter.replay", operator_command("orders", bad_id))
    assert result == {
        "service": "orders",
        "message_id": bad_id,
        "status": "dead",
        "outcome": "invalid",
    }
    audit = await system.client.wait_event(
        "deadletter.replayed", lambda b: b["message_id"] == bad_id
    )
    assert audit["operator"] == "alice@ops.example" and audit["outcome"] == "invalid"
    assert audit["service"] == "orders" and audit["routing_key"] == "order.place"
    [again] = await listed(system.client, "orders")
    assert (again["replays"], again["last_outcome"]) == (1, "invalid")
    assert again["operator"] == "alice@ops.example"
    lines = await system.client.ok("order.list", {"reseller_id": "r-1"})
    assert lines["orders"] == []  # nothing was applied, either time


async def test_an_unauthorized_message_is_kept_with_its_validated_publisher_and_stays_refused(
    system: System,
) -> None:
    """credits publishes ``plan.bound`` straight into licensing's queue (default exchange,
    past the topic permissions): kept with publisher ``xo-credits`` as RabbitMQ validated
    it. A replay by operations is judged against that publisher again: still refused."""
    users = read_users(system.settings.users_file())
    credits_user = users["credits"]
    url = system.client.amqp_url.replace(
        "guest:guest", f"{credits_user['username']}:{credits_user['password']}"
    )
    forged_id = str(uuid.uuid4())
    body = {
        "order_id": "ol_x",
        "reseller_id": "r",
        "space": "reseller",
        "customer_email": "eve@example.com",
        "edition": "premium",
        "billing": "annual",
        "period_start": T0,
        "period_end": "2036-01-01T00:00:00+00:00",
        "occurred_at": T0,
    }
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(), message_id=forged_id, user_id=credits_user["username"]
            ),
            routing_key=system.settings.amqp_namespace + "licensing.plan.bound",
        )
    [kept] = await listed(system.client, "licensing")
    assert kept["message_id"] == forged_id
    assert kept["reason"].startswith("unauthorized_publisher")
    assert kept["publisher"] == credits_user["username"]
    assert kept["routing_key"] == "licensing.plan.bound"  # as published: by queue name

    result = await system.client.ok("deadletter.replay", operator_command("licensing", forged_id))
    assert (result["outcome"], result["status"]) == ("unauthorized", "dead")
    status = await system.client.ok("license.status", {"customer_email": "eve@example.com"})
    assert (status["edition"], status["reason"]) == ("free", "no_plan")


async def test_discard_records_the_operator_and_reason_and_is_audited_once(
    system: System,
) -> None:
    bad_id = await system.client.send("quote.request", b"{not json")
    await listed(system.client, "quotes")
    command = operator_command("quotes", bad_id, reason="garbage from a test script")
    first = await system.client.request("deadletter.discard", command, message_id="discard-1")
    assert first["result"] == {
        "service": "quotes",
        "message_id": bad_id,
        "status": "discarded",
        "outcome": "discarded",
    }
    again = await system.client.request("deadletter.discard", command, message_id="discard-1")
    assert again == first  # a resend: the same answer, nothing done twice
    audit = await system.client.wait_event(
        "deadletter.discarded", lambda b: b["message_id"] == bad_id
    )
    assert audit["operator"] == "alice@ops.example"
    assert audit["reason"] == "garbage from a test script"
    assert audit["service"] == "quotes" and audit["routing_key"] == "quote.request"
    assert await listed(system.client, "quotes", count=0) == []  # no longer dead
    [dropped] = await listed(system.client, "quotes", status="discarded")
    assert dropped["operator"] == "alice@ops.example"
    assert dropped["discard_reason"] == "garbage from a test script"

    replay = await system.client.request("deadletter.replay", operator_command("quotes", bad_id))
    assert replay["error"]["code"] == "dead_letter_settled"
    other = await system.client.request("deadletter.discard", command)  # another request
    assert other["error"]["code"] == "dead_letter_settled"
    unknown = await system.client.request("deadletter.replay", operator_command("quotes", "nope"))
    assert unknown["error"]["code"] == "unknown_dead_letter"
    await asyncio.sleep(0.5)
    audits = [b for k, b, _ in system.client.events if k == "deadletter.discarded"]
    assert len(audits) == 1


async def test_only_operations_may_list_replay_or_discard(system: System) -> None:
    """The storefront is stopped by the broker (topic permissions); a guest reaching the
    queue is refused by the consumer (``forbidden``), and nothing is replayed."""
    bad_id = await system.client.send("order.place", b"[]")
    await listed(system.client, "orders")
    with pytest.raises(ChannelAccessRefused):
        await system.client.send(
            "deadletter.replay", operator_command("orders", bad_id), as_role="storefront"
        )
    system.client.forget("storefront")
    async with ContractClient(system.settings.amqp_url, system.settings.amqp_namespace) as guest:
        for key, body in (
            ("deadletter.list", {"service": "orders"}),
            ("deadletter.replay", operator_command("orders", bad_id)),
            ("deadletter.discard", operator_command("orders", bad_id, reason="mine")),
        ):
            reply = await guest.request(key, body)
            assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    kept = {d["message_id"]: d for d in await listed(system.client, "orders", count=4)}
    assert (kept[bad_id]["replays"], kept[bad_id]["status"]) == (0, "dead")  # untouched
    # and the guest's own requests are kept as what they are
    guests = [d for d in kept.values() if d["routing_key"].startswith("deadletter.")]
    assert {d["reason"].split(":")[0] for d in guests} == {"unauthorized_publisher"}
    assert {d["publisher"] for d in guests} == {""}


async def test_a_list_for_a_service_nobody_runs_is_answered_by_nobody(system: System) -> None:
    with pytest.raises(TimeoutError):
        await system.client.request("deadletter.list", {"service": "nobody"}, timeout=2)


# --- a consumer failing past its retries, then fixed --------------------------------------


class Tally(Aggregate):
    count: int = 0


class Counted(BaseModel):
    count: int


@asynccontextmanager
async def quotes_stand_in(
    settings: Settings, route: Route
) -> AsyncIterator[tuple[Runtime, ContractClient]]:
    """``quotes`` with this one route (and, as every runtime, its dead-letter keeper);
    retries of 0.2 s and 0.4 s for 1 s in all; queues purged after."""
    settings = settings.model_copy(
        update={"retry_delays_seconds": [0.2, 0.4], "retry_total_seconds": 1.0}
    )
    runtime = Runtime("quotes", settings)
    try:
        await runtime.start(Wiring(routes=[route]))
        users = read_users(settings.users_file())
        async with ContractClient(settings.amqp_url, settings.amqp_namespace, users) as client:
            yield runtime, client
    finally:
        await runtime.stop()
        await purge_queues(
            settings.amqp_url,
            [
                *(runtime.topology.queue("quotes", key).name for key in runtime.routing_keys),
                *(queue.name for queue in runtime.topology.delay_queues()),
                settings.amqp_namespace + DEAD_LETTERS_QUEUE,
            ],
        )


async def test_a_message_past_its_retries_is_kept_and_its_replay_after_the_fix_applies_once(
    settings: Settings,
) -> None:
    """The store behind the handler is "down" for longer than the retries: the message is
    dead-lettered as ``retries_exhausted`` (its failed attempt's claim stays in the inbox).
    Once it is back, a replay applies it once; a second replay answers ``duplicate``."""
    down = True
    runtimes: list[Runtime] = []

    async def count(request: RequestQuote, delivery: Delivery) -> Counted:
        if down:
            raise ConnectionError("the tally store is away")
        store = runtimes[0].store("tallies", Tally, unknown=unknown_order)

        def bump(tally: Tally) -> None:
            tally.count += 1

        saved = await store.mutate(
            request.reseller_id, bump, message_id=delivery.message_id, create=Tally.new
        )
        return Counted(count=saved.aggregate.count)

    async with quotes_stand_in(settings, Route(RequestQuote, count)) as (runtime, client):
        runtimes.append(runtime)
        message_id = await client.send("quote.request", QUOTE_REQUEST)
        [kept] = await listed(client, "quotes", timeout=30)
        assert kept["message_id"] == message_id
        assert kept["reason"].startswith("retries_exhausted: ")
        assert "the tally store is away" in kept["reason"]
        assert kept["attempts"] > 1
        assert kept["publisher"] == f"{settings.amqp_user_prefix}storefront"  # the original's
        assert kept["routing_key"] == "quote.request"
        [parked] = await client.dead_letters()  # and still parked for the record
        assert parked.message_id == message_id

        down = False
        first = await client.ok("deadletter.replay", operator_command("quotes", message_id))
        assert (first["outcome"], first["status"]) == ("ok", "replayed")
        second = await client.ok("deadletter.replay", operator_command("quotes", message_id))
        assert (second["outcome"], second["status"]) == ("duplicate", "replayed")
        tally = await runtime.store("tallies", Tally, unknown=unknown_order).load("r")
        assert tally.count == 1
        audits = [
            await client.wait_event(
                "deadletter.replayed",
                lambda b, o=o: b["outcome"] == o,  # type: ignore[misc]
            )
            for o in ("ok", "duplicate")
        ]
        assert {a["operator"] for a in audits} == {"alice@ops.example"}
        assert {a["message_id"] for a in audits} == {message_id}
        assert await listed(client, "quotes", count=0) == []
        [replayed] = await listed(client, "quotes", status="replayed")
        assert (replayed["replays"], replayed["last_outcome"]) == (2, "duplicate")


class BrokenKeeper:
    """A store that is down: every keep fails."""

    async def keep(
        self,
        raw: AbstractIncomingMessage,
        origin: Origin,
        reason: str,
        *,
        route: str,
        attempts: int,
    ) -> None:
        raise ConnectionError("store unavailable")


async def test_with_the_store_down_the_dead_letter_is_still_parked_and_acked_once(
    settings: Settings,
) -> None:
    async def never(_: RequestQuote, __: Delivery) -> None:
        raise AssertionError("an invalid message never reaches its handler")

    async with quotes_stand_in(settings, Route(RequestQuote, never)) as (runtime, client):
        runtime.bus.keeper = BrokenKeeper()
        bad_id = await client.send("quote.request", b"{broken")
        [parked] = await client.dead_letters()
        assert parked.message_id == bad_id
        assert str((parked.headers or {})["x-death-reason"]).startswith("invalid message")
        await asyncio.sleep(0.5)
        assert await client.dead_letters(timeout=0.5) == []  # acked once, not redelivered
        queue = await client.channel.get_queue(
            runtime.topology.queue("quotes", "quote.request").name, ensure=False
        )
        assert await queue.get(no_ack=True, fail=False) is None
