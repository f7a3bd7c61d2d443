"""Licensing's wiring: plan events, operations commands and queries, the appliance HTTP
routes (``http.py``), and the periodic jobs (expiry checks, purge of attempt counters)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from services.licensing import handlers, http
from services.licensing.domain.customer import Customer, unknown_customer
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import RegistrationLimits
from services.licensing.licence_cache import LicenceCache
from services.licensing.signing import LicenceSigner, generate_private_key_b64
from services.licensing.store import LicensingStore
from shared.basics.catalogue import load_catalogue
from shared.contracts.licensing import (
    GetLicenseStatus,
    ReinstateLicense,
    ReissueRegistrationToken,
    SuspendLicense,
)
from shared.contracts.orders import PlanBound, PlanSuperseded, PlanUpgraded
from shared.runtime.messaging import Route
from shared.runtime.secrets import env_or_generated
from shared.runtime.service import Runtime, Wiring
from shared.runtime.settings import Settings


def policy_of(settings: Settings) -> Policy:
    return Policy(
        catalogue=load_catalogue(settings.catalogue_path),
        grace=timedelta(days=settings.license_grace_days),
        warning_days=tuple(sorted(set(settings.license_expiry_warning_days), reverse=True)),
        moves_per_window=settings.license_moves_per_30_days,
        offline_validity=timedelta(days=settings.license_offline_days),
    )


def wire(runtime: Runtime) -> Wiring:
    settings = runtime.settings
    private_key = env_or_generated(
        settings.license_signing_key,
        settings.data_dir / "license-signing-key",
        generate_private_key_b64,
    )
    customers = runtime.store("customers", Customer, unknown=unknown_customer)
    licences = LicenceCache(
        ttl=settings.license_cache_seconds, max_entries=settings.license_cache_entries
    )
    licences.follow(customers)
    store = LicensingStore(customers, runtime.db)
    deps = handlers.LicensingDeps(
        store=store,
        signer=LicenceSigner.from_base64(private_key, settings.license_previous_public_keys),
        policy=policy_of(settings),
        clock=runtime.clock,
        limits=RegistrationLimits(
            window=timedelta(seconds=settings.registration_window_seconds),
            per_source=settings.registration_attempts_per_source,
            per_email=settings.registration_attempts_per_email,
        ),
        licences=licences,
    )

    return Wiring(
        routes=[
            # Plan events change one customer, which keeps their ids and digests: no inbox.
            Route(PlanBound, partial(handlers.on_plan_bound, deps=deps), inbox=False),
            Route(PlanUpgraded, partial(handlers.on_plan_upgraded, deps=deps), inbox=False),
            Route(PlanSuperseded, partial(handlers.on_plan_superseded, deps=deps), inbox=False),
            Route(SuspendLicense, partial(handlers.suspend_licence, deps=deps)),
            Route(ReinstateLicense, partial(handlers.reinstate_licence, deps=deps)),
            Route(
                ReissueRegistrationToken, partial(handlers.reissue_registration_token, deps=deps)
            ),
            Route(GetLicenseStatus, partial(handlers.licence_status, deps=deps)),
        ],
        http=http.router(deps),
        setup=store.create_indexes,
        outboxes=[customers],
        # One pass each, every JOB_INTERVAL_SECONDS; tests call a pass with their clock.
        periodic={
            "licence_checks": partial(handlers.check_licences, deps=deps),
            "attempt_counters_purge": partial(handlers.purge_attempts, deps=deps),
        },
    )
