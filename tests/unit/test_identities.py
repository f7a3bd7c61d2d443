"""The identities table and the broker permissions derived from it (CONTRACT.md, Identities)."""

from __future__ import annotations

import re

import pytest

from shared.contracts import REGISTRY, Command
from shared.contracts.identities import (
    OWNERS,
    ROLES,
    SENDERS,
    SERVICE_ROLES,
    allowed_publishers,
    role_of,
)
from shared.runtime.topology import RETRY_EXCHANGE, delay_label
from tools.broker_users import permissions, topic_permissions


def test_every_public_message_has_someone_allowed_to_publish_it() -> None:
    for key, model in REGISTRY.items():
        if model.__module__.startswith("shared.contracts"):
            assert allowed_publishers(model), f"nobody may publish {key}"


def test_the_table_names_only_known_messages_and_roles() -> None:
    for key, roles in {**SENDERS, **OWNERS}.items():
        assert key in REGISTRY, key
        assert roles <= set(ROLES), (key, roles)
    assert all(issubclass(REGISTRY[k], Command) for k in SENDERS)
    assert not any(issubclass(REGISTRY[k], Command) for k in OWNERS)


@pytest.mark.parametrize(
    ("key", "allowed", "refused"),
    [
        ("proof.review", {"operations"}, {"storefront", "orders", "mailer"}),
        ("order.place", {"storefront"}, {"operations", "orders", "mailer"}),
        ("credit.reserve", {"orders"}, {"storefront", "operations", "credits"}),
        ("plan.bound", {"orders"}, {"licensing", "storefront", "operations"}),
        ("proof.accepted", {"orders"}, {"credits", "storefront"}),
        ("credit.granted", {"credits"}, {"orders"}),
    ],
)
def test_who_may_publish_what(key: str, allowed: set[str], refused: set[str]) -> None:
    model = REGISTRY[key]
    assert allowed <= allowed_publishers(model)
    assert not refused & allowed_publishers(model)


def test_a_user_id_holds_a_role_only_with_the_configured_prefix() -> None:
    assert role_of("xo-orders", "xo-") == "orders"
    assert role_of("guest", "xo-") is None
    assert role_of(None, "xo-") is None
    assert role_of("xo-root", "xo-") is None  # not a role
    assert role_of("orders", "xo-") is None  # right name, wrong prefix


@pytest.mark.parametrize("role", ROLES)
def test_topic_permissions_let_each_role_publish_exactly_its_own_keys(role: str) -> None:
    by_exchange = {t["exchange"]: re.compile(t["write"]) for t in topic_permissions(role, "")}
    for key, model in REGISTRY.items():
        if not model.__module__.startswith("shared.contracts"):
            continue
        exchange = "reseller.commands" if issubclass(model, Command) else "reseller.events"
        may = role in allowed_publishers(model)
        assert bool(by_exchange[exchange].match(key)) is may, (role, key)


def test_a_service_may_configure_its_own_queues_only() -> None:
    orders = permissions("orders", "ns.")
    configure = re.compile(orders["configure"])
    assert configure.match("ns.orders.order.place")
    assert configure.match("ns.reseller.events")
    assert not configure.match("ns.credits.order.placed")
    assert not configure.match("orders.order.place")  # outside its namespace
    assert re.compile(orders["write"]).match("amq.default")  # replies


def test_operations_configure_only_the_consoles_own_queues() -> None:
    """The operations console runs as ``operations`` and logs every event through
    ``operations.*`` queues; it declares none of the services' queues and publishes no
    event of theirs (topic permissions, below)."""
    granted = permissions("operations", "ns.")
    configure = re.compile(granted["configure"])
    assert configure.match("ns.operations.order.placed")
    assert not configure.match("ns.orders.order.place")
    assert not configure.match("ns.storefront.partner.create")
    assert not configure.match("operations.order.placed")  # outside its namespace
    assert re.compile(granted["write"]).match("ns.reseller.commands")
    assert re.compile(granted["read"]).match("ns.reseller.events")  # to bind its queues


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("proof.get", {"operations"}),
        ("deadletter.replay", {"operations"}),
        ("review.queue", {"operations"}),
        ("operator.create", {"operations"}),
        (
            "deadletter.replayed",
            {"quotes", "orders", "credits", "licensing", "storefront", "operations"},
        ),
    ],
)
def test_operations_read_proofs_and_dead_letters_and_ask_the_console(
    key: str, allowed: set[str]
) -> None:
    assert allowed_publishers(REGISTRY[key]) == allowed


def test_the_storefront_configures_its_own_queues_only() -> None:
    """The reseller space runs as ``storefront`` and consumes ``partner.create`` through
    ``storefront.*`` queues; nothing of the services'."""
    granted = permissions("storefront", "ns.")
    configure = re.compile(granted["configure"])
    assert configure.match("ns.storefront.partner.create")
    assert configure.match("ns.reseller.commands")
    assert not configure.match("ns.orders.order.place")
    assert not configure.match("ns.mailer.partner.notification")
    assert not configure.match("storefront.partner.create")  # outside its namespace
    assert re.compile(granted["write"]).match("amq.default")  # replies


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("partner.create", {"operations"}),
        ("partner.disable", {"operations"}),
        ("partner.invite", {"operations"}),
        ("partner.created", {"storefront"}),
        ("partner.notification", {"storefront"}),
    ],
)
def test_operations_create_partners_and_the_reseller_space_tells_of_them(
    key: str, allowed: set[str]
) -> None:
    assert allowed_publishers(REGISTRY[key]) == allowed


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_every_service_may_declare_bind_and_publish_the_retry_topology(role: str) -> None:
    """Retries (shared.runtime.topology): the headers exchange ``reseller.retry`` and its
    delay queues ``reseller.retry.<delay>``; nothing else of that name, nothing outside the
    namespace."""
    granted = {kind: re.compile(rx) for kind, rx in permissions(role, "ns.").items()}
    delay_queues = [f"ns.{RETRY_EXCHANGE}.{delay_label(d)}" for d in (0.2, 1, 5, 30, 120)]
    for name in ["ns." + RETRY_EXCHANGE, *delay_queues]:
        for kind in ("configure", "write", "read"):
            assert granted[kind].match(name), (kind, name)
    outside = (
        RETRY_EXCHANGE,
        f"{RETRY_EXCHANGE}.5s",
        "ns.reseller.retryx",
        "ns.reseller.retry.a.b",
    )
    for name in outside:
        assert not any(rx.match(name) for rx in granted.values()), name


def test_the_mailer_has_no_part_in_retries() -> None:
    granted = permissions("mailer", "")
    for name in (RETRY_EXCHANGE, f"{RETRY_EXCHANGE}.5s"):
        assert not any(re.compile(rx).match(name) for rx in granted.values()), name
