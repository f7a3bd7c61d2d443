"""The console's wiring: every event into its log, the CLI's queries, its pages.

It runs as the ``operations`` broker role (its queues are ``operations.<routing key>``)
and listens on CONSOLE_HOST (127.0.0.1 by default), never on the public listener."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from services.console import handlers, http
from services.console.domain import StuckRules
from services.console.store import ConsoleStore
from shared.contracts import REGISTRY, Event
from shared.contracts.operations import (
    CreateOperator,
    GetLineTimeline,
    GetReviewQueue,
    GetStuckLines,
)
from shared.runtime.messaging import Route
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings

ROLE = "operations"


def rules_of(settings: Settings) -> StuckRules:
    return StuckRules(
        awaiting_proof=timedelta(days=settings.stuck_awaiting_proof_days),
        review=timedelta(hours=settings.stuck_review_hours),
        unbound=timedelta(days=settings.stuck_unbound_days),
        upgrade=timedelta(hours=settings.stuck_upgrade_hours),
        orphan=timedelta(hours=settings.orphan_reservation_hours),
    )


def event_routes(deps: handlers.ConsoleDeps) -> list[Route]:
    """One route per event of the contract: the log misses none. Its entries are keyed by
    message id, so no inbox claim comes first (``record_event``)."""
    record = partial(handlers.record_event, deps=deps)
    return [
        Route(model, record, inbox=False)
        for _, model in sorted(REGISTRY.items())
        if issubclass(model, Event)
    ]


def wire(runtime: Runtime) -> Wiring:
    store = ConsoleStore(runtime.db)
    deps = handlers.ConsoleDeps(
        store=store, bus=runtime.bus, clock=runtime.clock, rules=rules_of(runtime.settings)
    )
    pages = http.Pages(deps, runtime)

    async def setup() -> None:
        await store.create_indexes()
        await pages.setup()

    return Wiring(
        routes=[
            *event_routes(deps),
            Route(GetReviewQueue, partial(handlers.get_review_queue, deps=deps)),
            Route(GetStuckLines, partial(handlers.get_stuck_lines, deps=deps)),
            Route(GetLineTimeline, partial(handlers.get_line_timeline, deps=deps)),
            Route(CreateOperator, partial(handlers.create_operator, deps=deps)),
        ],
        http=pages.router(),
        setup=setup,
        periodic={"web_purge": pages.purge},
    )
