"""O1, O2, O7 at the handler level: what ``place_order`` and ``upgrade_plan`` ask of quotes
and credits, in which order, and what they store, with the store and the bus in memory
(tests/support/fakes.py). The real-broker tests (tests/integration/test_sale.py...)
show the same rules across the services; these show one handler's orchestration.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from services.orders.domain import OrderLine
from services.orders.handlers import (
    OrdersDeps,
    authenticate,
    create_api_key,
    list_api_keys,
    on_plan_upgraded,
    place_order,
    review_proof,
    revoke_api_key,
    submit_proof,
    upgrade_plan,
)
from services.quotes.domain import Quote
from shared.basics.errors import Conflict, ErrorCode, RateLimited, Refused
from shared.contracts.api_keys import ApiKeyCreated, CreateApiKey, ListApiKeys, RevokeApiKey
from shared.contracts.base import Billing
from shared.contracts.credits import ReservationResult, ReserveCredit
from shared.contracts.orders import (
    OrderPlacedResult,
    PlaceOrder,
    PlanSuperseded,
    PlanUpgraded,
    ReviewProof,
    UpgradePlan,
)
from shared.contracts.quotes import QuoteResult, RedeemQuote
from shared.runtime import store as runtime_store
from shared.runtime.messaging import Delivery, UpstreamUnavailable
from tests.support.clock import FixedClock
from tests.support.fakes import FakeBus, MemoryOrderStore
from tests.support.proofs import PDF, PNG, POLYGLOTS
from tests.unit.builders import (
    OTHER_RESELLER,
    RESELLER,
    T0,
    UNPAID_TTL,
    catalogue,
    eur,
    make_line,
    make_quote,
    paid_line,
)

CUSTOMER = "jane@customer.example.com"
QUOTE = "Q-2026-000001"


def delivery(message_id: str, routing_key: str) -> Delivery:
    return Delivery(message_id=message_id, correlation_id=None, routing_key=routing_key)


class Sent:
    """An upload's body as the HTTP route hands it over (``ProofBody``): ``read`` says
    whether the handler read it; ``while_read`` runs as it is read (what happens meanwhile)."""

    def __init__(
        self, filename: str | None, content: bytes, while_read: Callable[[], None] | None = None
    ) -> None:
        self.filename, self.content, self.while_read = filename, content, while_read
        self.read = False

    async def __call__(self) -> tuple[str | None, bytes]:
        self.read = True
        if self.while_read is not None:
            self.while_read()
        return self.filename, self.content


def sent(filename: str | None, content: bytes) -> Sent:
    return Sent(filename, content)


def cancel_as_reseller(line: OrderLine) -> None:
    line.cancel(reseller_id=RESELLER, now=T0)


def orders(bus: FakeBus, *, now: datetime = T0) -> OrdersDeps:
    return OrdersDeps(
        store=MemoryOrderStore(),
        bus=bus,
        clock=FixedClock(now),
        catalogue=catalogue(),
        proof_max_bytes=10 * 1024 * 1024,
        unpaid_ttl=UNPAID_TTL,
        api_token="test-token",
    )


def store_of(deps: OrdersDeps) -> MemoryOrderStore:
    assert isinstance(deps.store, MemoryOrderStore)
    return deps.store


def bus_of(deps: OrdersDeps) -> FakeBus:
    assert isinstance(deps.bus, FakeBus)
    return deps.bus


def redeeming(*quotes: Quote, now: datetime = T0) -> Callable[[RedeemQuote], QuoteResult]:
    """``quote.redeem`` answered as quotes does: the quote's own rules, then its view."""
    by_number = {quote.id: quote for quote in quotes}

    def redeem(cmd: RedeemQuote) -> QuoteResult:
        assert cmd.quote_number is not None, "this answer redeems quote numbers only"
        quote = by_number[cmd.quote_number]
        quote.redeem(reseller_id=cmd.reseller_id, space=cmd.space, order_id=cmd.order_id, now=now)
        return quote.view()

    return redeem


def reserving(balance: int) -> Callable[[ReserveCredit], ReservationResult]:
    """``credit.reserve`` answered from a balance: as much as wanted, up to ``balance``."""

    def reserve(cmd: ReserveCredit) -> ReservationResult:
        reserved = min(balance, cmd.wanted.amount) if cmd.use_credit else 0
        return ReservationResult(order_id=cmd.order_id, first_sale=False, reserved=eur(reserved))

    return reserve


def place(quote_number: str = QUOTE, reseller_id: str = RESELLER) -> PlaceOrder:
    return PlaceOrder(reseller_id=reseller_id, space="reseller", quote_number=quote_number)


# --- O1 / O2: placing --------------------------------------------------------------------


async def test_o1_o2_placing_redeems_the_quote_then_reserves_credit_then_stores_the_line() -> None:
    quote = make_quote(number=QUOTE, edition="enterprise", billing="monthly")
    deps = orders(FakeBus({"quote.redeem": redeeming(quote), "credit.reserve": reserving(1000)}))

    result = await place_order(place(), delivery("m-1", "order.place"), deps=deps)

    bus, store = bus_of(deps), store_of(deps)
    assert bus.routing_keys == ["quote.redeem", "credit.reserve"]
    redeem, reserve = (call.command for call in bus.calls)
    assert isinstance(redeem, RedeemQuote) and isinstance(reserve, ReserveCredit)
    assert (redeem.quote_number, redeem.order_id) == (QUOTE, result.order_id)
    # C4: credit may cover what is left after the 20 % discount: 19,900 - 3,980
    assert reserve.wanted == eur(15920)
    assert reserve.order_id == result.order_id
    # each request is the order's, with an id a redelivery repeats
    assert [(c.message_id, c.correlation_id) for c in bus.calls] == [
        (f"{result.order_id}/redeem", result.order_id),
        (f"{result.order_id}/reserve", result.order_id),
    ]
    assert store.lines.writes == [("insert", result.order_id)]
    line = store.lines.stored(result.order_id)
    assert line.status == "awaiting_proof"
    assert (line.price.credit_applied, line.price.amount_due) == (eur(1000), eur(14920))
    assert result == OrderPlacedResult(
        order_id=result.order_id,
        status="awaiting_proof",
        amount_due=eur(14920),
        credit_reserved=eur(1000),
        quote_number=QUOTE,
    )


async def test_o1_a_redelivered_placement_creates_nothing_new_and_asks_nothing_again() -> None:
    quote = make_quote(number=QUOTE)
    deps = orders(FakeBus({"quote.redeem": redeeming(quote), "credit.reserve": reserving(0)}))
    first = await place_order(place(), delivery("m-1", "order.place"), deps=deps)

    again = await place_order(place(), delivery("m-1", "order.place"), deps=deps)

    assert again == first
    assert bus_of(deps).routing_keys == ["quote.redeem", "credit.reserve"]
    assert store_of(deps).lines.writes == [("insert", first.order_id)]


async def test_o2_a_placement_retried_after_credits_failed_asks_with_the_same_ids() -> None:
    """Credits did not answer: nothing is stored and the command is redelivered. The retry
    redeems and reserves with the same message ids, so quotes and credits act once."""
    failures = [UpstreamUnavailable("credit.reserve: no answer in time")]
    credits = reserving(500)

    def reserve(cmd: ReserveCredit) -> ReservationResult:
        if failures:
            raise failures.pop()
        return credits(cmd)

    quote = make_quote(number=QUOTE)
    deps = orders(FakeBus({"quote.redeem": redeeming(quote), "credit.reserve": reserve}))
    with pytest.raises(UpstreamUnavailable):
        await place_order(place(), delivery("m-1", "order.place"), deps=deps)
    assert store_of(deps).lines.documents == {}

    result = await place_order(place(), delivery("m-1", "order.place"), deps=deps)

    # derived from the entity (the order id), not only from the incoming message id
    ids = [f"{result.order_id}/redeem", f"{result.order_id}/reserve"]
    assert [c.message_id for c in bus_of(deps).calls] == ids * 2
    assert quote.used_by_order == result.order_id  # redeemed for this order, once
    assert store_of(deps).lines.writes == [("insert", result.order_id)]
    assert result.credit_reserved == eur(500)


@pytest.mark.parametrize(
    ("quote", "code"),
    [
        (make_quote(number=QUOTE, reseller_id=OTHER_RESELLER), ErrorCode.NOT_YOUR_QUOTE),
        (make_quote(number=QUOTE, now=T0 - timedelta(days=31)), ErrorCode.QUOTE_EXPIRED),
    ],
    ids=["another-resellers-quote", "expired-quote"],
)
async def test_o2_a_refusal_from_quotes_stops_before_credits_is_asked(
    quote: Quote, code: ErrorCode
) -> None:
    deps = orders(FakeBus({"quote.redeem": redeeming(quote), "credit.reserve": reserving(1000)}))

    with pytest.raises(Refused) as refused:
        await place_order(place(), delivery("m-1", "order.place"), deps=deps)

    assert refused.value.code == code
    assert bus_of(deps).routing_keys == ["quote.redeem"]  # nothing reserved, nothing to release
    assert store_of(deps).lines.documents == {}


async def test_o5_a_personal_order_without_the_resellers_email_uses_no_quote() -> None:
    deps = orders(FakeBus())  # no answers: any request would fail the test
    cmd = PlaceOrder(reseller_id=RESELLER, space="personal", edition="starter", billing="monthly")

    with pytest.raises(Refused) as refused:
        await place_order(cmd, delivery("m-1", "order.place"), deps=deps)

    assert refused.value.code == ErrorCode.RESELLER_EMAIL_REQUIRED
    assert bus_of(deps).calls == []


# --- O3: proof upload -------------------------------------------------------------------


async def test_o3_a_png_named_pdf_is_stored_as_a_png_with_its_sha256() -> None:
    deps = orders(FakeBus())
    store = store_of(deps)
    store.lines.add(make_line(order_id="ol_1"))

    proof = await submit_proof(
        order_id="ol_1", reseller_id=RESELLER, body=sent("virement.pdf", PNG), deps=deps
    )

    assert proof.content_type == "image/png"  # by content, not by name
    assert proof.sha256 == hashlib.sha256(PNG).hexdigest()
    assert list(store.files.values()) == [PNG]
    line = store.lines.stored("ol_1")
    assert line.status == "proof_submitted"
    assert [p.file_id for p in line.proofs] == list(store.files)


async def test_o3_a_proof_the_line_refuses_leaves_no_file_behind() -> None:
    """The bytes are stored before the line refers to them; a line that then refuses
    (cancelled while the body was read) gets its file deleted: nothing half-written."""
    deps = orders(FakeBus())
    store = store_of(deps)
    store.lines.add(make_line(order_id="ol_1"))
    body = Sent("t.pdf", PDF, while_read=lambda: store.lines.interfere("ol_1", cancel_as_reseller))

    with pytest.raises(Refused) as refused:
        await submit_proof(order_id="ol_1", reseller_id=RESELLER, body=body, deps=deps)

    assert refused.value.code == ErrorCode.ORDER_NOT_AWAITING_PROOF
    assert store.files_stored == ["file-1"]  # stored, then deleted
    assert store.files == {}
    assert store.lines.stored("ol_1").status == "cancelled"
    assert store.lines.stored("ol_1").proofs == []


async def test_o3_a_line_that_takes_no_proof_is_refused_before_its_body_is_read() -> None:
    deps = orders(FakeBus())
    store = store_of(deps)
    line = make_line(order_id="ol_1")
    line.cancel(reseller_id=RESELLER, now=T0)
    store.lines.add(line)
    body = sent("t.pdf", PDF)

    with pytest.raises(Refused) as refused:
        await submit_proof(order_id="ol_1", reseller_id=RESELLER, body=body, deps=deps)

    assert refused.value.code == ErrorCode.ORDER_NOT_AWAITING_PROOF
    assert not body.read
    assert store.files == {}
    assert store.lines.writes == []


async def test_o9_another_resellers_proof_is_refused_before_its_body_is_read() -> None:
    deps = orders(FakeBus())
    store = store_of(deps)
    store.lines.add(make_line(order_id="ol_1"))
    body = sent("t.pdf", PDF)

    with pytest.raises(Refused) as refused:
        await submit_proof(order_id="ol_1", reseller_id=OTHER_RESELLER, body=body, deps=deps)

    assert refused.value.code == ErrorCode.NOT_YOUR_ORDER
    assert not body.read
    assert store.files == {}


async def test_o3_a_polyglot_is_refused_before_any_file_is_stored() -> None:
    deps = orders(FakeBus())
    store = store_of(deps)
    store.lines.add(make_line(order_id="ol_1"))

    with pytest.raises(Refused) as refused:
        await submit_proof(
            order_id="ol_1",
            reseller_id=RESELLER,
            body=sent("t.pdf", POLYGLOTS["pdf+zip inside"]),
            deps=deps,
        )

    assert refused.value.code == ErrorCode.INVALID_PROOF
    assert store.files == {}
    assert store.lines.writes == []


async def test_o3_the_stored_file_name_is_sanitised() -> None:
    deps = orders(FakeBus())
    store_of(deps).lines.add(make_line(order_id="ol_1"))

    proof = await submit_proof(
        order_id="ol_1",
        reseller_id=RESELLER,
        body=sent("../../<b>virement\u202efdp.exe</b>.pdf", PDF),
        deps=deps,
    )

    assert proof.filename == "b_.pdf"  # the last path part, markup and the override gone
    assert store_of(deps).lines.stored("ol_1").proofs[0].filename == "b_.pdf"


async def test_o3_an_upload_that_keeps_losing_its_race_is_busy_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every save of the line loses to another writer: after the store's last attempt the
    upload answers ``busy`` (503, Retry-After), not an internal error, and its file goes."""
    deps = orders(FakeBus())
    store = store_of(deps)
    store.lines.add(make_line(order_id="ol_1"))

    async def always_lost(line: OrderLine) -> None:
        raise Conflict(f"OrderLine {line.id} changed since version {line.version}")

    monkeypatch.setattr(runtime_store, "SAVE_ATTEMPTS", 3)
    monkeypatch.setattr(store.lines, "save", always_lost)
    with pytest.raises(RateLimited) as refused:
        await submit_proof(
            order_id="ol_1", reseller_id=RESELLER, body=sent("t.pdf", PDF), deps=deps
        )

    assert refused.value.code == ErrorCode.BUSY
    assert refused.value.retry_after >= 1
    assert store.files == {}
    assert store.lines.stored("ol_1").proofs == []


# --- reseller API keys (CONTRACT.md, Identities) -------------------------------------------


async def create_key(deps: OrdersDeps, message_id: str = "m-key", reseller: str = RESELLER) -> str:
    cmd = CreateApiKey(reseller_id=reseller, label="accounting script")
    created = await create_api_key(
        cmd, Delivery(message_id, None, "apikey.create", publisher="xo-operations"), deps=deps
    )
    return created.key


async def test_an_api_key_is_shown_once_and_stored_as_its_digest() -> None:
    deps = orders(FakeBus())
    key = await create_key(deps)

    assert re.fullmatch(r"xo_ak_[0-9a-f]{24}_[A-Za-z0-9_-]{43}", key)
    [stored] = store_of(deps).keys.documents.values()
    assert key not in str(stored)
    assert stored["digest"] == hashlib.sha256(key.encode()).hexdigest()
    [created] = store_of(deps).keys.all()[0].recorded()
    assert isinstance(created, ApiKeyCreated) and key not in created.model_dump_json()
    listed = await list_api_keys(
        ListApiKeys(reseller_id=RESELLER), delivery("m-list", "apikey.list"), deps=deps
    )
    assert [k.status for k in listed.keys] == ["active"]
    assert key not in listed.model_dump_json() and stored["digest"] not in listed.model_dump_json()
    with pytest.raises(Refused) as again:  # the same message redelivered: no second key
        await create_key(deps)
    assert again.value.code == ErrorCode.API_KEY_SHOWN_ONCE
    assert len(store_of(deps).keys.documents) == 1


async def test_an_api_key_acts_as_its_own_reseller_only() -> None:
    deps = orders(FakeBus())
    key = await create_key(deps)

    assert await authenticate(key, acting_for=None, deps=deps) == RESELLER
    assert await authenticate(key, acting_for=RESELLER, deps=deps) == RESELLER
    with pytest.raises(Refused) as other:
        await authenticate(key, acting_for=OTHER_RESELLER, deps=deps)
    assert other.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(Refused) as forged:  # the right id with another secret
        await authenticate(key[:-4] + "AAAA", acting_for=None, deps=deps)
    assert forged.value.code == ErrorCode.UNAUTHORISED
    with pytest.raises(Refused) as unknown:
        await authenticate("xo_ak_" + "0" * 24 + "_" + "A" * 43, acting_for=None, deps=deps)
    assert unknown.value.code == ErrorCode.UNAUTHORISED


async def test_a_revoked_api_key_is_refused_and_another_reseller_cannot_revoke_it() -> None:
    deps = orders(FakeBus())
    key = await create_key(deps)
    key_id = key.split("_")[1] + "_" + key.split("_")[2]

    with pytest.raises(Refused) as foreign:
        await revoke_api_key(
            RevokeApiKey(reseller_id=OTHER_RESELLER, key_id=key_id),
            delivery("m-r0", "apikey.revoke"),
            deps=deps,
        )
    assert foreign.value.code == ErrorCode.UNKNOWN_API_KEY
    assert await authenticate(key, acting_for=None, deps=deps) == RESELLER

    revoked = await revoke_api_key(
        RevokeApiKey(reseller_id=RESELLER, key_id=key_id),
        delivery("m-r1", "apikey.revoke"),
        deps=deps,
    )
    assert revoked.status == "revoked"
    with pytest.raises(Refused) as refused:
        await authenticate(key, acting_for=None, deps=deps)
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.UNAUTHORISED,
        "this API key was revoked",
    )


async def test_the_internal_token_acts_for_the_reseller_it_names() -> None:
    deps = orders(FakeBus())
    assert await authenticate("test-token", acting_for="r-any", deps=deps) == "r-any"
    with pytest.raises(Refused) as unnamed:
        await authenticate("test-token", acting_for=None, deps=deps)
    assert unnamed.value.code == ErrorCode.INVALID_REQUEST
    for wrong in ("", "test-token-not", "xo_garbage"):
        with pytest.raises(Refused) as refused:
            await authenticate(wrong, acting_for="r-any", deps=deps)
        assert refused.value.code == ErrorCode.UNAUTHORISED


# --- O7: upgrades ---------------------------------------------------------------------------


def bound_line(billing: Billing = "monthly") -> OrderLine:
    """A paid enterprise line (19,900 - 3,980 = 15,920 monthly; 159,920 annual), bound."""
    line = paid_line(order_id="ol_current", billing=billing)
    line.bind(reseller_id=RESELLER, customer_email=CUSTOMER, now=T0 + timedelta(hours=3))
    line.outbox.clear()
    return line


def issuing(number: str, *, now: datetime) -> Callable[[RedeemQuote], QuoteResult]:
    """``quote.redeem`` with an edition and a billing: quotes issues a quote and redeems it."""

    def redeem(cmd: RedeemQuote) -> QuoteResult:
        assert cmd.edition is not None and cmd.billing is not None
        quote = make_quote(
            number=number,
            reseller_id=cmd.reseller_id,
            space=cmd.space,
            edition=cmd.edition,
            billing=cmd.billing,
            now=now,
        )
        quote.redeem(reseller_id=cmd.reseller_id, space=cmd.space, order_id=cmd.order_id, now=now)
        return quote.view()

    return redeem


def upgrading_bus(now: datetime) -> FakeBus:
    return FakeBus(
        {"quote.redeem": issuing("Q-2026-000002", now=now), "credit.reserve": reserving(0)}
    )


def upgrade(edition: str = "premium", billing: Billing | None = None) -> UpgradePlan:
    return UpgradePlan(
        reseller_id=RESELLER, order_id="ol_current", edition=edition, billing=billing
    )


def midway(line: OrderLine) -> datetime:
    assert line.period_start is not None and line.period_end is not None
    return line.period_start + (line.period_end - line.period_start) / 2


async def test_o7_upgrade_marks_the_current_line_then_places_a_line_with_the_credit_note() -> None:
    current = bound_line()
    now = midway(current)
    deps = orders(upgrading_bus(now), now=now)
    store = store_of(deps)
    store.lines.add(current)

    result = await upgrade_plan(upgrade("premium"), delivery("m-up", "plan.upgrade"), deps=deps)

    # Half the plan is left: half of the 15,920 paid. Premium after discount: 39,900 - 7,980.
    assert result.credit_note == eur(7960)
    assert result.credit_note_applied == eur(7960)
    assert result.credit_note_to_balance == eur(0)
    assert result.amount_due == eur(31920 - 7960)
    assert store.lines.writes == [("save", "ol_current"), ("insert", result.order_id)]
    marked = store.lines.stored("ol_current")
    assert (marked.status, marked.upgraded_by) == ("bound", result.order_id)
    assert marked.pending_credit_note == eur(7960)
    redeem, reserve = (call.command for call in bus_of(deps).calls)
    assert isinstance(redeem, RedeemQuote) and isinstance(reserve, ReserveCredit)
    assert (redeem.edition, redeem.billing, redeem.quote_number) == ("premium", "monthly", None)
    assert reserve.wanted == eur(31920 - 7960)  # credit covers what the note does not
    new = store.lines.stored(result.order_id)
    assert (new.upgrade_of, new.customer_email, new.edition) == ("ol_current", CUSTOMER, "premium")
    assert new.status == "awaiting_proof"


async def test_o7_a_credit_note_above_the_amount_due_is_capped_the_rest_goes_to_the_balance() -> (
    None
):
    current = bound_line(billing="annual")  # 159,920 paid for the year
    assert current.period_start is not None
    now = current.period_start  # the whole year is left
    deps = orders(upgrading_bus(now), now=now)
    store_of(deps).lines.add(current)

    result = await upgrade_plan(
        upgrade("premium", billing="monthly"), delivery("m-up", "plan.upgrade"), deps=deps
    )

    assert result.credit_note == eur(159920)
    assert result.credit_note_applied == eur(31920)  # premium monthly after discount
    assert result.credit_note_to_balance == eur(159920 - 31920)
    assert result.amount_due == eur(0)
    assert store_of(deps).lines.stored(result.order_id).status == "bound"  # nothing to prove


@pytest.mark.parametrize("edition", ["starter", "enterprise"], ids=["downgrade", "same-edition"])
async def test_o7_a_downgrade_is_refused_before_anything_is_asked_or_written(edition: str) -> None:
    current = bound_line()
    deps = orders(FakeBus(), now=midway(current))  # no answers: any request would fail
    store_of(deps).lines.add(current)

    with pytest.raises(Refused) as refused:
        await upgrade_plan(upgrade(edition), delivery("m-up", "plan.upgrade"), deps=deps)

    assert refused.value.code == ErrorCode.NOT_AN_UPGRADE
    assert bus_of(deps).calls == []
    assert store_of(deps).lines.writes == []
    assert store_of(deps).lines.stored("ol_current").upgraded_by is None


async def test_o7_a_redelivered_upgrade_places_one_line() -> None:
    current = bound_line()
    now = midway(current)
    deps = orders(upgrading_bus(now), now=now)
    store_of(deps).lines.add(current)

    first = await upgrade_plan(upgrade(), delivery("m-up", "plan.upgrade"), deps=deps)
    again = await upgrade_plan(upgrade(), delivery("m-up", "plan.upgrade"), deps=deps)

    assert again == first
    assert store_of(deps).lines.writes == [("save", "ol_current"), ("insert", first.order_id)]
    assert len(bus_of(deps).calls) == 2


async def test_o7_two_upgrades_of_one_plan_cannot_both_be_placed() -> None:
    """Another upgrade marks the line between our read and our save: our save loses the
    race, the reloaded line says an upgrade is in progress, and nothing is asked."""
    current = bound_line()
    now = midway(current)
    deps = orders(FakeBus(), now=now)
    store = store_of(deps)
    store.lines.add(current)
    ranks = catalogue()
    store.lines.interfere(
        "ol_current",
        lambda line: line.start_upgrade(
            reseller_id=RESELLER,
            upgrade_order_id="ol_the_other_upgrade",
            current_rank=ranks.rank("enterprise"),
            target_rank=ranks.rank("premium"),
            now=now,
        ),
    )

    with pytest.raises(Refused) as refused:
        await upgrade_plan(upgrade(), delivery("m-up", "plan.upgrade"), deps=deps)

    assert refused.value.code == ErrorCode.UPGRADE_IN_PROGRESS
    assert bus_of(deps).calls == []
    assert store.lines.stored("ol_current").upgraded_by == "ol_the_other_upgrade"


async def test_o7_the_paid_upgrade_supersedes_the_line_it_replaces() -> None:
    """Upgrade, proof, acceptance, then orders' own ``plan.upgraded``: the old line ends."""
    current = bound_line()
    now = midway(current)
    deps = orders(upgrading_bus(now), now=now)
    store = store_of(deps)
    store.lines.add(current)
    placed = await upgrade_plan(upgrade(), delivery("m-up", "plan.upgrade"), deps=deps)
    await submit_proof(
        order_id=placed.order_id,
        reseller_id=RESELLER,
        body=sent("transfer.pdf", PDF),
        deps=deps,
    )
    review = ReviewProof(order_id=placed.order_id, decision="accept", reviewer="ops-1")
    await review_proof(review, delivery("m-review", "proof.review"), deps=deps)
    [upgraded] = [
        e for e in store.lines.stored(placed.order_id).recorded() if isinstance(e, PlanUpgraded)
    ]
    assert (upgraded.previous_order_id, upgraded.customer_email) == ("ol_current", CUSTOMER)

    await on_plan_upgraded(upgraded, delivery("m-event", "plan.upgraded"), deps=deps)

    old = store.lines.stored("ol_current")
    assert (old.status, old.superseded_by) == ("superseded", placed.order_id)
    [superseded] = [e for e in old.recorded() if isinstance(e, PlanSuperseded)]
    assert superseded.customer_email == CUSTOMER
    assert store.files  # the proof's bytes were kept


async def test_fake_bus_answers_a_repeated_message_id_with_the_first_answer() -> None:
    """The fakes' own promise that the tests above lean on (the services' inboxes)."""
    asked: list[str] = []

    def reserve(cmd: ReserveCredit) -> ReservationResult:
        asked.append(cmd.order_id)
        return ReservationResult(order_id=cmd.order_id, first_sale=False, reserved=eur(len(asked)))

    bus = FakeBus({"credit.reserve": reserve})
    cmd = ReserveCredit(
        reseller_id=RESELLER,
        order_id="ol_1",
        space="reseller",
        wanted=eur(100),
        use_credit=True,
        first_sale_requested=False,
    )
    replies = [
        await bus.call(cmd, ReservationResult, message_id=message_id, correlation_id="ol_1")
        for message_id in ("m/1", "m/1", "m/2")
    ]
    assert [reply.reserved for reply in replies] == [eur(1), eur(1), eur(2)]
    assert asked == ["ol_1", "ol_1"]
