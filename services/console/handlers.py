"""The console's handlers: every event into the event log; the queries the CLI asks; and the
operators' actions, each sent as a command of the public contract and logged with its
operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

from pydantic import BaseModel

from services.console.domain import (
    ACTION_PREFIX,
    LineState,
    LogEntry,
    Operator,
    StuckRules,
    entry_of,
    stuck,
)
from services.console.store import ConsoleStore
from shared.basics.clock import Clock
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
from shared.contracts import Command, Event
from shared.contracts.licensing import (
    ReinstateLicense,
    ReissueRegistrationToken,
    SuspendLicense,
)
from shared.contracts.operations import (
    CreateOperator,
    GetLineTimeline,
    GetReviewQueue,
    GetStuckLines,
    LineTimeline,
    OperatorView,
    ReviewItem,
    ReviewQueue,
    StuckLines,
    StuckLineView,
    TimelineEntry,
)
from shared.contracts.orders import OrderStatusResult, ReviewProof
from shared.runtime.inbox import MessageIdReused
from shared.runtime.messaging import Bus, Delivery

R = TypeVar("R", bound=BaseModel)
RECENTLY_DECIDED = timedelta(seconds=60)


@dataclass
class ConsoleDeps:
    store: ConsoleStore
    bus: Bus
    clock: Clock
    rules: StuckRules
    # Lines an operator of this process just decided, hidden from the review queue until
    # their event arrives (at most a minute): the next line shows at once.
    decided: dict[str, datetime] = field(default_factory=dict)


# --- the event log -----------------------------------------------------------------------


async def record_event(event: Event, delivery: Delivery, *, deps: ConsoleDeps) -> None:
    """Every event: append it to the log once (its message id), refold the lines it names
    (a group commit with the events arriving meanwhile: ``ConsoleStore.record``). The log
    is keyed by message id, so the runtime claims nothing in the inbox first
    (``Route.inbox``); an id logged for another event is refused here instead."""
    entry = entry_of(
        delivery.routing_key,
        event.model_dump(mode="json"),
        message_id=delivery.message_id,
        publisher=delivery.publisher or "",
        correlation_id=delivery.correlation_id,
        received_at=deps.clock.now(),
    )
    appended = await deps.store.record(entry)
    if appended.reused_by is not None:
        raise MessageIdReused(
            f"message_id {delivery.message_id} was already used for another event "
            f"({appended.reused_by}); use a new id for a new event"
        )
    for order_id in entry.order_ids:
        deps.decided.pop(order_id, None)


# --- views shared by the pages and the CLI's queries --------------------------------------


def review_item(line: LineState, now: datetime) -> ReviewItem | None:
    proof = line.proof
    if proof is None:
        return None
    return ReviewItem(
        order_id=line.id,
        reseller_id=line.reseller_id,
        edition=line.edition,
        billing=line.billing,
        amount_due=line.amount_due,
        currency=line.currency,
        proof_id=proof.proof_id,
        sha256=proof.sha256,
        size=proof.size,
        content_type=proof.content_type,
        submitted_at=proof.submitted_at,
        age_seconds=int((now - proof.submitted_at).total_seconds()),
    )


async def review_lines(deps: ConsoleDeps, limit: int = 5000) -> list[dict[str, Any]]:
    """Lines awaiting review, oldest first, without those this console just decided; each
    with its age now (``ReviewItem`` fields)."""
    now = deps.clock.now()
    for order_id, at in list(deps.decided.items()):
        if now - at > RECENTLY_DECIDED:
            deps.decided.pop(order_id, None)
    items = [
        i for i in await deps.store.awaiting_review(limit) if i["order_id"] not in deps.decided
    ]
    for item in items:
        item["age_seconds"] = int((now - item["submitted_at"]).total_seconds())
    return items


async def stuck_now(deps: ConsoleDeps) -> list[StuckLineView]:
    now = deps.clock.now()
    rules = deps.rules
    soonest = min(rules.awaiting_proof, rules.review, rules.unbound, rules.upgrade, rules.orphan)
    found = [stuck(line, now, rules) for line in await deps.store.stuck_candidates(now - soonest)]
    return sorted((s for s in found if s is not None), key=lambda s: s.since)


def timeline_entry(entry: LogEntry) -> TimelineEntry:
    return TimelineEntry(
        message_id=entry.id,
        routing_key=entry.routing_key,
        occurred_at=entry.occurred_at,
        publisher=entry.publisher,
        correlation_id=entry.correlation_id,
        operator=entry.operator,
        summary=entry.summary(),
    )


async def get_review_queue(
    query: GetReviewQueue, delivery: Delivery, *, deps: ConsoleDeps
) -> ReviewQueue:
    """``review.queue``."""
    items = await review_lines(deps, query.limit)
    return ReviewQueue(lines=[ReviewItem.model_validate(item) for item in items])


async def get_stuck_lines(
    query: GetStuckLines, delivery: Delivery, *, deps: ConsoleDeps
) -> StuckLines:
    """``lines.stuck``."""
    return StuckLines(lines=await stuck_now(deps), rules=dict(deps.rules.describe()))


async def get_line_timeline(
    query: GetLineTimeline, delivery: Delivery, *, deps: ConsoleDeps
) -> LineTimeline:
    """``line.timeline``."""
    line = await deps.store.line(query.order_id)
    entries = await deps.store.timeline(query.order_id)
    return LineTimeline(
        order_id=query.order_id,
        status=line.status if line else None,
        reseller_id=line.reseller_id if line else None,
        customer_email=line.customer_email if line else None,
        entries=[timeline_entry(e) for e in entries],
    )


async def create_operator(
    cmd: CreateOperator, delivery: Delivery, *, deps: ConsoleDeps
) -> OperatorView:
    """``operator.create``: the CLI hashed the password (argon2id); only the hash travels."""
    email = normalise_email(cmd.email)
    operator = Operator(
        id=email,
        name=cmd.name.strip() or email,
        password_hash=cmd.password_hash,
        created_at=deps.clock.now(),
    )
    if not await deps.store.add_operator(operator):
        existing = await deps.store.operator(email)
        if existing is None or existing.password_hash != cmd.password_hash:  # not a resend
            raise Refused(ErrorCode.EMAIL_IN_USE, f"an operator {email} already exists")
        operator = existing
    await log_action(
        deps,
        "operator.create",
        delivery.message_id,
        cmd.name or email,
        {"email": email},
        outcome="ok",
    )
    return OperatorView(email=operator.email, name=operator.name, created_at=operator.created_at)


# --- operators' actions ----------------------------------------------------------------


async def log_action(
    deps: ConsoleDeps,
    routing_key: str,
    message_id: str,
    operator: str,
    body: dict[str, Any],
    *,
    outcome: str,
) -> None:
    """The operator's action in the event log, beside the events it caused."""
    await deps.store.append(
        entry_of(
            ACTION_PREFIX + routing_key,
            {**body, "outcome": outcome},
            message_id=f"{message_id}/action",
            publisher=deps.bus.identity.user_id,
            correlation_id=body.get("order_id"),
            received_at=deps.clock.now(),
            operator=operator,
        )
    )


async def act(deps: ConsoleDeps, operator: str, command: Command, result: type[R]) -> R:
    """Send ``command`` (request/reply) as operations; log it with its operator and outcome."""
    message_id = str(uuid4())
    body = command.model_dump(mode="json")
    correlation = body.get("order_id")
    try:
        answer = await deps.bus.call(
            command, result, message_id=message_id, correlation_id=correlation
        )
    except Refused as refusal:
        await log_action(
            deps, command.ROUTING_KEY, message_id, operator, body, outcome=str(refusal.code)
        )
        raise
    await log_action(deps, command.ROUTING_KEY, message_id, operator, body, outcome="ok")
    return answer


async def review(
    deps: ConsoleDeps, operator: str, order_id: str, decision: str, reason: str | None
) -> BaseModel:
    """Accept or reject a line's proof (O4) as ``operator``; a second decision is refused by
    orders (``order_not_awaiting_proof``)."""
    if decision == "reject" and not (reason or "").strip():
        raise Refused(ErrorCode.REJECTION_REASON_REQUIRED, "a rejection needs a reason")
    command = ReviewProof(
        order_id=order_id,
        decision="accept" if decision == "accept" else "reject",
        reviewer=operator,
        reason=(reason or "").strip() or None,
    )
    try:
        return await act(deps, operator, command, OrderStatusResult)
    finally:
        deps.decided[order_id] = deps.clock.now()


async def licence_action(
    deps: ConsoleDeps, operator: str, action: str, email: str, reason: str
) -> BaseModel:
    if not reason.strip():
        raise Refused(ErrorCode.INVALID_REQUEST, "give a reason")
    kinds: dict[str, type[SuspendLicense | ReinstateLicense | ReissueRegistrationToken]] = {
        "suspend": SuspendLicense,
        "reinstate": ReinstateLicense,
        "reissue": ReissueRegistrationToken,
    }
    command = kinds[action](customer_email=email, reason=reason.strip(), operator=operator)
    assert command.RESULT is not None
    return await act(deps, operator, command, command.RESULT)
