"""The reseller space's wiring: its partner commands, its pages, its store and its jobs."""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial

from services.reseller_space import handlers, http, keys
from services.reseller_space.domain import LinkPolicy, Partner, unknown_partner
from services.reseller_space.store import ResellerSpaceStore
from shared.basics.catalogue import load_catalogue
from shared.contracts.partners import CreatePartner, DisablePartner, InvitePartner
from shared.runtime.messaging import Route
from shared.runtime.secrets import env_or_generated
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings
from shared.runtime.web import Passwords, SessionPolicy, SignInLimits

ROLE = "storefront"  # the broker identity of the reseller space (CONTRACT.md, Identities)
UPLOAD_SLACK = 1024 * 1024  # the form around the file, and a file a little too large to
# be refused with a page rather than cut by the body limit


def orders_api_url(settings: Settings) -> str:
    if settings.orders_api_url:
        return settings.orders_api_url
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    return f"http://{host}:{settings.orders_port}"


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    partners = runtime.store("partners", Partner, unknown=unknown_partner)
    store = ResellerSpaceStore(partners, runtime.db)
    deps = handlers.SpaceDeps(
        store=store,
        bus=runtime.bus,
        clock=runtime.clock,
        passwords=Passwords(),
        links=LinkPolicy(
            base_url=settings.reseller_space_url,
            invitation_valid=timedelta(hours=settings.invitation_valid_hours),
            reset_valid=timedelta(minutes=settings.password_reset_valid_minutes),
        ),
        sessions=SessionPolicy.of(settings),
        limits=SignInLimits.of(settings),
        catalogue=load_catalogue(settings.catalogue_path),
        proofs=handlers.ProofApi(
            url=orders_api_url(settings),
            # The orders API's internal token: the same setting, or the same generated file.
            token=env_or_generated(
                settings.reseller_api_token,
                settings.data_dir / "reseller-api-token",
                lambda: secrets.token_urlsafe(32),
            ),
            max_bytes=settings.proof_max_bytes,
        ),
    )
    kit = http.Kit(deps)
    pages = http.router(deps, kit)
    pages.include_router(keys.router(kit))
    return Wiring(
        routes=[
            Route(CreatePartner, partial(handlers.create_partner, deps=deps)),
            Route(DisablePartner, partial(handlers.disable_partner, deps=deps)),
            Route(InvitePartner, partial(handlers.invite_partner, deps=deps)),
        ],
        http=pages,
        large_bodies=[(http.PROOF_PATH, settings.proof_max_bytes + UPLOAD_SLACK)],
        setup=store.create_indexes,
        outboxes=[partners],
        periodic={"sessions_purge": partial(handlers.purge, deps=deps)},
    )
