"""The reseller space's handlers: partner commands from operations, sign-in, links, sessions,
and the calls the pages make to the domain services (public contract only).

Every command the pages send names the reseller of the session: the ``reseller_id`` a
handler here is given comes from ``Session``, never from a form.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from uuid import uuid4

import httpx
from pydantic import BaseModel, ValidationError

from services.reseller_space.domain import (
    LinkPolicy,
    Partner,
    Session,
    admit_sign_in,
    check_password_rules,
    invalid_link,
    session_fields,
    unknown_partner,
)
from services.reseller_space.store import ResellerSpaceStore
from services.reseller_space.views import size
from shared.basics.attempts import source_key
from shared.basics.catalogue import Catalogue
from shared.basics.clock import Clock
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.base import Command
from shared.contracts.orders import ProofView
from shared.contracts.partners import CreatePartner, DisablePartner, InvitePartner, PartnerView
from shared.runtime.logging import get_logger
from shared.runtime.messaging import Bus, Delivery, UpstreamUnavailable
from shared.runtime.web import (
    Passwords,
    SessionPolicy,
    SignInLimits,
    attempt_sign_in,
    new_token,
    sign_in_name,
    too_many_attempts,
)

log = get_logger(__name__)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ProofApi:
    """The orders HTTP API the proofs are uploaded to, with the internal token; the
    reseller is the session's (``X-Reseller-Id``)."""

    url: str
    token: str
    max_bytes: int


@dataclass(frozen=True)
class SpaceDeps:
    store: ResellerSpaceStore
    bus: Bus
    clock: Clock
    passwords: Passwords
    links: LinkPolicy
    sessions: SessionPolicy
    limits: SignInLimits
    catalogue: Catalogue
    proofs: ProofApi


# --- partner commands (operations) ----------------------------------------------------------


async def create_partner(cmd: CreatePartner, delivery: Delivery, *, deps: SpaceDeps) -> PartnerView:
    """``partner.create``: the account, invited by a link sent through the mailer. The same
    account created again while still invited gets a fresh invitation (the old link dies)."""
    email = normalise_email(cmd.contact_email)
    now = deps.clock.now()
    partner = Partner.create(cmd.reseller_id, company=cmd.company, email=email, now=now)
    partner.issue_link("invitation", secret=new_token(), policy=deps.links, now=now)
    partner.mark_applied(delivery.message_id)
    if await deps.store.add_partner(partner):
        log.info("partner_created", reseller_id=cmd.reseller_id)
        return partner.view()

    def invite_again(existing: Partner) -> None:
        if not existing.same_account(company=cmd.company, email=email):
            raise Refused(
                ErrorCode.PARTNER_EXISTS,
                f"partner {cmd.reseller_id} exists with other details "
                f"({existing.company}, {existing.contact_email})",
            )
        invite(existing, deps, now)

    saved = await deps.store.partners.mutate(
        cmd.reseller_id, invite_again, message_id=delivery.message_id
    )
    return saved.aggregate.view()


def invite(partner: Partner, deps: SpaceDeps, now: datetime) -> None:
    """A fresh invitation link, only while the partner has not set its password."""
    if partner.status != "invited":
        raise Refused(
            ErrorCode.PARTNER_EXISTS,
            f"partner {partner.id} is {partner.status}: its password is set; "
            "it can ask for a password reset",
        )
    partner.issue_link("invitation", secret=new_token(), policy=deps.links, now=now)


async def invite_partner(cmd: InvitePartner, delivery: Delivery, *, deps: SpaceDeps) -> PartnerView:
    """``partner.invite``: the invitation sent again (the previous link dies)."""
    now = deps.clock.now()
    saved = await deps.store.partners.mutate(
        cmd.reseller_id, lambda p: invite(p, deps, now), message_id=delivery.message_id
    )
    log.info("partner_invited_again", reseller_id=cmd.reseller_id)
    return saved.aggregate.view()


async def disable_partner(
    cmd: DisablePartner, delivery: Delivery, *, deps: SpaceDeps
) -> PartnerView:
    """``partner.disable``: no more sign-in, and every open session ends now."""
    now = deps.clock.now()
    saved = await deps.store.partners.mutate(
        cmd.reseller_id, lambda p: p.disable(cmd.reason, now), message_id=delivery.message_id
    )
    ended = await deps.store.sessions.end_all_of(cmd.reseller_id)
    log.info("partner_disabled", reseller_id=cmd.reseller_id, sessions_ended=ended)
    return saved.aggregate.view()


# --- sign-in, links, sessions ---------------------------------------------------------------


async def _count(key: str, limit: int, *, deps: SpaceDeps, now: datetime) -> int | None:
    return await deps.store.attempts.wait(key, limit=limit, now=now, window=deps.limits.window)


async def sign_in(
    *, email: str, password: str, source: str, deps: SpaceDeps
) -> tuple[str, Session]:
    """Email and password to a new session (its id for the cookie, and the session), by the
    web faces' rules (``shared.runtime.web.attempt_sign_in``): counted for the source, then
    for the account; past the account's limit only the right password signs in."""
    now = deps.clock.now()
    attempt = await attempt_sign_in(
        email=email,
        password=password,
        source=source,
        find=deps.store.partner_by_email,
        password_hash=lambda partner: partner.password_hash,
        counters=deps.store.attempts,
        limits=deps.limits,
        passwords=deps.passwords,
        now=now,
    )
    partner = admit_sign_in(
        password_ok=attempt.password_ok, account_wait=attempt.account_wait, partner=attempt.account
    )
    session_id, session = await deps.store.sessions.open(
        now=now, policy=deps.sessions, **session_fields(partner)
    )
    log.info("signed_in", reseller_id=partner.id)
    return session_id, session


async def session_of(session_id: str | None, *, deps: SpaceDeps) -> Session | None:
    """The live session a cookie names, its idle deadline moved on; None otherwise."""
    return await deps.store.sessions.live(session_id, now=deps.clock.now(), policy=deps.sessions)


async def sign_out(session_id: str, *, deps: SpaceDeps) -> None:
    await deps.store.sessions.end(session_id)


async def switch_space(session: Session, space: str, *, deps: SpaceDeps) -> None:
    if space not in ("reseller", "personal"):
        raise Refused(ErrorCode.INVALID_REQUEST, "a space is reseller or personal")
    await deps.store.sessions.update(session, space=space)


async def request_password_reset(*, email: str, source: str, deps: SpaceDeps) -> None:
    """A reset link to the account's email, if there is such an active or invited account.
    The answer is the same either way; requests are limited per source and per email."""
    now = deps.clock.now()
    account = sign_in_name(email)
    waits = await asyncio.gather(
        _count(f"reset-source:{source_key(source)}", deps.limits.per_source, deps=deps, now=now),
        _count(f"reset:{account}", deps.limits.per_account, deps=deps, now=now),
    )
    refused = [w for w in waits if w is not None]
    if refused:
        raise too_many_attempts(max(refused))
    partner = await deps.store.partner_by_email(account)
    if partner is None or partner.status == "disabled":
        log.info("password_reset_unknown_email")
        return
    await deps.store.partners.mutate(
        partner.id,
        lambda p: p.issue_link("password_reset", secret=new_token(), policy=deps.links, now=now),
        message_id=None,
    )
    log.info("password_reset_sent", reseller_id=partner.id)


async def partner_for_link(secret: str, *, deps: SpaceDeps) -> Partner:
    """The account a live link belongs to, or ``invalid_link``."""
    partner = await deps.store.partner_by_link(secret) if len(secret) <= 128 else None
    if partner is None or not partner.link_usable(secret, deps.clock.now()):
        raise invalid_link()
    return partner


async def set_password(*, secret: str, password: str, confirm: str, deps: SpaceDeps) -> Partner:
    """Use a link once: the password is set, the account active, every session ended."""
    partner = await partner_for_link(secret, deps=deps)
    if password != confirm:
        raise Refused(ErrorCode.WEAK_PASSWORD, "the two passwords differ")
    check_password_rules(password, email=partner.contact_email)
    password_hash = await deps.passwords.hash(password)
    now = deps.clock.now()
    saved = await deps.store.partners.mutate(
        partner.id,
        lambda p: p.set_password(secret, password_hash=password_hash, now=now),
        message_id=None,
    )
    await deps.store.sessions.end_all_of(partner.id)
    log.info("password_set", reseller_id=partner.id)
    return saved.aggregate


async def partner_of(session: Session, *, deps: SpaceDeps) -> Partner:
    partner = await deps.store.partners.get(session.reseller_id)
    if partner is None:
        raise unknown_partner(session.reseller_id)
    return partner


async def purge(now: datetime, *, deps: SpaceDeps) -> int:
    """Sessions past their end and attempt counters no window reads any more."""
    ended = await deps.store.sessions.purge(now)
    return ended + await deps.store.attempts.purge(now)


# --- the domain services, through the public contract ---------------------------------------


async def ask(
    command: Command, result: type[R], *, deps: SpaceDeps, message_id: str | None = None
) -> R:
    """Request/reply to the owning service. Its refusal is raised as ``Refused``; no answer
    in time as ``upstream_unavailable``. ``message_id`` is the form's own id, so a form sent
    twice (a double click, a resend after a timeout) acts once."""
    try:
        return await deps.bus.call(
            command, result, message_id=message_id or str(uuid4()), correlation_id=None
        )
    except UpstreamUnavailable as exc:
        raise Refused(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "the service did not answer in time; nothing was lost, try again in a moment",
        ) from exc


async def upload_proof(
    *,
    order_id: str,
    reseller_id: str,
    filename: str,
    content: bytes,
    content_type: str,
    deps: SpaceDeps,
) -> ProofView:
    """Forward the proof to the orders HTTP API for the session's reseller (O3)."""
    if len(content) > deps.proofs.max_bytes:
        raise Refused(
            ErrorCode.PROOF_TOO_LARGE,
            f"the file is larger than the limit of {size(deps.proofs.max_bytes)}",
        )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{deps.proofs.url.rstrip('/')}/v1/orders/{order_id}/proofs",
                headers={
                    "Authorization": f"Bearer {deps.proofs.token}",
                    "X-Reseller-Id": reseller_id,
                },
                files={"file": (filename, content, content_type or "application/octet-stream")},
            )
    except httpx.HTTPError as exc:
        log.warning("proof_upload_failed", error=type(exc).__name__)
        raise Refused(
            ErrorCode.UPSTREAM_UNAVAILABLE, "the upload could not reach the orders service; retry"
        ) from exc
    if response.status_code == 201:
        return ProofView.model_validate_json(response.content)
    try:
        error = response.json()["error"]
        code, message = ErrorCode(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError, ValidationError):
        code, message = ErrorCode.UPSTREAM_UNAVAILABLE, "the orders service could not take it"
    raise Refused(code, message)
