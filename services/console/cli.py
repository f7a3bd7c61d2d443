"""``xo-reseller``: the operations CLI. It speaks the public contract on the broker as the
``operations`` user (credentials from ``DATA_DIR/broker-users.json`` or ``AMQP_URL``),
like the console; the console service answers the questions about its event log.

Tables on a terminal, ``--json`` for scripts. Exit codes:
0 done; 1 refused by the system (the reason is printed); 2 wrong usage;
3 the broker or a service did not answer.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

import aio_pika
import typer
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.console.domain import check_password, format_age, format_money
from services.console.queues import QueueWatcher
from shared.basics.errors import Refused
from shared.contracts import REGISTRY, Command, Reply
from shared.contracts.credits import GetBalance, GetStatement
from shared.contracts.identities import SERVICE_ROLES, WEB_FACE_ROLES
from shared.contracts.licensing import (
    GetLicenseStatus,
    ReinstateLicense,
    ReissueRegistrationToken,
    SuspendLicense,
)
from shared.contracts.operations import (
    CreateOperator,
    DeadLetterView,
    DiscardDeadLetter,
    GetLineTimeline,
    GetReviewQueue,
    GetStuckLines,
    ListDeadLetters,
    ReplayDeadLetter,
)
from shared.contracts.orders import ReviewProof
from shared.runtime.identity import BrokerIdentity, IdentityError
from shared.runtime.settings import Settings
from shared.runtime.web import hash_password

REFUSED, UNAVAILABLE = 1, 3
ROLE = "operations"
#: The consumers that keep dead letters (``deadletter.*``).
KEEPERS: tuple[str, ...] = (*SERVICE_ROLES, *WEB_FACE_ROLES)
R = TypeVar("R", bound=BaseModel)

app = typer.Typer(
    name="xo-reseller",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
review_app = typer.Typer(help="Proofs awaiting review (O4).", no_args_is_help=True)
lines_app = typer.Typer(help="Order lines from the event log.", no_args_is_help=True)
line_app = typer.Typer(help="One order line.", no_args_is_help=True)
customer_app = typer.Typer(help="A customer's licence, by email.", no_args_is_help=True)
partner_app = typer.Typer(help="Partner accounts and their API keys.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead letters each service keeps.", no_args_is_help=True)
operator_app = typer.Typer(help="Accounts of the operations console.", no_args_is_help=True)
for sub, name in (
    (review_app, "review"),
    (lines_app, "lines"),
    (line_app, "line"),
    (customer_app, "customer"),
    (partner_app, "partner"),
    (dlq_app, "dlq"),
    (operator_app, "operator"),
):
    app.add_typer(sub, name=name)

out = Console()
err = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
OperatorOption = Annotated[
    str,
    typer.Option(
        "--operator",
        envvar="XO_OPERATOR",
        help="Who acts (named in the command and the event log); default cli:<user>.",
    ),
]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for each answer.")]


def _default_operator() -> str:
    return f"cli:{getpass.getuser()}"


class Unavailable(Exception):
    """The broker or the service that answers did not."""


class OpsClient:
    """Request/reply on ``reseller.commands`` as the operations user (direct reply-to)."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    async def __aenter__(self) -> OpsClient:
        try:
            identity = BrokerIdentity.resolve(
                role=ROLE,
                amqp_url=self.settings.amqp_url,
                prefix=self.settings.amqp_user_prefix,
                users_file=self.settings.users_file(),
            )
            self.user_id = identity.user_id
            self.url = identity.url
            self.connection = await aio_pika.connect(identity.url, timeout=self.timeout)
        except (IdentityError, OSError, aio_pika.exceptions.AMQPException) as exc:
            raise Unavailable(f"cannot connect to the broker as {ROLE}: {exc}") from exc
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange(
            self.settings.amqp_namespace + "reseller.commands", ensure=False
        )
        replies = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def ask(self, command: Command, result: type[R], *, message_id: str | None = None) -> R:
        correlation = str(uuid.uuid4())
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        await self.exchange.publish(
            aio_pika.Message(
                command.model_dump_json().encode(),
                message_id=message_id or str(uuid.uuid4()),
                correlation_id=correlation,
                reply_to="amq.rabbitmq.reply-to",
                content_type="application/json",
                user_id=self.user_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=command.ROUTING_KEY,
        )
        try:
            body = await asyncio.wait_for(future, self.timeout)
        except TimeoutError as exc:
            self._pending.pop(correlation, None)
            raise Unavailable(f"no answer to {command.ROUTING_KEY} in {self.timeout:g}s") from exc
        reply = Reply[result].model_validate_json(body)  # type: ignore[valid-type]
        if reply.error is not None:
            raise Refused(reply.error.code, reply.error.message)
        assert reply.result is not None
        return reply.result


def _run(work: Callable[[OpsClient], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Run ``work`` with a connected client; refusals and outages become exit codes."""

    async def main() -> Any:
        async with OpsClient(Settings(), timeout) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except Refused as refusal:
        err.print(f"[red]refused[/red] ({refusal.code}): {refusal.message}")
        raise typer.Exit(REFUSED) from None
    except (Unavailable, aio_pika.exceptions.AMQPException, OSError) as exc:
        err.print(f"[red]unavailable[/red]: {exc}")
        raise typer.Exit(UNAVAILABLE) from None


def _json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        text = value.model_dump_json(indent=2)
    elif isinstance(value, dict):
        text = json.dumps(value, indent=2, default=str)
    else:
        text = json.dumps([v.model_dump(mode="json") for v in value], indent=2)
    sys.stdout.write(text + "\n")


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


# --- review -----------------------------------------------------------------------------


@review_app.command("list")
def review_list(as_json: JsonOption = False, timeout: TimeoutOption = 10.0) -> None:
    """Lines whose proof awaits review, oldest first (answered by the console)."""
    from shared.contracts.operations import ReviewQueue

    queue: ReviewQueue = _run(lambda c: c.ask(GetReviewQueue(), ReviewQueue), timeout)
    if as_json:
        return _json(queue)
    _table(
        f"{len(queue.lines)} proof(s) awaiting review",
        ["line", "reseller", "plan", "amount due", "proof", "sha-256", "waiting"],
        [
            (
                i.order_id,
                i.reseller_id,
                f"{i.edition} {i.billing}",
                format_money(i.amount_due, i.currency) if i.amount_due is not None else "",
                f"{i.content_type} {i.size} B",
                i.sha256[:16] + "…",
                format_age_s(i.age_seconds),
            )
            for i in queue.lines
        ],
    )


def format_age_s(seconds: int) -> str:
    from datetime import timedelta

    return format_age(timedelta(seconds=seconds))


def _review(
    order_id: str, decision: str, reason: str | None, operator: str, as_json: bool, timeout: float
) -> None:
    from shared.contracts.orders import OrderStatusResult

    command = ReviewProof(
        order_id=order_id,
        decision=decision,
        reviewer=operator or _default_operator(),
        reason=reason,
    )
    result: OrderStatusResult = _run(lambda c: c.ask(command, OrderStatusResult), timeout)
    if as_json:
        return _json(result)
    out.print(f"{result.order_id}: [bold]{result.status}[/bold]")


@review_app.command("accept")
def review_accept(
    order_id: str,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Accept a line's proof: the line becomes paid."""
    _review(order_id, "accept", None, operator, as_json, timeout)


@review_app.command("reject")
def review_reject(
    order_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Shown to the reseller (required).")],
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Reject a line's proof with a reason: the line goes back to awaiting proof."""
    if not reason.strip():
        err.print("a rejection needs a reason (--reason)")
        raise typer.Exit(2)
    _review(order_id, "reject", reason, operator, as_json, timeout)


# --- lines ------------------------------------------------------------------------------


@lines_app.command("stuck")
def lines_stuck(as_json: JsonOption = False, timeout: TimeoutOption = 10.0) -> None:
    """Lines stuck in their workflow (answered by the console from its event log)."""
    from shared.contracts.operations import StuckLines

    stuck: StuckLines = _run(lambda c: c.ask(GetStuckLines(), StuckLines), timeout)
    if as_json:
        return _json(stuck)
    _table(
        f"{len(stuck.lines)} stuck line(s)",
        ["line", "why", "status", "reseller", "since", "age"],
        [
            (
                s.order_id,
                s.kind,
                s.status,
                s.reseller_id,
                f"{s.since:%Y-%m-%d %H:%M}",
                format_age_s(s.age_seconds),
            )
            for s in stuck.lines
        ],
    )


@line_app.command("show")
def line_show(order_id: str, as_json: JsonOption = False, timeout: TimeoutOption = 10.0) -> None:
    """A line's timeline: every event with its time, publisher, operator, correlation id."""
    from shared.contracts.operations import LineTimeline

    timeline: LineTimeline = _run(
        lambda c: c.ask(GetLineTimeline(order_id=order_id), LineTimeline), timeout
    )
    if as_json:
        return _json(timeline)
    if timeline.status is None and not timeline.entries:
        err.print(f"the event log knows no line {order_id}")
        raise typer.Exit(REFUSED)
    out.print(
        f"[bold]{order_id}[/bold] status {timeline.status} · reseller {timeline.reseller_id}"
        + (f" · customer {timeline.customer_email}" if timeline.customer_email else "")
    )
    _table(
        "timeline",
        ["time", "what", "publisher", "operator", "correlation", "details"],
        [
            (
                f"{e.occurred_at:%Y-%m-%d %H:%M:%S}",
                e.routing_key,
                e.publisher,
                e.operator,
                e.correlation_id,
                e.summary,
            )
            for e in timeline.entries
        ],
    )


# --- customers --------------------------------------------------------------------------


@customer_app.command("show")
def customer_show(email: str, as_json: JsonOption = False, timeout: TimeoutOption = 10.0) -> None:
    """Plans, appliances, status and reason of a customer's licence."""
    from shared.contracts.licensing import LicenseStatusResult

    status: LicenseStatusResult = _run(
        lambda c: c.ask(GetLicenseStatus(customer_email=email), LicenseStatusResult), timeout
    )
    if as_json:
        return _json(status)
    out.print(
        f"[bold]{status.customer_email}[/bold]: {status.status} ({status.reason}), edition "
        f"{status.edition}"
        + (f", suspended: {status.suspension_reason}" if status.suspension_reason else "")
    )
    _table(
        "plans",
        ["line", "edition", "start", "end", "state", "warnings sent"],
        [
            (
                p.order_id,
                p.edition,
                f"{p.period_start:%Y-%m-%d}",
                f"{p.period_end:%Y-%m-%d}",
                p.state,
                ",".join(map(str, p.warnings_sent)),
            )
            for p in status.plans
        ],
    )
    _table(
        "appliances",
        ["appliance", "status", "licence", "edition"],
        [(a.appliance_id, a.status, a.license_status, a.edition) for a in status.appliances],
    )


def _licence(
    kind: type[Command], email: str, reason: str, operator: str, as_json: bool, timeout: float
) -> None:
    if not reason.strip():
        err.print("give a --reason")
        raise typer.Exit(2)
    who = operator or _default_operator()
    command = kind(customer_email=email, reason=reason.strip(), operator=who)  # type: ignore[call-arg]
    assert command.RESULT is not None
    result = _run(lambda c: c.ask(command, command.RESULT), timeout)  # type: ignore[arg-type]
    if as_json:
        return _json(result)
    out.print(f"{command.ROUTING_KEY}: done for {email}")


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded with the operator).")]


@customer_app.command("suspend")
def customer_suspend(
    email: str,
    reason: ReasonOption,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Suspend a customer's licence (L8)."""
    _licence(SuspendLicense, email, reason, operator, as_json, timeout)


@customer_app.command("reinstate")
def customer_reinstate(
    email: str,
    reason: ReasonOption,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Reinstate a suspended licence (L8)."""
    _licence(ReinstateLicense, email, reason, operator, as_json, timeout)


@customer_app.command("reissue")
def customer_reissue(
    email: str,
    reason: ReasonOption,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Send a new registration token; earlier tokens stop working (L2)."""
    _licence(ReissueRegistrationToken, email, reason, operator, as_json, timeout)


# --- partners ---------------------------------------------------------------------------


def _contract(key: str) -> type[Command]:
    model = REGISTRY.get(key)
    if model is None or not issubclass(model, Command):
        err.print(f"{key} is not available on this system")
        raise typer.Exit(REFUSED)
    return model


def _send(key: str, fields: dict[str, Any], as_json: bool, timeout: float) -> Any:
    model = _contract(key)
    try:
        command = model.model_validate(fields)
    except ValueError as invalid:
        err.print(str(invalid))
        raise typer.Exit(2) from None
    assert command.RESULT is not None
    result = _run(lambda c: c.ask(command, command.RESULT), timeout)  # type: ignore[arg-type]
    if as_json:
        _json(result)
    return result


@partner_app.command("create")
def partner_create(
    reseller_id: str,
    company: Annotated[str, typer.Option(help="The partner's company name.")],
    email: Annotated[str, typer.Option(help="Contact email: gets the invitation link.")],
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Create a partner account; its contact gets an invitation to set a password."""
    fields = {"reseller_id": reseller_id, "company": company, "contact_email": email}
    result = _send("partner.create", fields, as_json, timeout)
    if not as_json:
        out.print(f"partner {reseller_id}: {getattr(result, 'status', 'created')}; invitation sent")


@partner_app.command("invite")
def partner_invite(
    reseller_id: str,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Send a partner a new invitation link (``partner.invite``; the previous link dies)."""
    result = _send("partner.invite", {"reseller_id": reseller_id}, as_json, timeout)
    if not as_json:
        out.print(f"partner {reseller_id}: invitation sent ({result})")


@partner_app.command("disable")
def partner_disable(
    reseller_id: str,
    reason: ReasonOption,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Disable a partner account: it can no longer sign in."""
    _send("partner.disable", {"reseller_id": reseller_id, "reason": reason}, as_json, timeout)
    if not as_json:
        out.print(f"partner {reseller_id}: disabled")


@partner_app.command("keys")
def partner_keys(
    reseller_id: str,
    revoke: Annotated[str | None, typer.Option(help="Revoke this key id.")] = None,
    create: Annotated[str | None, typer.Option(help="Create a key with this label.")] = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """A partner's API keys (list; --create LABEL shows the new key once; --revoke KEY_ID)."""
    if revoke:
        _send("apikey.revoke", {"reseller_id": reseller_id, "key_id": revoke}, as_json, timeout)
        if not as_json:
            out.print(f"key {revoke} revoked")
        return
    if create:
        made = _send(
            "apikey.create", {"reseller_id": reseller_id, "label": create}, as_json, timeout
        )
        if not as_json:
            out.print(f"key {made.key_id} (shown once): [bold]{made.key}[/bold]")
        return
    keys = _send("apikey.list", {"reseller_id": reseller_id}, as_json, timeout)
    if not as_json:
        _table(
            f"API keys of {reseller_id}",
            ["key", "label", "status", "created"],
            [(k.key_id, k.label, k.status, f"{k.created_at:%Y-%m-%d %H:%M}") for k in keys.keys],
        )


@partner_app.command("balance")
def partner_balance(
    reseller_id: str, as_json: JsonOption = False, timeout: TimeoutOption = 10.0
) -> None:
    """A partner's balance, lots and statement (with ``reconciled``)."""
    from shared.contracts.credits import BalanceResult, StatementResult

    async def both(c: OpsClient) -> tuple[BalanceResult, StatementResult]:
        return (
            await c.ask(GetBalance(reseller_id=reseller_id), BalanceResult),
            await c.ask(GetStatement(reseller_id=reseller_id), StatementResult),
        )

    balance, statement = _run(both, timeout)
    if as_json:
        return _json(statement)
    out.print(
        f"available {format_money(balance.available.amount)}, reserved "
        f"{format_money(balance.reserved.amount)}, reconciled {statement.reconciled}"
    )
    _table(
        "lots",
        ["lot", "amount", "remaining", "expires", "source"],
        [
            (
                lot.lot_id,
                format_money(lot.amount.amount),
                format_money(lot.remaining.amount),
                f"{lot.expires_at:%Y-%m-%d}",
                lot.source,
            )
            for lot in balance.lots
        ],
    )


# --- queues -----------------------------------------------------------------------------


@app.command("queues")
def queues(as_json: JsonOption = False) -> None:
    """Each queue's depth, unacknowledged count, consumers and rates."""
    settings = Settings()
    try:
        identity = BrokerIdentity.resolve(
            role=ROLE,
            amqp_url=settings.amqp_url,
            prefix=settings.amqp_user_prefix,
            users_file=settings.users_file(),
        )
        view = asyncio.run(
            QueueWatcher(
                identity.url,
                settings.amqp_namespace,
                settings.rabbitmq_management_url,
                tuple(settings.retry_delays_seconds),
            ).look()
        )
    except (IdentityError, OSError, aio_pika.exceptions.AMQPException) as exc:
        err.print(f"[red]unavailable[/red]: {exc}")
        raise typer.Exit(UNAVAILABLE) from None
    if as_json:
        return _json(view)
    if view.note:
        err.print(view.note)
    _table(
        f"queues ({view.source})",
        ["queue", "depth", "unacked", "consumers", "in/s", "out/s"],
        [
            (
                q.name + ("  [red]no consumer[/red]" if q.idle_without_consumer else ""),
                q.messages,
                q.unacked if q.unacked is not None else "—",
                q.consumers,
                f"{q.publish_rate:.2f}" if q.publish_rate is not None else "—",
                f"{q.deliver_rate:.2f}" if q.deliver_rate is not None else "—",
            )
            for q in view.queues
        ],
    )


# --- dead letters -----------------------------------------------------------------------


def _listed(
    client: OpsClient, services: Sequence[str], reason: str | None, status: str | None
) -> Awaitable[list[DeadLetterView]]:
    from shared.contracts.operations import DeadLetterList

    async def gather() -> list[DeadLetterView]:
        found: list[DeadLetterView] = []
        for service in services:
            answer = await client.ask(
                ListDeadLetters(service=service, reason=reason, status=status),
                DeadLetterList,
            )
            found += answer.dead_letters
        return found

    return gather()


ServiceOption = Annotated[
    list[str] | None, typer.Option("--service", help="Only this service (repeatable).")
]


@dlq_app.command("list")
def dlq_list(
    service: ServiceOption = None,
    reason: Annotated[str | None, typer.Option(help="Reasons starting so.")] = None,
    every_status: Annotated[bool, typer.Option("--all", help="Replayed, discarded too.")] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Dead letters with reason, routing key, publisher, age and a body preview."""
    services = service or list(KEEPERS)
    letters: list[DeadLetterView] = _run(
        lambda c: _listed(c, services, reason, None if every_status else "dead"), timeout
    )
    if as_json:
        return _json(letters)
    _table(
        f"{len(letters)} dead letter(s)",
        ["service", "message", "routing key", "reason", "publisher", "dead at", "status", "body"],
        [
            (
                d.service,
                d.message_id,
                d.routing_key,
                d.reason[:80],
                d.publisher,
                f"{d.dead_at:%Y-%m-%d %H:%M:%S}",
                d.status,
                d.body_preview[:60],
            )
            for d in letters
        ],
    )


@dlq_app.command("replay")
def dlq_replay(
    service: Annotated[str, typer.Argument(help="The service that keeps them.")],
    message_ids: Annotated[list[str] | None, typer.Argument(help="Message ids.")] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Replay every dead letter whose reason starts so."),
    ] = None,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Replay dead letters through their consumer (original publisher and message id)."""
    from shared.contracts.operations import DeadLetterResult

    if not message_ids and reason is None:
        err.print("name message ids, or --reason to replay all of one reason")
        raise typer.Exit(2)
    who = operator or _default_operator()

    async def replay(client: OpsClient) -> list[DeadLetterResult]:
        ids = list(message_ids or [])
        if reason is not None:
            ids += [d.message_id for d in await _listed(client, [service], reason, "dead")]
        results: list[DeadLetterResult] = []
        with Progress(console=err, transient=as_json) as progress:
            task = progress.add_task(f"replaying {len(ids)} from {service}", total=len(ids))
            for message_id in ids:
                try:
                    results.append(
                        await client.ask(
                            ReplayDeadLetter(service=service, message_id=message_id, operator=who),
                            DeadLetterResult,
                        )
                    )
                except Refused as refusal:
                    results.append(
                        DeadLetterResult(
                            service=service,
                            message_id=message_id,
                            status="dead",
                            outcome=str(refusal.code),
                        )
                    )
                progress.advance(task)
        return results

    results = _run(replay, timeout)
    if as_json:
        _json(results)
    else:
        _table(
            "replayed",
            ["message", "status", "outcome"],
            [(r.message_id, r.status, r.outcome) for r in results],
        )
    if any(r.status != "replayed" for r in results):
        raise typer.Exit(REFUSED)


@dlq_app.command("discard")
def dlq_discard(
    service: str,
    message_id: str,
    reason: ReasonOption,
    operator: OperatorOption = "",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Mark a dead letter as deliberately dropped, with a reason."""
    from shared.contracts.operations import DeadLetterResult

    command = DiscardDeadLetter(
        service=service,
        message_id=message_id,
        operator=operator or _default_operator(),
        reason=reason,
    )
    result = _run(lambda c: c.ask(command, DeadLetterResult), timeout)
    if as_json:
        return _json(result)
    out.print(f"{message_id}: {result.status}")


# --- operators --------------------------------------------------------------------------


@operator_app.command("create")
def operator_create(
    email: str,
    name: Annotated[str, typer.Option(help="The operator's name.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")
    ] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Create a console account. The password is hashed here (argon2id); only the hash
    is sent (``operator.create``, answered by the console)."""
    from shared.contracts.operations import OperatorView

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            err.print("the passwords differ")
            raise typer.Exit(2)
    try:
        check_password(password)
    except Refused as refusal:
        err.print(refusal.message)
        raise typer.Exit(2) from None
    command = CreateOperator(email=email, name=name, password_hash=hash_password(password))
    view: OperatorView = _run(lambda c: c.ask(command, OperatorView), timeout)
    if as_json:
        return _json(view)
    out.print(
        f"operator {view.email} created; sign in at the console (port "
        f"{os.environ.get('CONSOLE_PORT', '8106')})"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
