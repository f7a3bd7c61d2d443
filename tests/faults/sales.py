"""Complete sales through the contract while faults are injected, and what must hold after.

A sale, as the outside systems perform it: ``quote.request`` -> ``order.place`` with the
quote -> the proof uploaded over HTTP -> ``proof.review accept`` (operations) ->
``plan.bind`` -> the mailer's ``customer.notification``. A client that gets no answer in
time sends the same request again with the same message id (so it is applied once); an
upload that fails (the process or the store down) is tried again.

After the run, once the broker is quiet, ``check_outcome`` asserts: every sale's line is
``bound`` and every reseller has exactly the lines it placed; one ``customer.notification``
of kind ``plan_bound`` (by event id) per order, and one of each workflow event; each
reseller's ledger is reconciled (C3) with one first-sale grant and at most one reserve
and one consume per order; nothing is dead-lettered; and, when no process crashed, no
event was published twice (counted by message id on the observer's queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from testkit.contract_client import Body, ContractClient, read_users
from testkit.processes import LaunchedSystem
from testkit.proofs import minimal_pdf

PROOF = minimal_pdf("Wire transfer proof (faults)")
ATTEMPT_SECONDS = 10.0  # no answer within this: send the same request again
SALE_SECONDS = 150.0  # a sale not done by then is a failure
# Events a sale causes once per order: another publication of one with a new event id is
# a double effect (a republication of the same id, after a crash, is not).
ONCE_PER_ORDER = ("order.placed", "proof.accepted", "plan.bound", "customer.notification")


class FaultClient(ContractClient):
    """The contract client, keeping every event it observes (routing key, message id,
    body) and handing an order's event to whoever awaits it."""

    def __init__(self, amqp_url: str, system: LaunchedSystem) -> None:
        super().__init__(
            amqp_url, system.namespace, read_users(system.data_dir / "broker-users.json")
        )
        self.seen: list[tuple[str, str, Body]] = []
        self._first: dict[tuple[str, str], Body] = {}
        self._waiting: dict[tuple[str, str], asyncio.Future[Body]] = {}
        self.resends = 0  # requests sent again because their publication failed

    async def __aenter__(self) -> FaultClient:
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        # aio-pika schedules close callbacks: let them run before the test's loop ends
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        routing_key = message.routing_key or ""
        self.seen.append((routing_key, message.message_id or "", body))
        key = (routing_key, str(body.get("order_id") or ""))
        self._first.setdefault(key, body)
        waiter = self._waiting.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(body)

    async def order_event(self, routing_key: str, order_id: str, timeout: float) -> Body:
        key = (routing_key, order_id)
        if key in self._first:
            return self._first[key]
        waiter: asyncio.Future[Body] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        return await asyncio.wait_for(waiter, timeout)

    async def ask(self, routing_key: str, body: Body, *, message_id: str) -> Body:
        """The result of a request, sent again (same message id) until answered."""
        correlation_id = str(uuid.uuid4())
        reply = self.expect_reply(correlation_id)
        deadline = time.monotonic() + SALE_SECONDS
        while True:
            try:
                await self.send(
                    routing_key,
                    body,
                    message_id=message_id,
                    reply_to="amq.rabbitmq.reply-to",
                    correlation_id=correlation_id,
                )
            except (aio_pika.exceptions.AMQPError, ConnectionError) as exc:
                # Nacked or its connection lost (a broker node died): a new connection,
                # and the same request again shortly, as any careful client would.
                if time.monotonic() > deadline:
                    raise AssertionError(f"{routing_key} never sent") from exc
                self.forget(self.role_for(routing_key))
                self.resends += 1
                await asyncio.sleep(1.0)
                continue
            try:
                answer = await asyncio.wait_for(asyncio.shield(reply), ATTEMPT_SECONDS)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                continue
            assert answer["ok"] is True, (routing_key, answer)
            result: Body = answer["result"]
            return result


@dataclass
class Run:
    """A batch of sales over a launched system; ``progress`` counts completed sales."""

    system: LaunchedSystem
    client: FaultClient
    http: httpx.AsyncClient
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    orders: dict[str, str] = field(default_factory=dict)  # order id -> reseller
    completed: int = 0
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    uploads_retried: int = 0
    durations: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # when each sale completed (monotonic)
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        """How the run went (printed by the tests: ``pytest -s`` shows it)."""
        ordered = sorted(self.durations) or [0.0]
        p50, p95 = ordered[len(ordered) // 2], ordered[len(ordered) * 95 // 100]
        elapsed = (max(self.finished) if self.finished else self.started) - self.started
        rate = self.completed / elapsed if elapsed > 0 else 0.0
        return (
            f"{self.completed} sales in {elapsed:.0f} s ({rate:.2f} sales/s): "
            f"p50 {p50:.1f} s, p95 {p95:.1f} s, "
            f"max {ordered[-1]:.1f} s; longest stall {self.longest_stall():.1f} s; "
            f"{self.uploads_retried} proof uploads retried; {self.client.resends} requests "
            f"resent after a failed publication; {len(self.client.seen)} events observed"
        )

    def longest_stall(self) -> float:
        """The longest time no sale completed, between the first and the last completion."""
        times = sorted(self.finished)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def reseller(self, n: int, resellers: int) -> str:
        return f"faults-{self.tag}-{n % resellers}"

    async def upload(self, order_id: str, reseller: str, n: int) -> None:
        """The proof over HTTP, to one of the orders replicas, until it is taken."""
        urls = self.system.urls("orders")
        deadline = time.monotonic() + SALE_SECONDS
        attempt = 0
        while True:
            url = urls[(n + attempt) % len(urls)]
            try:
                response = await self.http.post(
                    f"{url}/v1/orders/{order_id}/proofs",
                    headers={
                        "Authorization": f"Bearer {self.system.api_token}",
                        "X-Reseller-Id": reseller,
                    },
                    files={"file": ("proof.pdf", PROOF, "application/pdf")},
                )
                if response.status_code == 201:
                    return
                assert response.status_code in (502, 503, 504), response.text
                assert response.json()["error"]["code"], response.text  # the envelope
            except httpx.TransportError:
                pass  # the process is down: the launcher starts it again
            attempt += 1
            self.uploads_retried += 1
            assert time.monotonic() < deadline, f"proof upload for {order_id} never taken"
            await asyncio.sleep(0.5)

    async def sale(self, n: int, resellers: int) -> None:
        started = time.monotonic()
        reseller = self.reseller(n, resellers)
        ids = f"{self.tag}-{n}"
        quote = await self.client.ask(
            "quote.request",
            {
                "reseller_id": reseller,
                "space": "reseller",
                "edition": "starter",
                "billing": "monthly",
            },
            message_id=f"{ids}-quote",
        )
        placed = await self.client.ask(
            "order.place",
            {"reseller_id": reseller, "space": "reseller", "quote_number": quote["quote_number"]},
            message_id=f"{ids}-place",
        )
        order_id: str = placed["order_id"]
        self.orders[order_id] = reseller
        await self.upload(order_id, reseller, n)
        await self.client.ask(
            "proof.review",
            {"order_id": order_id, "decision": "accept", "reviewer": "faults"},
            message_id=f"{ids}-review",
        )
        await self.client.ask(
            "plan.bind",
            {
                "reseller_id": reseller,
                "order_id": order_id,
                "customer_email": f"customer-{ids}@faults.example",
            },
            message_id=f"{ids}-bind",
        )
        await self.client.order_event("customer.notification", order_id, SALE_SECONDS)
        self.finished.append(time.monotonic())
        self.durations.append(self.finished[-1] - started)
        self.completed += 1
        self.progressed.set()

    async def until_completed(self, count: int) -> None:
        while self.completed < count:
            self.progressed.clear()
            await self.progressed.wait()

    async def sales(
        self,
        count: int,
        *,
        in_flight: int = 20,
        resellers: int = 10,
        faults: Callable[[Run], Coroutine[Any, Any, None]] | None = None,
        pace: float = 0.0,
    ) -> None:
        """``count`` sales, ``in_flight`` at a time, while ``faults(run)`` runs; with
        ``pace``, sale n starts no earlier than n x ``pace`` seconds after the first (a
        steady arrival rate, so that the run lasts through a long fault)."""
        window = asyncio.Semaphore(in_flight)
        self.started = time.monotonic()

        async def limited(n: int) -> None:
            await asyncio.sleep(max(0.0, self.started + n * pace - time.monotonic()))
            async with window:
                await self.sale(n, resellers)

        injector = asyncio.create_task(faults(self)) if faults else None
        try:
            await asyncio.gather(*(limited(n) for n in range(count)))
            if injector is not None:
                await injector  # its own failures count too
        finally:
            if injector is not None and not injector.done():
                injector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await injector


async def queue_depths(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Messages ready in each of these queues that exists, exactly (a passive declare each:
    no management API needed, and no lag)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        depths = {}
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:  # not declared by this system
                channel = await connection.channel()
                continue
            depths[name] = queue.declaration_result.message_count or 0
    return depths


def dead_letter_queue(namespace: str) -> str:
    return f"{namespace}reseller.dead-letters"


async def quiet(amqp_url: str, system: LaunchedSystem, *, timeout: float = 60) -> dict[str, int]:
    """Wait until no queue of the system holds a message, dead letters aside (three times
    in a row, half a second apart); returns the last depths."""
    deadline = time.monotonic() + timeout
    names = system.queue_names()
    calm = 0
    depths: dict[str, int] = {}
    while time.monotonic() < deadline:
        depths = await queue_depths(amqp_url, names)
        busy = {q: n for q, n in depths.items() if n and q != dead_letter_queue(system.namespace)}
        calm = 0 if busy else calm + 1
        if calm == 3:
            return depths
        await asyncio.sleep(0.5)
    raise AssertionError(f"the system never went quiet: {depths}")


async def check_outcome(run: Run, amqp_url: str, *, crashed: bool, expected: int) -> None:
    """What must hold after a run (see the module's docstring)."""
    client, system = run.client, run.system
    assert run.completed == expected == len(run.orders)
    depths = await quiet(amqp_url, system)
    assert depths.get(dead_letter_queue(system.namespace), 0) == 0, "messages were dead-lettered"

    by_reseller: dict[str, set[str]] = defaultdict(set)
    for order_id, reseller in run.orders.items():
        by_reseller[reseller].add(order_id)
    for reseller, placed in by_reseller.items():
        lines = await client.ask(
            "order.list", {"reseller_id": reseller}, message_id=str(uuid.uuid4())
        )
        listed = [line["order_id"] for line in lines["orders"]]
        assert sorted(listed) == sorted(placed), f"{reseller}: one line per placement"
        assert {line["status"] for line in lines["orders"]} == {"bound"}
        statement = await client.ask(
            "credits.statement", {"reseller_id": reseller}, message_id=str(uuid.uuid4())
        )
        assert statement["reconciled"] is True, statement
        kinds = Counter(entry["kind"] for entry in statement["entries"])
        assert kinds["grant"] == 1, f"{reseller}: one first-sale credit, got {kinds}"
        for kind in ("reserve", "consume"):
            per_order = Counter(e["order_id"] for e in statement["entries"] if e["kind"] == kind)
            assert max(per_order.values(), default=0) <= 1, f"{reseller}: {kind} twice"

    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for routing_key, message_id, body in client.seen:
        if routing_key == "customer.notification" and body["kind"] != "plan_bound":
            continue  # a monthly plan is also warned of its end at once (L6)
        if routing_key in ONCE_PER_ORDER and body.get("order_id") in run.orders:
            ids[(routing_key, body["order_id"])].add(message_id)
    for order_id in run.orders:
        for routing_key in ONCE_PER_ORDER:
            seen = [(k, i, b) for k, i, b in client.seen if b.get("order_id") == order_id]
            assert len(ids[(routing_key, order_id)]) == 1, (routing_key, order_id, seen)

    if not crashed:
        published = Counter(message_id for _, message_id, _ in client.seen)
        twice = {message_id: n for message_id, n in published.items() if n > 1}
        assert not twice, f"{len(twice)} events published more than once: {list(twice)[:5]}"
