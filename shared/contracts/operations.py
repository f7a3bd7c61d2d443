"""Operations messages: reading a proof file, and the dead letters each service keeps.

Dead letters: every service keeps a copy of each message it dead-letters (with the
validated original publisher) and answers, on its own queues, ``deadletter.list``,
``deadletter.replay`` and ``deadletter.discard`` for the ``service`` they name (the
other services ignore them). A replay re-runs the stored message through the same
consumer path, checked against its *original* publisher and deduplicated by its
*original* message id: operations cannot forge anything by replaying. Both actions are
audited as events naming the operator.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from shared.contracts.base import Command, Event, Query

_ID = Field(min_length=1, max_length=128)
_SERVICE = Field(min_length=1, max_length=64, description="The service that keeps it.")
_OPERATOR = Field(min_length=1, max_length=128, description="The operator who acts.")

DeadLetterStatus = Literal["dead", "replayed", "discarded"]


class ProofFile(BaseModel):
    order_id: str
    reseller_id: str
    proof_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: AwareDatetime
    content_base64: str = Field(description="The file's bytes, base64 (at most PROOF_MAX_BYTES).")


class GetProof(Query):
    """``proof.get`` (operations): one uploaded proof file of a line, to review it (O4)."""

    ROUTING_KEY = "proof.get"
    RESULT = ProofFile

    order_id: str = _ID
    proof_id: str = _ID


class DeadLetterView(BaseModel):
    message_id: str
    service: str
    routing_key: str
    reason: str
    publisher: str = Field(description="The validated user_id of its original publisher.")
    dead_at: AwareDatetime
    status: DeadLetterStatus
    body_preview: str = Field(description="The first 2,000 characters of the body.")
    correlation_id: str | None = None
    attempts: int = Field(default=1, description="Deliveries before it was dead-lettered.")
    replays: int = 0
    last_outcome: str | None = Field(default=None, description="What the last replay did.")
    operator: str | None = Field(default=None, description="Who replayed or discarded it.")
    discard_reason: str | None = None


class DeadLetterList(BaseModel):
    service: str
    dead_letters: list[DeadLetterView]


class ListDeadLetters(Query):
    """``deadletter.list`` (operations): the dead letters ``service`` keeps, newest first."""

    ROUTING_KEY = "deadletter.list"
    RESULT = DeadLetterList

    service: str = _SERVICE
    status: DeadLetterStatus | None = Field(default="dead", description="None: every status.")
    reason: str | None = Field(default=None, max_length=200, description="Reasons starting so.")
    limit: int = Field(default=200, ge=1, le=1000)


class DeadLetterResult(BaseModel):
    service: str
    message_id: str
    status: DeadLetterStatus
    outcome: str = Field(description="What the replay did: ok, refused, duplicate, failed...")


class ReplayDeadLetter(Command):
    """``deadletter.replay`` (operations): run the kept message again through its consumer."""

    ROUTING_KEY = "deadletter.replay"
    RESULT = DeadLetterResult

    service: str = _SERVICE
    message_id: str = _ID
    operator: str = _OPERATOR


class DiscardDeadLetter(Command):
    """``deadletter.discard`` (operations): mark the kept message as deliberately dropped."""

    ROUTING_KEY = "deadletter.discard"
    RESULT = DeadLetterResult

    service: str = _SERVICE
    message_id: str = _ID
    operator: str = _OPERATOR
    reason: str = Field(min_length=1, max_length=2000)


class _DeadLetterEvent(Event):
    service: str
    message_id: str
    routing_key: str
    operator: str


class DeadLetterReplayed(_DeadLetterEvent):
    ROUTING_KEY = "deadletter.replayed"
    outcome: str


class DeadLetterDiscarded(_DeadLetterEvent):
    ROUTING_KEY = "deadletter.discarded"
    reason: str


# --- the operations console's own queries (answered from its event log) ----------------


class ReviewItem(BaseModel):
    order_id: str
    reseller_id: str | None = None
    edition: str | None = None
    billing: str | None = None
    amount_due: int | None = Field(default=None, description="Minor units.")
    currency: str
    proof_id: str
    sha256: str
    size: int
    content_type: str
    submitted_at: AwareDatetime
    age_seconds: int


class ReviewQueue(BaseModel):
    lines: list[ReviewItem]


class GetReviewQueue(Query):
    """``review.queue`` (operations): lines whose proof awaits review, oldest first (O4)."""

    ROUTING_KEY = "review.queue"
    RESULT = ReviewQueue

    limit: int = Field(default=500, ge=1, le=5000)


StuckKind = Literal[
    "awaiting_proof", "review_overdue", "paid_unbound", "upgrade_pending", "orphaned_reservation"
]


class StuckLineView(BaseModel):
    order_id: str
    kind: StuckKind
    since: AwareDatetime
    age_seconds: int
    reseller_id: str | None = None
    status: str
    edition: str | None = None


class StuckLines(BaseModel):
    lines: list[StuckLineView]
    rules: dict[str, str] = Field(description="Each kind and its threshold, in words.")


class GetStuckLines(Query):
    """``lines.stuck`` (operations): lines stuck in their workflow, oldest first."""

    ROUTING_KEY = "lines.stuck"
    RESULT = StuckLines


class TimelineEntry(BaseModel):
    message_id: str
    routing_key: str = Field(description="The event's, or ``action:<command>`` for an operator's.")
    occurred_at: AwareDatetime
    publisher: str
    correlation_id: str | None = None
    operator: str | None = None
    summary: str


class LineTimeline(BaseModel):
    order_id: str
    status: str | None = Field(
        default=None, description="What the event log says; none if it knows nothing."
    )
    reseller_id: str | None = None
    customer_email: str | None = None
    entries: list[TimelineEntry]


class GetLineTimeline(Query):
    """``line.timeline`` (operations): every event of a line, with who published it."""

    ROUTING_KEY = "line.timeline"
    RESULT = LineTimeline

    order_id: str = _ID


class OperatorView(BaseModel):
    email: str
    name: str
    created_at: AwareDatetime


class CreateOperator(Command):
    """``operator.create`` (operations): an account of the operations console. The password
    travels only as its argon2id hash, made by the CLI."""

    ROUTING_KEY = "operator.create"
    RESULT = OperatorView

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(min_length=20, max_length=400, pattern=r"^\$argon2id\$")
