"""The messaging runtime on the real broker: bad input is dead-lettered with its reason and
loses nothing, resends act once, refusals are answered, transient failures retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.orders.domain import OrderLine, unknown_order
from shared.contracts.quotes import RequestQuote
from shared.runtime.messaging import Delivery, Route
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings
from shared.runtime.store import OutboxEntry, OutboxRelay
from shared.runtime.topology import DEAD_LETTERS_QUEUE
from testkit.broker import purge_queues
from testkit.contract_client import ContractClient, read_users
from tests.support.builders import placed_line
from tests.support.flows import quote
from tests.support.system import System, running_system

pytestmark = pytest.mark.integration


async def test_malformed_message_is_dead_lettered_with_reason_and_the_next_is_processed(
    system: System,
) -> None:
    bad_id = await system.client.send("order.place", b"{this is not json")
    good = await quote(system, "r-1")  # the consumer went on
    assert good["quote_number"].startswith("Q-")
    [dead] = await system.client.dead_letters()
    assert dead.message_id == bad_id
    assert dead.body == b"{this is not json"
    headers = dead.headers or {}
    assert "Invalid JSON" in str(headers["x-death-reason"])
    assert headers["x-original-routing-key"] == "order.place"
    assert headers["x-rejected-by"] == "orders"


async def test_invalid_fields_get_a_precise_invalid_message_reply_and_a_dead_letter(
    system: System,
) -> None:
    reply = await system.client.request("order.place", {"reseller_id": "r-1", "space": "moon"})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_message"
    assert "space" in reply["error"]["message"]
    [dead] = await system.client.dead_letters()
    assert "space" in str((dead.headers or {})["x-death-reason"])


async def test_unknown_fields_in_a_command_are_refused_not_ignored(system: System) -> None:
    reply = await system.client.request(
        "quote.request",
        {
            "reseller_id": "r",
            "space": "reseller",
            "edition": "starter",
            "billing": "monthly",
            "discount": 99,
        },
    )
    assert reply["error"]["code"] == "invalid_message"
    assert "discount" in reply["error"]["message"]


async def test_resending_order_place_with_the_same_message_id_creates_one_line(
    system: System,
) -> None:
    body = {"reseller_id": "r-7", "space": "reseller", "edition": "starter", "billing": "monthly"}
    first = await system.client.request("order.place", body, message_id="place-once")
    again = await system.client.request("order.place", body, message_id="place-once")
    assert first == again
    lines = await system.client.ok("order.list", {"reseller_id": "r-7"})
    assert [line["order_id"] for line in lines["orders"]] == [first["result"]["order_id"]]


async def test_refused_command_without_reply_to_publishes_command_rejected(system: System) -> None:
    message_id = await system.client.send(
        "plan.bind",
        {"reseller_id": "r-1", "order_id": "ol_missing", "customer_email": "a@b.example"},
    )
    event = await system.client.wait_event(
        "command.rejected", lambda b: b["message_id"] == message_id
    )
    assert event["command"] == "plan.bind"
    assert event["error"]["code"] == "unknown_order"


async def test_transient_failure_is_redelivered_then_dead_lettered_at_the_delivery_limit(
    settings: Settings,
) -> None:
    attempts: list[str] = []

    async def always_fails(_: RequestQuote, delivery: Delivery) -> None:
        attempts.append(delivery.message_id)
        raise ConnectionError("downstream is down")

    # A stand-in for the quotes service (its broker identity, its queue) that always fails.
    runtime = Runtime("quotes", settings)
    try:
        await runtime.start(Wiring(routes=[Route(RequestQuote, always_fails)]))
        users = read_users(settings.users_file())
        async with ContractClient(settings.amqp_url, settings.amqp_namespace, users) as client:
            message_id = await client.send(
                "quote.request",
                {
                    "reseller_id": "r",
                    "space": "reseller",
                    "edition": "starter",
                    "billing": "monthly",
                },
            )
            [dead] = await client.dead_letters(timeout=30)
        assert dead.message_id == message_id
        assert len(attempts) == settings.delivery_limit + 1  # first delivery + redeliveries
        assert set(attempts) == {message_id}
    finally:
        await runtime.stop()
        stand_in = runtime.topology.queue("quotes", RequestQuote.ROUTING_KEY).name
        await purge_queues(settings.amqp_url, [stand_in])
        await purge_queues(settings.amqp_url, [settings.amqp_namespace + DEAD_LETTERS_QUEUE])


async def test_an_event_saved_before_a_crash_is_published_when_the_service_comes_back(
    settings: Settings,
) -> None:
    """The outbox: the save holds the event; a relay started later publishes it."""
    runtime = Runtime(
        "orders", settings
    )  # not started: we only use its store, as a crashed process
    store = runtime.store("order_lines", OrderLine, unknown=unknown_order)
    line = placed_line("ol_crash", now=datetime.now(UTC))
    assert await store.insert(line)
    await runtime.mongo.close()
    async with running_system(settings, services=("orders",)) as system:
        event = await system.client.wait_event(
            "order.placed", lambda b: b["order_id"] == "ol_crash"
        )
        assert event["correlation_id"] == "ol_crash"


async def test_a_failed_publish_leaves_the_event_for_the_next_pass(settings: Settings) -> None:
    runtime = Runtime("orders", settings)
    store = runtime.store("order_lines", OrderLine, unknown=unknown_order)
    assert await store.insert(placed_line("ol_retry", now=datetime.now(UTC)))
    published: list[str] = []
    failures = [ConnectionError("broker away")]

    async def flaky_publish(entry: OutboxEntry) -> None:
        if failures:
            raise failures.pop()
        published.append(entry.routing_key)

    relay = OutboxRelay(flaky_publish)
    await relay.watch([store.collection])
    with pytest.raises(ConnectionError):
        await relay.drain()
    doc = await store.collection.find_one({"_id": "ol_retry"})
    assert doc is not None and len(doc["outbox"]) == 1  # still there
    assert await relay.drain() == 1
    assert published == ["order.placed"]
    doc = await store.collection.find_one({"_id": "ol_retry"})
    assert doc is not None and doc["outbox"] == [] and not doc["outbox_pending"]
    await runtime.mongo.close()


async def test_the_inbox_forgets_old_replies_but_a_late_resend_still_acts_once(
    system: System,
) -> None:
    body = {
        "reseller_id": "r-inbox",
        "space": "reseller",
        "edition": "starter",
        "billing": "monthly",
    }
    first = await system.client.request("order.place", body, message_id="old-place")
    orders = system.runtimes["orders"]
    system.clock.advance(timedelta(days=system.settings.inbox_retention_days, seconds=1))
    purged = await orders.purge_inbox(system.clock.now())
    assert purged >= 1
    assert await orders.inbox.seen("orders", "old-place") is None
    again = await system.client.request("order.place", body, message_id="old-place")
    assert again["result"]["order_id"] == first["result"]["order_id"]  # same line, not a new one
    lines = await system.client.ok("order.list", {"reseller_id": "r-inbox"})
    assert len(lines["orders"]) == 1


async def test_each_service_relays_the_outboxes_it_names_and_scans_them_by_an_index(
    system: System,
) -> None:
    """``Wiring.outboxes`` is the relay's whole list: each aggregate collection, indexed on
    ``outbox_pending`` (every save and every poll looks for it)."""
    relayed = {
        name: sorted(collection.name for collection in runtime.relay.collections)
        for name, runtime in system.runtimes.items()
    }
    assert relayed == {
        "quotes": ["quotes"],
        "orders": ["api_keys", "order_lines"],
        "credits": ["accounts"],
        "licensing": ["customers"],
    }
    for runtime in system.runtimes.values():
        for collection in runtime.relay.collections:
            indexes = await collection.index_information()
            assert any(index["key"] == [("outbox_pending", 1)] for index in indexes.values())
