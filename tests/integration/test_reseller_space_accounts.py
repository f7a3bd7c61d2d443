"""Partner accounts of the reseller space on the real store (embedded MongoDB wire server):
``partner.create``, the invitation link used once, sign-in limits that an attacker cannot
turn against the real reseller, sessions ended by ``partner.disable`` (issue 10).

The handlers run as the service runs them, on the store, with the test's clock; the
broker is not involved (the browser tests drive the same through the pages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from argon2 import PasswordHasher

from services.reseller_space import handlers
from services.reseller_space.domain import LinkPolicy, Partner, unknown_partner
from services.reseller_space.handlers import ProofApi, SpaceDeps
from services.reseller_space.store import ResellerSpaceStore
from shared.basics.catalogue import load_catalogue
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.contracts.partners import (
    CreatePartner,
    DisablePartner,
    InvitePartner,
    PartnerNotification,
)
from shared.runtime.messaging import Delivery
from shared.runtime.store import DocumentStore, connect
from shared.runtime.web import Passwords, SessionPolicy, SignInLimits
from tests.support.clock import FixedClock
from tests.support.fakes import FakeBus

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)  # a window boundary: counts start afresh
EMAIL = "sales@acme.example"
PASSWORD = "correct horse battery staple"
FAST = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)  # argon2id, cheap


@pytest.fixture
async def deps(mongo_url: str) -> AsyncIterator[SpaceDeps]:
    client = connect(mongo_url)
    db = client[f"t{uuid4().hex[:10]}_reseller_space"]
    partners = DocumentStore(db["partners"], Partner, unknown=unknown_partner)
    store = ResellerSpaceStore(partners, db)
    await store.create_indexes()
    yield SpaceDeps(
        store=store,
        bus=FakeBus(),
        clock=FixedClock(NOW),
        passwords=Passwords(FAST),
        links=LinkPolicy(base_url="http://space.test"),
        sessions=SessionPolicy(),
        limits=SignInLimits(window=timedelta(minutes=15), per_source=5, per_account=3),
        catalogue=load_catalogue(),
        proofs=ProofApi(url="http://orders.test", token="t", max_bytes=1024),
    )
    await client.drop_database(db.name)
    await client.close()


def delivery() -> Delivery:
    return Delivery(message_id=str(uuid4()), correlation_id=None, routing_key="partner.create")


async def invited(deps: SpaceDeps, reseller_id: str = "r-1", email: str = EMAIL) -> str:
    """Create the partner; the secret of its invitation link."""
    command = CreatePartner(reseller_id=reseller_id, company="ACME", contact_email=email)
    await handlers.create_partner(command, delivery(), deps=deps)
    partner = await deps.store.partners.load(reseller_id)
    [notification] = [e for e in partner.recorded() if isinstance(e, PartnerNotification)]
    return notification.link.rsplit("/", 1)[-1]


async def active(deps: SpaceDeps) -> None:
    secret = await invited(deps)
    await handlers.set_password(secret=secret, password=PASSWORD, confirm=PASSWORD, deps=deps)


async def test_the_invitation_sets_the_password_once_and_then_sign_in_works(
    deps: SpaceDeps,
) -> None:
    secret = await invited(deps)
    partner = await handlers.set_password(
        secret=secret, password=PASSWORD, confirm=PASSWORD, deps=deps
    )
    assert partner.status == "active"
    assert partner.password_hash is not None and partner.password_hash.startswith("$argon2id$")
    with pytest.raises(Refused) as again:
        await handlers.set_password(secret=secret, password=PASSWORD, confirm=PASSWORD, deps=deps)
    assert again.value.code == ErrorCode.INVALID_LINK
    session_id, session = await handlers.sign_in(
        email=" Sales@ACME.example ", password=PASSWORD, source="192.0.2.1", deps=deps
    )
    assert session.reseller_id == "r-1"
    assert await handlers.session_of(session_id, deps=deps) is not None


async def test_an_email_belongs_to_one_partner_and_a_reseller_id_to_one_account(
    deps: SpaceDeps,
) -> None:
    await invited(deps)
    other = CreatePartner(reseller_id="r-2", company="Other", contact_email=EMAIL.upper())
    with pytest.raises(Refused) as taken:
        await handlers.create_partner(other, delivery(), deps=deps)
    assert taken.value.code == ErrorCode.EMAIL_IN_USE
    changed = CreatePartner(reseller_id="r-1", company="ACME", contact_email="x@acme.example")
    with pytest.raises(Refused) as exists:
        await handlers.create_partner(changed, delivery(), deps=deps)
    assert exists.value.code == ErrorCode.PARTNER_EXISTS


async def test_guesses_from_many_sources_cannot_lock_the_real_reseller_out(
    deps: SpaceDeps,
) -> None:
    await active(deps)
    for n in range(3):  # the account's limit, each from its own source
        with pytest.raises(Refused) as wrong:
            await handlers.sign_in(
                email=EMAIL, password=f"guess {n}", source=f"198.51.100.{n}", deps=deps
            )
        assert wrong.value.code == ErrorCode.INVALID_CREDENTIALS
    with pytest.raises(RateLimited) as limited:
        await handlers.sign_in(email=EMAIL, password="guess", source="198.51.100.9", deps=deps)
    assert limited.value.retry_after == 900
    # The reseller, from its own source, with its password: in.
    _, session = await handlers.sign_in(
        email=EMAIL, password=PASSWORD, source="203.0.113.7", deps=deps
    )
    assert session.reseller_id == "r-1"


async def test_a_source_past_its_limit_is_refused_and_counts_for_no_account(
    deps: SpaceDeps,
) -> None:
    await active(deps)
    for n in range(5):  # the source's limit, on emails that are nobody's
        with pytest.raises(Refused):
            await handlers.sign_in(
                email=f"x{n}@nobody.example", password="x", source="2001:db8::1", deps=deps
            )
    with pytest.raises(RateLimited):  # the same /64: the same source, even right
        await handlers.sign_in(email=EMAIL, password=PASSWORD, source="2001:db8::2", deps=deps)
    # None of that counted for the account: three wrong tries are still allowed.
    for n in range(3):
        with pytest.raises(Refused) as wrong:
            await handlers.sign_in(email=EMAIL, password="no", source=f"192.0.2.{n}", deps=deps)
        assert wrong.value.code == ErrorCode.INVALID_CREDENTIALS
    deps.clock.advance(timedelta(minutes=15))  # type: ignore[attr-defined]
    await handlers.sign_in(email=EMAIL, password=PASSWORD, source="2001:db8::3", deps=deps)


async def test_disabling_a_partner_ends_its_sessions_and_its_sign_in(deps: SpaceDeps) -> None:
    await active(deps)
    session_id, _ = await handlers.sign_in(
        email=EMAIL, password=PASSWORD, source="192.0.2.1", deps=deps
    )
    command = DisablePartner(reseller_id="r-1", reason="contract ended")
    view = await handlers.disable_partner(command, delivery(), deps=deps)
    assert view.status == "disabled"
    assert await handlers.session_of(session_id, deps=deps) is None
    with pytest.raises(Refused) as refused:
        await handlers.sign_in(email=EMAIL, password=PASSWORD, source="192.0.2.1", deps=deps)
    assert refused.value.code == ErrorCode.PARTNER_DISABLED


async def test_a_reset_link_goes_only_to_an_existing_account_and_replaces_the_password(
    deps: SpaceDeps,
) -> None:
    await active(deps)
    await handlers.request_password_reset(
        email="stranger@nowhere.example", source="192.0.2.1", deps=deps
    )
    await handlers.request_password_reset(email=EMAIL, source="192.0.2.1", deps=deps)
    partner = await deps.store.partners.load("r-1")
    resets = [
        e
        for e in partner.recorded()
        if isinstance(e, PartnerNotification) and e.kind == "password_reset"
    ]
    assert [e.email for e in resets] == [EMAIL]
    secret = resets[0].link.rsplit("/", 1)[-1]
    new = "another long passphrase here"
    await handlers.set_password(secret=secret, password=new, confirm=new, deps=deps)
    with pytest.raises(Refused):
        await handlers.sign_in(email=EMAIL, password=PASSWORD, source="192.0.2.1", deps=deps)
    await handlers.sign_in(email=EMAIL, password=new, source="192.0.2.1", deps=deps)


async def test_an_idle_session_ends(deps: SpaceDeps) -> None:
    await active(deps)
    session_id, _ = await handlers.sign_in(
        email=EMAIL, password=PASSWORD, source="192.0.2.1", deps=deps
    )
    deps.clock.advance(timedelta(minutes=59))  # type: ignore[attr-defined]
    assert await handlers.session_of(session_id, deps=deps) is not None  # and moved on
    deps.clock.advance(timedelta(minutes=59))  # type: ignore[attr-defined]
    assert await handlers.session_of(session_id, deps=deps) is not None
    deps.clock.advance(timedelta(minutes=61))  # type: ignore[attr-defined]
    assert await handlers.session_of(session_id, deps=deps) is None


async def test_partner_invite_sends_a_fresh_link_and_the_old_one_dies(deps: SpaceDeps) -> None:
    """``partner.invite`` (operations): while the password is not set, a new invitation
    link replaces the old one; once it is set, the partner is told to use a reset."""
    first = await invited(deps)
    await handlers.invite_partner(InvitePartner(reseller_id="r-1"), delivery(), deps=deps)
    partner = await deps.store.partners.load("r-1")
    links = [e.link for e in partner.recorded() if isinstance(e, PartnerNotification)]
    assert len(links) == 2 and links[0] != links[1]
    with pytest.raises(Refused) as stale:
        await handlers.set_password(secret=first, password=PASSWORD, confirm=PASSWORD, deps=deps)
    assert stale.value.code == ErrorCode.INVALID_LINK
    fresh = links[1].rsplit("/", 1)[-1]
    await handlers.set_password(secret=fresh, password=PASSWORD, confirm=PASSWORD, deps=deps)
    with pytest.raises(Refused) as active_already:
        await handlers.invite_partner(InvitePartner(reseller_id="r-1"), delivery(), deps=deps)
    assert active_already.value.code == ErrorCode.PARTNER_EXISTS
    with pytest.raises(Refused) as nobody:
        await handlers.invite_partner(InvitePartner(reseller_id="r-none"), delivery(), deps=deps)
    assert nobody.value.code == ErrorCode.UNKNOWN_PARTNER
