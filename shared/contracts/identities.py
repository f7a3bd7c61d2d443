"""Who may say what on the broker (CONTRACT.md, Identities): the one table.

Every process connects to RabbitMQ as its own user, named ``<prefix><role>``, and sets
the AMQP ``user_id`` property (RabbitMQ refuses a message whose ``user_id`` is not the
connection's user). A consumer applies a command only when its publisher's role is in
``SENDERS`` for that routing key, and an event only when it comes from the service
that ``OWNERS`` names: anything else is refused with ``unauthorized_publisher``.

The same table gives each user its RabbitMQ topic permissions (``tools.broker_users``),
so the broker itself refuses most forgeries before a consumer sees them; the consumer
check still holds where a broker is misconfigured (or ``guest`` still has its rights).
"""

from __future__ import annotations

from typing import Final, Literal

from shared.contracts.base import Command, Message

Role = Literal["quotes", "orders", "credits", "licensing", "storefront", "operations", "mailer"]

#: The domain services: each owns the events it publishes and answers its commands.
SERVICE_ROLES: Final = ("quotes", "orders", "credits", "licensing")
#: Actors outside the services. ``storefront``: internal systems acting for a reseller they
#: authenticated (reseller commands and queries). ``operations``: staff and their tooling.
#: ``mailer``: consumes events (notifications), publishes nothing.
OUTSIDE_ROLES: Final = ("storefront", "operations", "mailer")
ROLES: Final = (*SERVICE_ROLES, *OUTSIDE_ROLES)
#: Outside roles a web face of the product runs as, consuming commands through queues of its
#: own (``<role>.<routing key>``) like a service: ``storefront`` is the reseller space,
#: ``operations`` the operations console (which consumes every event into its event log).
WEB_FACE_ROLES: Final = ("storefront", "operations")

_RESELLER: Final = frozenset({"storefront"})
_OPERATIONS: Final = frozenset({"operations"})
_READERS: Final = frozenset({"storefront", "operations"})

#: Commands and queries: the roles allowed to send each one.
SENDERS: Final[dict[str, frozenset[str]]] = {
    "quote.request": _RESELLER,
    "order.place": _RESELLER,
    "order.cancel": _RESELLER,
    "plan.bind": _RESELLER,
    "plan.upgrade": _RESELLER,
    "proof.review": _OPERATIONS,
    "license.suspend": _OPERATIONS,
    "license.reinstate": _OPERATIONS,
    "registration.reissue": _OPERATIONS,
    "partner.create": _OPERATIONS,
    "partner.disable": _OPERATIONS,
    "partner.invite": _OPERATIONS,
    "order.get": _READERS,
    "order.list": _READERS,
    "credits.balance": _READERS | {"quotes"},  # quotes previews the credit a quote applies
    "credits.statement": _READERS,
    "license.status": _OPERATIONS,
    # operations: a proof file to review; the dead letters each service keeps
    "proof.get": _OPERATIONS,
    "deadletter.list": _OPERATIONS,
    "deadletter.replay": _OPERATIONS,
    "deadletter.discard": _OPERATIONS,
    # the operations console answers from its event log; the CLI creates its accounts
    "review.queue": _OPERATIONS,
    "lines.stuck": _OPERATIONS,
    "line.timeline": _OPERATIONS,
    "operator.create": _OPERATIONS,
    # reseller API keys of the orders HTTP API: operations, and the reseller space later
    "apikey.create": _READERS,
    "apikey.revoke": _READERS,
    "apikey.list": _READERS,
    # internal: orders prices a new line through quotes and credits
    "quote.redeem": frozenset({"orders"}),
    "credit.reserve": frozenset({"orders"}),
}

#: Events: the service that owns (alone publishes) each one. ``command.rejected`` is
#: published by whichever service refused the command.
OWNERS: Final[dict[str, frozenset[str]]] = {
    "quote.issued": frozenset({"quotes"}),
    **{
        key: frozenset({"orders"})
        for key in (
            "order.placed",
            "order.cancelled",
            "order.expired",
            "proof.submitted",
            "proof.accepted",
            "proof.rejected",
            "plan.bound",
            "plan.upgraded",
            "plan.superseded",
            "apikey.created",
            "apikey.revoked",
        )
    },
    **{
        key: frozenset({"credits"})
        for key in (
            "credit.granted",
            "credit.reserved",
            "credit.released",
            "credit.consumed",
            "credit.expired",
        )
    },
    **{
        key: frozenset({"licensing"})
        for key in (
            "license.unlocked",
            "license.changed",
            "license.expiring",
            "license.expired",
            "license.suspended",
            "license.reinstated",
            "appliance.registered",
            "appliance.moved",
            "customer.notification",
        )
    },
    # the reseller space: partner accounts, and the links the mailer sends
    **{
        key: frozenset({"storefront"})
        for key in (
            "partner.created",
            "partner.invited",
            "partner.disabled",
            "partner.notification",
        )
    },
    "command.rejected": frozenset({*SERVICE_ROLES, *WEB_FACE_ROLES}),
    # every consumer keeps its dead letters and audits their replay and discard
    "deadletter.replayed": frozenset({*SERVICE_ROLES, *WEB_FACE_ROLES}),
    "deadletter.discarded": frozenset({*SERVICE_ROLES, *WEB_FACE_ROLES}),
}


def allowed_publishers(message: type[Message]) -> frozenset[str]:
    """The roles whose messages of this kind a consumer applies."""
    table = SENDERS if issubclass(message, Command) else OWNERS
    return table.get(message.ROUTING_KEY, frozenset())


def may_publish(role: str | None, message: type[Message]) -> bool:
    return role is not None and role in allowed_publishers(message)


def commands_of(role: str) -> list[str]:
    """The command and query routing keys ``role`` may send (sorted)."""
    return sorted(key for key, roles in SENDERS.items() if role in roles)


def events_of(role: str) -> list[str]:
    """The event routing keys ``role`` may publish (sorted)."""
    return sorted(key for key, roles in OWNERS.items() if role in roles)


def username(prefix: str, role: str) -> str:
    """The RabbitMQ user of ``role``: ``<prefix><role>`` (prefix ``xo-`` in production)."""
    return f"{prefix}{role}"


def role_of(user_id: str | None, prefix: str) -> str | None:
    """The role a validated ``user_id`` holds, or None for any other user (``guest``...)."""
    if not user_id or not user_id.startswith(prefix):
        return None
    role = user_id[len(prefix) :]
    return role if role in ROLES else None
