"""The messaging runtime on the real broker: bad input is dead-lettered with its reason and
loses nothing, resends act once, refusals are answered, transient failures retried."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection

from services.orders.domain import OrderLine, unknown_order
from shared.basics.money import Money
from shared.contracts.credits import BalanceResult, GetBalance
from shared.contracts.orders import OrderCancelled
from shared.contracts.quotes import QuoteIssued, RequestQuote
from shared.runtime.inbox import MessageIdReused
from shared.runtime.messaging import Delivery, Route, UpstreamUnavailable
from shared.runtime.outbox import OutboxRelay
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings
from shared.runtime.store import (
    Document,
    DocumentStore,
    OutboxEntry,
    connect,
)
from shared.runtime.topology import DEAD_LETTERS_QUEUE
from testkit.broker import purge_queues
from testkit.contract_client import ContractClient, read_users
from tests.support.builders import placed_line
from tests.support.clock import FixedClock
from tests.support.flows import quote
from tests.support.system import System, running_system
from tests.support.tallies import Recorder, Tally
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


class QuoteCount(BaseModel):
    count: int
    publisher: str | None


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


def retrying(settings: Settings, *, total: float) -> Settings:
    """Tiny retry delays (0.2 s, then 0.4 s repeated) until ``total`` seconds of delays."""
    return settings.model_copy(
        update={"retry_delays_seconds": [0.2, 0.4], "retry_total_seconds": total}
    )


QUOTE_REQUEST = {
    "reseller_id": "r",
    "space": "reseller",
    "edition": "starter",
    "billing": "monthly",
}


@asynccontextmanager
async def stand_in(
    settings: Settings, service: str, *routes: Route
) -> AsyncIterator[tuple[Runtime, ContractClient]]:
    """A stand-in for ``service`` (its broker identity, its queues) with these handlers, and
    a contract client; its queues, the delay queues and the dead letters are purged after."""
    runtime = Runtime(service, settings)
    try:
        await runtime.start(Wiring(routes=list(routes)))
        users = read_users(settings.users_file())
        async with ContractClient(settings.amqp_url, settings.amqp_namespace, users) as client:
            yield runtime, client
    finally:
        await runtime.stop()
        queues = [runtime.topology.queue(service, r.message.ROUTING_KEY).name for r in routes]
        await purge_queues(
            settings.amqp_url,
            [
                *queues,
                *(queue.name for queue in runtime.topology.delay_queues()),
                settings.amqp_namespace + DEAD_LETTERS_QUEUE,
            ],
        )


async def no_dead_letter(client: ContractClient) -> bool:
    queue = await client.channel.get_queue(client.ns + DEAD_LETTERS_QUEUE, ensure=False)
    return await queue.get(no_ack=True, fail=False) is None


async def test_a_failing_handler_is_retried_with_growing_delays_then_dead_lettered_as_exhausted(
    settings: Settings,
) -> None:
    """Retries wait in delay queues (0.2 s, 0.4 s, 0.4 s...) until 1.5 s of delays have
    passed: six attempts, more than the queue's delivery limit allows (3 redeliveries), so
    retries never use it up; then one dead letter with reason ``retries_exhausted``."""
    attempts: list[tuple[str, float]] = []

    async def always_fails(_: RequestQuote, delivery: Delivery) -> None:
        attempts.append((delivery.message_id, time.monotonic()))
        raise ConnectionError("downstream is down")

    settings = retrying(settings, total=1.5)
    async with stand_in(settings, "quotes", Route(RequestQuote, always_fails)) as (_, client):
        message_id = await client.send("quote.request", QUOTE_REQUEST)
        [dead] = await client.dead_letters(timeout=30)
    assert dead.message_id == message_id
    assert {m for m, _ in attempts} == {message_id}
    assert len(attempts) == 6 > settings.delivery_limit + 1
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    for gap, delay in zip(gaps, [0.2, 0.4, 0.4, 0.4, 0.4], strict=True):
        assert gap >= delay * 0.9, gaps  # each retry waited its delay in the broker
    headers = dead.headers or {}
    assert str(headers["x-death-reason"]).startswith("retries_exhausted: 6 attempts over 1.8 s")
    assert "ConnectionError: downstream is down" in str(headers["x-death-reason"])
    assert headers["x-original-routing-key"] == "quote.request"
    assert headers["x-original-exchange"] == settings.amqp_namespace + "reseller.commands"
    # judged as, and dead-lettered in the name of, whoever published the original
    assert headers["x-original-publisher"] == f"{settings.amqp_user_prefix}storefront"
    assert dead.routing_key == "quote.request"


async def test_a_handler_failing_for_a_while_then_succeeding_is_applied_once(
    settings: Settings,
) -> None:
    """An outage shorter than the retries: the change applied by a failed attempt is not
    applied again, the requester still gets its answer, nothing is dead-lettered."""
    attempts: list[str] = []
    runtime_of: list[Runtime] = []

    async def flaky(request: RequestQuote, delivery: Delivery) -> QuoteCount:
        store = runtime_of[0].store("counts", Tally, unknown=unknown_order)
        saved = await store.mutate(
            request.reseller_id, Tally.bump, message_id=delivery.message_id, create=Tally.new
        )
        attempts.append(delivery.message_id)
        if len(attempts) < 4:  # the save happened, then the process "lost" the store
            raise ConnectionError("store away")
        return QuoteCount(count=saved.aggregate.count, publisher=delivery.publisher)

    route = Route(RequestQuote, flaky)
    async with stand_in(retrying(settings, total=60), "quotes", route) as (runtime, client):
        runtime_of.append(runtime)
        reply = await client.request("quote.request", QUOTE_REQUEST, timeout=20)
        assert await no_dead_letter(client)
        tally = await runtime.store("counts", Tally, unknown=unknown_order).load("r")
    assert len(attempts) == 4 and len(set(attempts)) == 1  # one message, four attempts
    assert tally.count == 1  # applied once
    assert reply["ok"] is True
    assert reply["result"] == {"count": 1, "publisher": f"{settings.amqp_user_prefix}storefront"}


async def test_a_retry_copy_does_not_lend_its_publishers_identity_to_anyone_else(
    settings: Settings,
) -> None:
    """Retry copies are published by the service itself, and only then are their headers
    about the original publisher believed: a message from someone else claiming to be a
    retry of the storefront's is judged as its real publisher's (here: credits')."""
    handled: list[str | None] = []

    async def record(_: RequestQuote, delivery: Delivery) -> None:
        handled.append(delivery.publisher)

    async with stand_in(settings, "quotes", Route(RequestQuote, record)) as (runtime, client):
        forger = await client.sender("credits")
        await forger.channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(QUOTE_REQUEST).encode(),
                message_id="forged-retry",
                user_id=forger.user_id,
                headers={
                    "x-retry-count": 1,
                    "x-original-publisher": f"{settings.amqp_user_prefix}storefront",
                },
            ),
            routing_key=runtime.topology.queue("quotes", "quote.request").name,
        )
        [dead] = await client.dead_letters()
    assert handled == []
    reason = str((dead.headers or {})["x-death-reason"])
    assert reason.startswith(f"unauthorized_publisher: {settings.amqp_user_prefix}credits ")


async def test_twenty_internal_calls_are_in_flight_at_once_from_one_process(
    settings: Settings,
) -> None:
    """``Bus.call`` does not serialise: the stand-in answers only once all 20 requests of
    one caller have arrived, which would time out if calls went one at a time."""
    arrived = 0
    all_in = asyncio.Event()

    async def balance(query: GetBalance, _: Delivery) -> BalanceResult:
        nonlocal arrived
        arrived += 1
        if arrived == 20:
            all_in.set()
        await all_in.wait()
        zero = Money.zero()
        return BalanceResult(
            reseller_id=query.reseller_id,
            available=zero,
            reserved=zero,
            lots=[],
            first_sale_available=True,
        )

    settings = settings.model_copy(update={"rpc_timeout_seconds": 4.0})
    async with stand_in(settings, "credits", Route(GetBalance, balance)):
        caller = Runtime("quotes", settings)  # quotes may ask credits.balance
        await caller.start(Wiring(routes=[]))
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    caller.bus.call(
                        GetBalance(reseller_id=f"r-{i}"),
                        BalanceResult,
                        message_id=f"balance-{i}",
                        correlation_id=None,  # as quotes asks it: no workflow yet
                    )
                    for i in range(20)
                )
            )
            elapsed = time.monotonic() - started
        finally:
            await caller.stop()
    assert [r.reseller_id for r in results] == [f"r-{i}" for i in range(20)]  # each its own
    assert arrived == 20
    assert elapsed < settings.rpc_timeout_seconds
    assert caller.bus.calls_in_flight == 0


async def test_a_call_times_out_as_upstream_unavailable_and_its_late_reply_is_dropped(
    settings: Settings,
) -> None:
    release = asyncio.Event()

    async def balance(query: GetBalance, _: Delivery) -> BalanceResult:
        if query.reseller_id == "slow":
            await release.wait()
        zero = Money.zero()
        return BalanceResult(
            reseller_id=query.reseller_id,
            available=zero,
            reserved=zero,
            lots=[],
            first_sale_available=False,
        )

    settings = settings.model_copy(update={"rpc_timeout_seconds": 0.5})
    async with stand_in(settings, "credits", Route(GetBalance, balance)):
        caller = Runtime("quotes", settings)
        replies: list[str | None] = []
        came = asyncio.Event()
        deliver = caller.bus.link._on_reply

        async def spy(message: AbstractIncomingMessage) -> None:
            await deliver(message)
            replies.append(message.correlation_id)
            came.set()

        caller.bus.link._on_reply = spy
        await caller.start(Wiring(routes=[]))
        try:

            async def ask(reseller_id: str) -> BalanceResult:
                return await caller.bus.call(
                    GetBalance(reseller_id=reseller_id),
                    BalanceResult,
                    message_id=f"ask-{reseller_id}",
                    correlation_id=f"c-{reseller_id}",
                )

            with pytest.raises(UpstreamUnavailable, match=r"credits\.balance: no answer in time"):
                await ask("slow")
            assert caller.bus.calls_in_flight == 0
            release.set()
            await asyncio.wait_for(came.wait(), timeout=5)  # the late reply came...
            assert replies == ["c-slow"]
            answer = await ask("quick")  # ...and answers nothing: the next call gets its own
            assert answer.reseller_id == "quick"
        finally:
            await caller.stop()


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


async def test_a_failed_publish_leaves_the_event_for_a_later_pass(settings: Settings) -> None:
    runtime = Runtime("orders", settings)
    store = runtime.store("order_lines", OrderLine, unknown=unknown_order)
    assert await store.insert(placed_line("ol_retry", now=datetime.now(UTC)))
    published: list[str] = []
    failures = [ConnectionError("broker away")]

    async def flaky_publish(entry: OutboxEntry) -> None:
        if failures:
            raise failures.pop()
        published.append(entry.routing_key)

    clock = FixedClock(datetime.now(UTC))
    relay = OutboxRelay(flaky_publish, clock=clock)
    await relay.watch([store.collection])
    assert await relay.drain() == 0  # failed, reported, not raised
    doc = await store.collection.find_one({"_id": "ol_retry"})
    assert doc is not None and len(doc["outbox"]) == 1  # still there
    assert await relay.drain() == 0  # this document backs off
    clock.advance(timedelta(seconds=1))
    assert await relay.drain() == 1
    assert published == ["order.placed"]
    doc = await store.collection.find_one({"_id": "ol_retry"})
    assert doc is not None and doc["outbox"] == [] and not doc["outbox_pending"]
    assert doc["outbox_claimed_until_ms"] == 0 and doc["outbox_failures"] == 0
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
    """``Wiring.outboxes`` and the kept dead letters (their replay and discard audits) are
    the relay's whole list: each aggregate collection, indexed on ``outbox_pending`` (every
    save and every poll looks for it)."""
    relayed = {
        name: sorted(collection.name for collection in runtime.relay.collections)
        for name, runtime in system.runtimes.items()
    }
    assert relayed == {
        "quotes": ["dead_letters", "quotes"],
        "orders": ["api_keys", "dead_letters", "order_lines"],
        "credits": ["accounts", "dead_letters"],
        "licensing": ["customers", "dead_letters"],
    }
    for runtime in system.runtimes.values():
        for collection in runtime.relay.collections:
            indexes = await collection.index_information()
            assert any(index["key"] == [("outbox_pending", 1)] for index in indexes.values())


# --- the outbox relay: one publication per event with N relays, failures isolated ------


@pytest.fixture
async def outbox(mongo_url: str) -> AsyncIterator[AsyncCollection[Document]]:
    client = connect(mongo_url)
    name = f"relay_{uuid4().hex[:10]}"
    yield client[name]["tallies"]
    await client.drop_database(name)
    await client.close()


AT = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


async def with_events(
    collection: AsyncCollection[Document], count: int, *, events: int = 2
) -> list[str]:
    """``count`` saved aggregates with ``events`` events each; returns the event ids."""
    store = DocumentStore(collection, Tally, unknown=unknown_order)
    ids: list[str] = []
    for n in range(count):
        tally = Tally(id=f"t{n}")
        for e in range(events):
            tally.record(
                OrderCancelled, at=AT, order_id=f"o{n}-{e}", reseller_id="r", correlation_id=None
            )
        ids.extend(entry.event_id for entry in tally.outbox)
        assert await store.insert(tally)
    return ids


async def test_two_relays_publish_each_event_once(outbox: AsyncCollection[Document]) -> None:
    """Two replicas' relays drain the same outboxes at the same time: every event is
    published once, both relays did a share of the work, and every outbox is empty."""
    ids = await with_events(outbox, 40)
    clock = FixedClock(AT)
    first, second = Recorder(), Recorder()
    relays = [
        OutboxRelay(first, clock=clock, name="replica-1"),
        OutboxRelay(second, clock=clock, name="replica-2"),
    ]
    for relay in relays:
        await relay.watch([outbox])
    counts = await asyncio.gather(*(relay.drain() for relay in relays))
    published = first.published + second.published
    assert sorted(published) == sorted(ids)  # each once: no duplicates, none missing
    assert first.published and second.published  # they really raced
    assert counts == [len(first.published), len(second.published)]
    assert await outbox.count_documents({"outbox_pending": True}) == 0
    assert await outbox.count_documents({"outbox_claimed_until_ms": 0}) == 40  # all released


async def test_a_crashed_relays_claim_expires_and_another_relay_publishes_its_events(
    outbox: AsyncCollection[Document],
) -> None:
    ids = await with_events(outbox, 1)
    clock = FixedClock(AT)
    crashed = OutboxRelay(Recorder(), clock=clock, name="crashed", claim_seconds=30)
    await crashed.watch([outbox])
    assert await crashed.claim(outbox) is not None  # ...and the process dies right there
    survivor = Recorder()
    relay = OutboxRelay(survivor, clock=clock, name="survivor", claim_seconds=30)
    await relay.watch([outbox])
    assert await relay.drain() == 0  # the claim holds: not published twice
    clock.advance(timedelta(seconds=29))
    assert await relay.drain() == 0
    clock.advance(timedelta(seconds=1))  # the lease has expired
    assert await relay.drain() == 2
    assert survivor.published == ids


async def test_a_failing_document_does_not_block_the_others_and_backs_off_alone(
    outbox: AsyncCollection[Document],
) -> None:
    """One destination nacks: the other documents are published in the same pass, and so
    is the failing one's other event (each entry is confirmed on its own); the failed entry
    waits a back-off of its own document, and is published once the destination is back."""
    ids = await with_events(outbox, 5, events=2)
    blocked = {ids[0]}  # the first event of t0
    clock = FixedClock(AT)
    recorder = Recorder(lambda entry: entry.event_id in blocked)
    relay = OutboxRelay(recorder, clock=clock)
    await relay.watch([outbox])
    assert await relay.drain() == 9  # the four others, two events each, and t0's second
    assert recorder.attempted.count(ids[0]) == 1
    assert recorder.published.count(ids[1]) == 1
    assert await relay.drain() == 0  # t0 backs off; no tight loop on it
    assert recorder.attempted.count(ids[0]) == 1
    clock.advance(timedelta(seconds=0.5))
    assert await relay.drain() == 0  # failed again: the back-off grows
    assert recorder.attempted.count(ids[0]) == 2
    clock.advance(timedelta(seconds=0.5))
    assert await relay.drain() == 0
    assert recorder.attempted.count(ids[0]) == 2
    blocked.clear()
    clock.advance(timedelta(seconds=0.5))
    assert await relay.drain() == 1
    assert sorted(recorder.published) == sorted(ids)  # each once
    assert recorder.published[-1] == ids[0]  # after its document's other event, once failed
    doc = await outbox.find_one({"_id": "t0"})
    assert doc is not None and doc["outbox_failures"] == 0 and doc["outbox_claimed_by"] == ""


async def test_events_confirmed_beside_a_failure_are_removed_and_never_published_again(
    outbox: AsyncCollection[Document],
) -> None:
    ids = await with_events(outbox, 1, events=3)
    failures = [ids[1]]
    clock = FixedClock(AT)
    recorder = Recorder(lambda entry: entry.event_id in failures)
    relay = OutboxRelay(recorder, clock=clock)
    await relay.watch([outbox])
    assert await relay.drain() == 2
    assert recorder.attempted == ids  # sent in their order
    doc = await outbox.find_one({"_id": "t0"})
    assert doc is not None and [e["event_id"] for e in doc["outbox"]] == [ids[1]]
    failures.clear()
    clock.advance(timedelta(seconds=1))
    assert await relay.drain() == 1
    assert recorder.published == [ids[0], ids[2], ids[1]]  # the confirmed ones once


async def test_the_entries_of_a_document_wait_for_their_confirms_together(
    outbox: AsyncCollection[Document],
) -> None:
    """The last entry of a document is not held back by the confirms before it: all are
    sent, in order, before any confirm is awaited."""
    ids = await with_events(outbox, 1, events=3)
    sent: list[str] = []
    confirms = asyncio.Event()

    async def publish(entry: OutboxEntry) -> None:
        sent.append(entry.event_id)
        if len(sent) == len(ids):
            confirms.set()  # the broker confirms once it has them all
        await asyncio.wait_for(confirms.wait(), timeout=5)

    relay = OutboxRelay(publish, clock=FixedClock(AT))
    await relay.watch([outbox])
    assert await relay.drain() == 3
    assert sent == ids


async def test_an_outage_is_one_error_line_with_a_count_not_a_line_per_pass(
    outbox: AsyncCollection[Document],
) -> None:
    await with_events(outbox, 3)
    lines: list[tuple[str, dict[str, object]]] = []

    class Lines:
        def error(self, event: str, **fields: object) -> None:
            lines.append((event, fields))

        def info(self, event: str, **fields: object) -> None:
            lines.append((event, fields))

    clock = FixedClock(AT)
    down = [True]
    relay = OutboxRelay(
        Recorder(lambda _: down[0]), clock=clock, error_log_seconds=3600, logger=Lines()
    )
    await relay.watch([outbox])
    for _ in range(5):
        await relay.drain()
        clock.advance(timedelta(seconds=10))
    assert [event for event, _ in lines] == ["outbox_publish_failed"]
    [(_, fields)] = lines
    assert fields["pending"] == 3 and fields["failed_documents"] == 3
    assert str(fields["error"]).startswith("ConnectionError: ")
    down[0] = False
    assert await relay.drain() == 6
    assert [event for event, _ in lines] == ["outbox_publish_failed", "outbox_publish_recovered"]


# --- a save publishes its own events (the relay's claim travels in the save) -----------


def cancelled(tally: Tally, n: int = 0) -> None:
    tally.record(OrderCancelled, at=AT, order_id=f"o{n}", reseller_id="r", correlation_id=None)


async def held_store(
    outbox: AsyncCollection[Document], publish: Callable[[OutboxEntry], Awaitable[None]]
) -> tuple[DocumentStore[Tally], OutboxRelay]:
    relay = OutboxRelay(publish, clock=FixedClock(AT), name="saver")
    await relay.watch([outbox])
    return DocumentStore(outbox, Tally, unknown=unknown_order, relay=relay), relay


async def test_a_save_publishes_its_events_itself_with_no_pass(
    outbox: AsyncCollection[Document],
) -> None:
    recorder = Recorder()
    store, relay = await held_store(outbox, recorder)
    tally = Tally(id="t0")
    cancelled(tally)
    assert await store.insert(tally)
    await relay.finish()
    await store.mutate("t0", lambda t: cancelled(t, 1), message_id="m1")
    await relay.finish()
    assert len(recorder.published) == 2
    doc = await outbox.find_one({"_id": "t0"})
    assert doc is not None and doc["outbox"] == [] and doc["outbox_pending"] is False
    assert doc["outbox_claimed_until_ms"] == 0 and doc["outbox_claimed_by"] == ""
    assert await relay.drain() == 0  # nothing left for a pass
    assert recorder.published == recorder.attempted  # each attempted once


async def test_the_removal_after_a_publication_at_save_waits_for_the_savers_turn(
    outbox: AsyncCollection[Document],
) -> None:
    """While this process is changing the aggregate (its turn, ``DocumentStore.mutate``),
    the published entries are not removed: the change is not the one to lose the race."""
    recorder = Recorder()
    relay = OutboxRelay(recorder, clock=FixedClock(AT), name="saver")
    await relay.watch([outbox])
    tally = Tally(id="t0", version=1)
    cancelled(tally)
    assert relay.hold(outbox, tally)
    doc = tally.to_document()
    await outbox.insert_one(doc)
    changing = asyncio.Lock()

    @asynccontextmanager
    async def turn(_: str) -> AsyncIterator[None]:
        async with changing:
            yield

    async with changing:  # a change of t0 is under way
        relay.publish_held(outbox, doc, turn=turn)
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert len(recorder.published) == 1  # published at once...
        stored = await outbox.find_one({"_id": "t0"})
        assert stored is not None and len(stored["outbox"]) == 1  # ...not yet removed
    await relay.finish()
    stored = await outbox.find_one({"_id": "t0"})
    assert stored is not None and stored["outbox"] == [] and stored["outbox_claimed_by"] == ""


async def test_a_save_leaves_a_document_another_relay_holds_to_the_relays(
    outbox: AsyncCollection[Document],
) -> None:
    """Another replica's relay holds the document: the save adds its event without a
    claim and publishes nothing; once the claim ends a pass publishes every event once."""
    ids = await with_events(outbox, 1)
    clock = FixedClock(AT)
    other = OutboxRelay(Recorder(), clock=clock, name="other", claim_seconds=30)
    await other.watch([outbox])
    assert await other.claim(outbox) is not None  # ...and it is slow, or it died
    recorder = Recorder()
    store, relay = await held_store(outbox, recorder)
    relay.clock = clock
    await store.mutate("t0", lambda t: cancelled(t, 9), message_id="m1")
    await relay.finish()
    assert recorder.attempted == []
    doc = await outbox.find_one({"_id": "t0"})
    assert doc is not None and doc["outbox_claimed_by"] == "other" and len(doc["outbox"]) == 3
    clock.advance(timedelta(seconds=30))
    assert await relay.drain() == 3
    assert recorder.published[:2] == ids and len(set(recorder.published)) == 3


async def test_a_failed_publication_at_save_backs_off_and_a_pass_publishes_it(
    outbox: AsyncCollection[Document],
) -> None:
    down = [True]
    recorder = Recorder(lambda _: down[0])
    store, relay = await held_store(outbox, recorder)
    assert isinstance(relay.clock, FixedClock)
    tally = Tally(id="t0")
    cancelled(tally)
    assert await store.insert(tally)  # the save stands: the failure is the relay's
    await relay.finish()
    assert len(recorder.attempted) == 1 and recorder.published == []
    doc = await outbox.find_one({"_id": "t0"})
    assert doc is not None and doc["outbox_failures"] == 1 and doc["outbox_pending"] is True
    assert await relay.drain() == 0  # its back-off holds
    down[0] = False
    relay.clock.advance(timedelta(seconds=0.5))
    assert await relay.drain() == 1
    assert recorder.published == recorder.attempted[-1:]


async def test_a_save_behind_a_publication_in_flight_is_published_after_it_once(
    outbox: AsyncCollection[Document],
) -> None:
    """Two saves of one aggregate in a row: the second comes while the first's events are
    being published (its claim is live), so it waits for the pass the first one's release
    wakes; each event goes out once, in order."""
    gate = asyncio.Event()
    published: list[str] = []

    async def slow(entry: OutboxEntry) -> None:
        await gate.wait()
        published.append(entry.event_id)

    store, relay = await held_store(outbox, slow)
    tally = Tally(id="t0")
    cancelled(tally)
    assert await store.insert(tally)
    first = tally.outbox[0].event_id
    saved = await store.mutate("t0", lambda t: cancelled(t, 1), message_id="m1")
    second = saved.aggregate.outbox[-1].event_id
    gate.set()
    await relay.finish()
    assert published == [first]
    assert relay._wake.is_set()  # the release woke a pass for what came behind it
    assert await relay.drain() == 1
    assert published == [first, second]


H = TypeVar("H")


def seen(handled: H) -> Callable[[], Awaitable[H]]:
    """A probe for ``eventually``: what a stand-in's handler has recorded so far."""

    async def probe() -> H:
        return handled

    return probe


def issued(number: str) -> dict[str, object]:
    """A ``quote.issued`` body for quote ``number``."""
    return QuoteIssued(
        quote_number=number,
        reseller_id="r",
        space="reseller",
        edition="starter",
        billing="monthly",
        amount_due=Money(amount=3920),
        valid_until=datetime(2026, 4, 1, tzinfo=UTC),
        occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
    ).model_dump(mode="json")


async def test_a_route_without_inbox_claims_nothing_and_a_reused_id_is_refused_as_by_the_inbox(
    settings: Settings,
) -> None:
    """``Route(inbox=False)`` (the console's event log, keyed by message id): nothing is
    claimed in the inbox; a handler that finds the id already used for another message
    raises ``MessageIdReused``, and the event is dead-lettered with
    ``idempotency_key_reused`` as the inbox's own check does, the next one handled."""
    handled: dict[str, list[str]] = {}

    async def keyed_log(event: QuoteIssued, delivery: Delivery) -> None:
        earlier = handled.setdefault(delivery.message_id, [])
        earlier.append(event.quote_number)
        if len(set(earlier)) > 1:
            raise MessageIdReused(f"message_id {delivery.message_id} was logged for another event")

    route = Route(QuoteIssued, keyed_log, inbox=False)
    async with stand_in(settings, "credits", route) as (runtime, client):
        for number, message_id in (("Q-1", "m-1"), ("Q-1", "m-1"), ("Q-2", "m-1"), ("Q-3", "m-2")):
            await client.publish_event(
                "quote.issued", issued(number), message_id=message_id, as_role="quotes"
            )
        [dead] = await client.dead_letters(timeout=30)
        # the last event is handled after the dead letter
        await eventually(seen(handled), lambda got: "m-2" in got, timeout=5)
        assert await runtime.inbox.collection.count_documents({}) == 0
    assert handled == {"m-1": ["Q-1", "Q-1", "Q-2"], "m-2": ["Q-3"]}  # a redelivery is fine
    assert dead.message_id == "m-1" and json.loads(dead.body)["quote_number"] == "Q-2"
    reason = str((dead.headers or {})["x-death-reason"])
    assert reason.startswith("idempotency_key_reused: message_id m-1 was logged"), reason


async def test_a_route_reads_ahead_beside_the_claim_and_its_handler_starts_once_it_is_settled(
    settings: Settings, outbox: AsyncCollection[Document]
) -> None:
    """``Route(read_ahead=...)``: the aggregate is read while the inbox claims the id, the
    handler runs only once the claim is stored, a read ahead that fails changes nothing
    (the handler loads for itself), and a resent event still counts once."""
    tallies = DocumentStore(outbox, Tally, unknown=unknown_order)
    runtimes: list[Runtime] = []
    handled: list[tuple[str, bool]] = []

    async def read_ahead(event: QuoteIssued) -> None:
        if event.quote_number == "Q-bad":
            raise RuntimeError("the read ahead failed")
        await tallies.read_ahead(event.quote_number)

    async def count(event: QuoteIssued, delivery: Delivery) -> None:
        claimed = await runtimes[0].inbox.seen("credits", delivery.message_id)
        handled.append((event.quote_number, claimed is not None))
        await tallies.mutate(
            event.quote_number, Tally.bump, message_id=delivery.message_id, create=Tally.new
        )

    route = Route(QuoteIssued, count, read_ahead=read_ahead)
    async with stand_in(settings, "credits", route) as (runtime, client):
        runtimes.append(runtime)
        for number, message_id in (
            ("Q-1", "m-1"),
            ("Q-1", "m-1"),
            ("Q-bad", "m-2"),
            ("Q-1", "m-3"),
        ):
            await client.publish_event(
                "quote.issued", issued(number), message_id=message_id, as_role="quotes"
            )
        await eventually(seen(handled), lambda got: len(got) == 4, timeout=10)
        assert await no_dead_letter(client)
    # handled concurrently, in any order; each after its claim
    assert sorted(handled) == [("Q-1", True), ("Q-1", True), ("Q-1", True), ("Q-bad", True)]
    assert (await tallies.load("Q-1")).count == 2  # m-1 once, m-3
    assert (await tallies.load("Q-bad")).count == 1
