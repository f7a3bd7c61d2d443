"""The operations console's rules: event-log entries, the line each log folds into, when a
line is stuck, operator accounts. No I/O.

The event log is append-only: one entry per event (its message id is the entry's id, so a
redelivery or a replay of every event adds nothing), plus one entry per operator action
the console sent (``action:<routing key>``), so a line's timeline names who acted.
A line's state is a fold of its entries, oldest first; "stuck" is a rule on that state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.operations import StuckKind
from shared.contracts.operations import StuckLineView as StuckLine
from shared.runtime.web import WebSession, invalid_credentials

ACTION_PREFIX = "action:"  # the log entries of the operators' own actions

LineStatus = Literal[
    "reserved",  # credit.reserved seen, no order.placed (yet)
    "released",
    "awaiting_proof",
    "proof_submitted",
    "paid",
    "bound",
    "cancelled",
    "expired",
    "superseded",
]


class LogEntry(BaseModel):
    """One fact in the event log: an event as it was published, or an operator's action."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id", description="The event's message id (or the command's).")
    routing_key: str
    occurred_at: datetime
    received_at: datetime
    publisher: str = Field(description="The validated broker user that published it.")
    correlation_id: str | None = None
    order_id: str | None = None
    order_ids: list[str] = Field(default_factory=list, description="Every line it concerns.")
    reseller_id: str | None = None
    customer_email: str | None = None
    operator: str | None = None
    body: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_action(self) -> bool:
        return self.routing_key.startswith(ACTION_PREFIX)

    def summary(self) -> str:
        """A short human line for timelines."""
        b = self.body
        parts = []
        for key in ("status", "decision", "edition", "billing", "reason", "outcome", "error"):
            if b.get(key) not in (None, ""):
                value = b[key]
                if isinstance(value, dict):
                    value = value.get("code") or value.get("message") or value
                parts.append(f"{key}: {value}")
        if isinstance(b.get("price"), dict):
            due = b["price"].get("amount_due") or {}
            if "amount" in due:
                parts.append(f"due {format_money(due['amount'], due.get('currency', 'EUR'))}")
        if "customer_email" in b and not self.is_action:
            parts.append(str(b["customer_email"]))
        return "; ".join(str(p) for p in parts)


_RELATED = ("order_id", "previous_order_id", "superseded_by", "upgrade_of")
#: Secrets some events carry for their one reader (the mailer): never kept in the log.
REDACTED = frozenset({"registration_token", "link", "key", "appliance_secret", "password"})


def redact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if k in REDACTED and v else v) for k, v in body.items()}


def entry_of(
    routing_key: str,
    body: dict[str, Any],
    *,
    message_id: str,
    publisher: str,
    correlation_id: str | None,
    received_at: datetime,
    operator: str | None = None,
) -> LogEntry:
    """The log entry of an event body (or an action's), with the ids it is indexed by."""
    occurred = body.get("occurred_at")
    occurred_at = datetime.fromisoformat(occurred) if isinstance(occurred, str) else received_at
    order_ids = [str(body[k]) for k in _RELATED if isinstance(body.get(k), str) and body[k]]
    email = body.get("customer_email")
    return LogEntry(
        id=message_id,
        routing_key=routing_key,
        occurred_at=occurred_at,
        received_at=received_at,
        publisher=publisher,
        correlation_id=correlation_id or body.get("correlation_id"),
        order_id=order_ids[0] if order_ids else None,
        order_ids=list(dict.fromkeys(order_ids)),
        reseller_id=body.get("reseller_id"),
        customer_email=email.strip().lower() if isinstance(email, str) and email else None,
        operator=operator or body.get("reviewer") or body.get("operator"),
        body=redact(body),
    )


def format_money(amount: int, currency: str = "EUR") -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency}".replace(",", "\u202f")


def format_age(delta: timedelta) -> str:
    """``3d 4h``, ``5h 12m``, ``42m``, ``12s``: an age at a glance."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


# --- a line, folded from its log entries ---------------------------------------------


class ProofSeen(BaseModel):
    proof_id: str
    sha256: str
    size: int
    content_type: str
    submitted_at: datetime


class LineState(BaseModel):
    """What the event log says of one order line (its ``_id`` is the order id)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    status: LineStatus
    status_since: datetime
    reseller_id: str | None = None
    space: str | None = None
    edition: str | None = None
    billing: str | None = None
    currency: str = "EUR"
    list_price: int | None = None
    amount_due: int | None = None
    credit_applied: int | None = None
    first_sale: bool = False
    placed_at: datetime | None = None
    reserved_at: datetime | None = None
    proof: ProofSeen | None = None
    proofs: int = 0
    rejection_reason: str | None = None
    reviewer: str | None = None
    paid_at: datetime | None = None
    bound_at: datetime | None = None
    customer_email: str | None = None
    upgrade_of: str | None = None
    superseded_by: str | None = None
    last_event_at: datetime
    events: int = Field(description="How many log entries it was folded from.")

    @property
    def order_id(self) -> str:
        return self.id


# Within one instant (tests freeze the clock) the workflow's own order decides.
_RANK = {
    "credit.reserved": 0,
    "order.placed": 1,
    "credit.consumed": 2,
    "proof.submitted": 3,
    "proof.rejected": 4,
    "proof.accepted": 5,
    "plan.bound": 6,
    "plan.upgraded": 7,
    "plan.superseded": 8,
}


def timeline_order(entry: LogEntry) -> tuple[datetime, int, datetime]:
    return (entry.occurred_at, _RANK.get(entry.routing_key, 50), entry.received_at)


def fold_line(order_id: str, entries: Iterable[LogEntry]) -> LineState | None:
    """The line's state from its entries (any order); None if nothing says it exists."""
    line: LineState | None = None
    count = 0
    for e in sorted(entries, key=timeline_order):
        count += 1
        # Entries naming this line otherwise (an upgrade's ``previous_order_id``) and the
        # operators' actions are in its timeline; only its own events make its state.
        if e.is_action or e.body.get("order_id") != order_id:
            continue
        at = e.occurred_at
        if line is None:
            line = LineState(
                id=order_id,
                status="reserved",
                status_since=at,
                last_event_at=at,
                events=0,
                reseller_id=e.reseller_id,
                reserved_at=at,
            )
        line.last_event_at = max(line.last_event_at, at)
        _apply(line, e, at)
    if line is not None:
        line.events = count
    return line


def _set_status(line: LineState, status: LineStatus, at: datetime) -> None:
    if line.status != status:
        line.status = status
        line.status_since = at


def _apply(line: LineState, e: LogEntry, at: datetime) -> None:
    b = e.body
    key = e.routing_key
    if key == "credit.released" and line.status == "reserved":
        _set_status(line, "released", at)
    elif key == "order.placed":
        price = b.get("price") or {}
        due = price.get("amount_due") or {}
        line.reseller_id = b.get("reseller_id", line.reseller_id)
        line.space = b.get("space")
        line.edition = b.get("edition")
        line.billing = b.get("billing")
        line.currency = due.get("currency", line.currency)
        line.amount_due = due.get("amount")
        line.list_price = (price.get("list_price") or {}).get("amount")
        line.credit_applied = (price.get("credit_applied") or {}).get("amount")
        line.first_sale = bool(price.get("first_sale"))
        line.placed_at = at
        line.upgrade_of = b.get("upgrade_of")
        if line.status in ("reserved", "released"):
            _set_status(line, "awaiting_proof", at)
    elif key == "proof.submitted":
        line.proof = ProofSeen(
            proof_id=b["proof_id"],
            sha256=b["sha256"],
            size=b["size"],
            content_type=b["content_type"],
            submitted_at=at,
        )
        line.proofs += 1
        _set_status(line, "proof_submitted", at)
    elif key == "proof.rejected":
        line.rejection_reason = b.get("reason")
        line.reviewer = b.get("reviewer")
        _set_status(line, "awaiting_proof", at)
    elif key == "proof.accepted":
        line.reviewer = b.get("reviewer")
        line.rejection_reason = None
        line.paid_at = at
        _set_status(line, "paid", at)
    elif key in ("plan.bound", "plan.upgraded"):
        line.customer_email = e.customer_email
        line.bound_at = at
        _set_status(line, "bound", at)
    elif key == "plan.superseded":
        line.superseded_by = b.get("superseded_by")
        _set_status(line, "superseded", at)
    elif key == "order.cancelled":
        _set_status(line, "cancelled", at)
    elif key == "order.expired":
        _set_status(line, "expired", at)


# --- stuck lines -----------------------------------------------------------------------


@dataclass(frozen=True)
class StuckRules:
    awaiting_proof: timedelta = timedelta(days=7)
    review: timedelta = timedelta(hours=24)
    unbound: timedelta = timedelta(days=7)
    upgrade: timedelta = timedelta(hours=24)
    orphan: timedelta = timedelta(hours=24)

    def describe(self) -> dict[StuckKind, str]:
        return {
            "awaiting_proof": f"awaiting proof for more than {format_age(self.awaiting_proof)}",
            "review_overdue": f"proof awaiting review for more than {format_age(self.review)}",
            "paid_unbound": f"paid but unbound for more than {format_age(self.unbound)}",
            "upgrade_pending": f"upgrade unpaid for more than {format_age(self.upgrade)}",
            "orphaned_reservation": f"credit reserved, no line after {format_age(self.orphan)}",
        }


def stuck(line: LineState, now: datetime, rules: StuckRules) -> StuckLine | None:
    """Why ``line`` is stuck now, if it is (the first rule that holds)."""
    kind: StuckKind | None = None
    since = line.status_since
    if line.status in ("awaiting_proof", "proof_submitted") and line.upgrade_of:
        since = line.placed_at or since
        kind = "upgrade_pending" if now - since > rules.upgrade else None
    elif line.status == "awaiting_proof":
        kind = "awaiting_proof" if now - since > rules.awaiting_proof else None
    elif line.status == "proof_submitted":
        kind = "review_overdue" if now - since > rules.review else None
    elif line.status == "paid" and line.space != "personal":
        kind = "paid_unbound" if now - since > rules.unbound else None
    elif line.status == "reserved":
        kind = "orphaned_reservation" if now - since > rules.orphan else None
    if kind is None:
        return None
    return StuckLine(
        order_id=line.id,
        kind=kind,
        since=since,
        age_seconds=int((now - since).total_seconds()),
        reseller_id=line.reseller_id,
        status=line.status,
        edition=line.edition,
    )


#: The statuses a stuck line can have (the store reads only those).
STUCK_STATUSES: tuple[LineStatus, ...] = ("reserved", "awaiting_proof", "proof_submitted", "paid")


# --- operators -----------------------------------------------------------------------

MIN_PASSWORD_LENGTH = 12


class Operator(BaseModel):
    """An operations account: its ``_id`` is its normalised email (the sign-in name)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    name: str
    password_hash: str
    created_at: datetime
    disabled: bool = False

    @property
    def email(self) -> str:
        return self.id


def operator_closed(operator: Operator) -> Refused | None:
    """A disabled operator is told what a wrong password is told."""
    return invalid_credentials() if operator.disabled else None


class OperatorSession(WebSession):
    """An operator's signed-in browser (``shared.runtime.web``: the reseller space's rules)."""

    ACCOUNT: ClassVar[str] = "operator"

    operator: str = Field(description="The operator's email.")


def new_operator(
    email: str, name: str, password: str, *, password_hash: str, now: datetime
) -> Operator:
    """An operator account, or a precise refusal (the password is hashed by the caller)."""
    address = normalise_email(email)
    check_password(password)
    return Operator(
        id=address, name=name.strip() or address, password_hash=password_hash, created_at=now
    )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused(
            ErrorCode.WEAK_PASSWORD,
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
        )
