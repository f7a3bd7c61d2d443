"""Orders' wiring: its messages, its HTTP routes, its store and its periodic job."""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial

from services.orders import handlers, http, proof_files
from services.orders.api_keys import ApiKey, unknown_api_key
from services.orders.domain import OrderLine, unknown_order
from services.orders.store import OrderStore
from shared.basics.catalogue import load_catalogue
from shared.contracts.api_keys import CreateApiKey, ListApiKeys, RevokeApiKey
from shared.contracts.operations import GetProof
from shared.contracts.orders import (
    BindPlan,
    CancelOrder,
    GetOrder,
    ListOrders,
    PlaceOrder,
    PlanUpgraded,
    ReviewProof,
    UpgradePlan,
)
from shared.runtime.messaging import Route
from shared.runtime.secrets import env_or_generated
from shared.runtime.service import Runtime, Wiring


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    lines = runtime.store("order_lines", OrderLine, unknown=unknown_order)
    keys = runtime.store("api_keys", ApiKey, unknown=unknown_api_key)
    store = OrderStore(lines, keys, runtime.db, runtime.inbox.collection)
    deps = handlers.OrdersDeps(
        store=store,
        bus=runtime.bus,
        clock=runtime.clock,
        catalogue=load_catalogue(settings.catalogue_path),
        proof_max_bytes=settings.proof_max_bytes,
        unpaid_ttl=timedelta(hours=settings.unpaid_order_ttl_hours),
        api_token=env_or_generated(
            settings.reseller_api_token,
            settings.data_dir / "reseller-api-token",
            lambda: secrets.token_urlsafe(32),
        ),
    )

    async def line_of(cmd: CancelOrder | ReviewProof | BindPlan) -> None:
        await lines.read_ahead(cmd.order_id)

    return Wiring(
        routes=[
            Route(PlaceOrder, partial(handlers.place_order, deps=deps)),
            Route(CancelOrder, partial(handlers.cancel_order, deps=deps), read_ahead=line_of),
            Route(ReviewProof, partial(handlers.review_proof, deps=deps), read_ahead=line_of),
            Route(BindPlan, partial(handlers.bind_plan, deps=deps), read_ahead=line_of),
            Route(UpgradePlan, partial(handlers.upgrade_plan, deps=deps)),
            # Changes one line, which keeps the event's id and digest: no inbox claim.
            Route(PlanUpgraded, partial(handlers.on_plan_upgraded, deps=deps), inbox=False),
            Route(GetOrder, partial(handlers.get_order, deps=deps)),
            Route(ListOrders, partial(handlers.list_orders, deps=deps)),
            Route(CreateApiKey, partial(handlers.create_api_key, deps=deps)),
            Route(RevokeApiKey, partial(handlers.revoke_api_key, deps=deps)),
            Route(ListApiKeys, partial(handlers.list_api_keys, deps=deps)),
            Route(GetProof, partial(proof_files.get_proof, deps=deps)),
        ],
        http=http.router(deps),
        # The proof upload takes a file: its body may reach the proof limit plus the
        # multipart framing; every other request keeps the few-KB JSON limit.
        large_bodies=[(http.PROOF_PATH, settings.proof_max_bytes + http.MULTIPART_OVERHEAD)],
        setup=store.create_indexes,
        outboxes=[lines, keys],
        periodic={
            "unpaid_expiry": partial(handlers.expire_unpaid_lines, deps=deps),
            "shown_keys": partial(handlers.forget_shown_keys, deps=deps),
        },
    )
