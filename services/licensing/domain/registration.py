"""Registration (L2, L5): tokens, appliance secrets, and where a new appliance goes. No I/O.

- Registration tokens and appliance secrets are kept only as SHA-256 digests and compared
  in constant time; an unknown email costs the same work as a wrong token, and all three
  get the one refusal ``invalid_registration`` (L2: no enumeration).
- Past the email's attempt limit (``rate_limits``), the right token still registers and
  anything else gets ``too_many_attempts`` (``admit``): guesses from many sources cannot
  lock the customer out, and an unknown email is answered like a wrong token.
- One appliance per active plan (L5): a new appliance takes a plan no appliance uses, or,
  with ``move``, the place of the appliance on the highest active plan, within the moves
  allowed per 30 days.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel

from services.licensing.domain.appliances import (
    MOVE_WINDOW,
    Appliance,
    Move,
    by_seniority,
    recent_moves,
)
from services.licensing.domain.entitlement import allocation
from services.licensing.domain.plans import PlanEntitlement
from services.licensing.domain.policy import Policy
from services.licensing.domain.rate_limits import too_many_attempts
from shared.basics.errors import ErrorCode, RateLimited, Refused

TOKENS_KEPT = 5
# Compared against when the email is unknown, so that an unknown email costs the same
# work as a wrong token (L2: no enumeration).
DUMMY_HASH = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # nobody knows a preimage


def invalid_registration() -> Refused:
    """The one answer to a wrong email, a wrong token or an unknown email (L2)."""
    return Refused(
        ErrorCode.INVALID_REGISTRATION, "the email or the registration token is not valid"
    )


def digest(secret: str) -> str:
    """Tokens and appliance secrets are stored only as SHA-256 digests."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- L2: registration tokens ------------------------------------------------------------


class RegistrationToken(BaseModel):
    token_hash: str
    issued_at: AwareDatetime


def with_token(
    tokens: Sequence[RegistrationToken], token: str, now: datetime
) -> list[RegistrationToken]:
    """The kept tokens once ``token`` is issued: the last ``TOKENS_KEPT``, as digests."""
    issued = RegistrationToken(token_hash=digest(token), issued_at=now)
    return [*tokens, issued][-TOKENS_KEPT:]


def token_matches(tokens: Sequence[RegistrationToken], token: str) -> bool:
    """Constant time and constant work: every kept token is compared (no early return),
    and the comparisons are padded with ``DUMMY_HASH`` (never a match) up to
    ``TOKENS_KEPT``, so one token, five, or none (an unknown email) cost the same."""
    given = digest(token)
    expected = [kept.token_hash for kept in tokens]
    expected += [DUMMY_HASH] * (TOKENS_KEPT - len(expected))
    found = False
    for kept_hash in expected:
        found |= hmac.compare_digest(given, kept_hash)
    return found


def admit(*, token_valid: bool, email_wait: int | None) -> None:
    """L2, once the attempt's source is under its own limit and the attempt was counted
    for the email (``email_wait``: ``None`` under the email's limit, else the seconds to
    wait). The right token registers even past the email's limit: that limit only stops
    guessing, so guesses from rotated sources cannot lock the real customer out. A wrong
    token, or any token for an unknown email, gets ``too_many_attempts`` past the limit
    and ``invalid_registration`` under it: the same answers for a customer's email and
    for an email that is nobody's, decided on counts that never depend on the token.
    """
    if token_valid:
        return
    if email_wait is not None:
        raise too_many_attempts(email_wait)
    raise invalid_registration()


# --- appliance secrets ------------------------------------------------------------------


def appliance_secret(customer_key: str, random_part: str) -> str:
    """An appliance secret: the customer's key, then the random part (the credential).
    The key lets a licence check find the customer in one indexed read, without the email."""
    return f"{customer_key}.{random_part}"


def customer_key_of(secret: str) -> str | None:
    """The customer key an appliance secret starts with (``<key>.<random>``), or None for
    a string that is no appliance secret. Bounded: a key is 32 hex characters."""
    key, dot, _ = secret.partition(".")
    return key[:64] if dot and key else None


def secret_matches(appliance: Appliance | None, secret: str) -> bool:
    """Constant time, and the same work for an unknown appliance."""
    expected = appliance.secret_hash if appliance else DUMMY_HASH
    return hmac.compare_digest(digest(secret), expected) and appliance is not None


# --- L5: one appliance per active plan ------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    """Where a new appliance goes: the seniority it takes and, for a move, the appliance
    it frees (one of the customer's own, to be marked ``moved``) with the plan it ran on."""

    seniority: int
    released: Appliance | None = None
    plan: PlanEntitlement | None = None


def seat_for(
    *,
    plans: Sequence[PlanEntitlement],
    appliances: Sequence[Appliance],
    moves: Sequence[Move],
    move: bool,
    now: datetime,
    policy: Policy,
) -> Seat:
    """A new appliance is accepted while there are fewer active appliances than active
    plans; otherwise ``move`` releases the appliance on the highest active plan and takes
    its place (and its seniority), within the moves allowed per 30 days."""
    active_plans = [p for p in plans if p.active_at(now)]
    if not active_plans:
        raise Refused(ErrorCode.NO_ACTIVE_PLAN, "no active plan to register an appliance with")
    seated = by_seniority(appliances)
    if len(seated) < len(active_plans):
        return Seat(seniority=max((a.seniority for a in appliances), default=0) + 1)
    if not move:
        raise Refused(
            ErrorCode.PLAN_IN_USE,
            "every active plan is used by another appliance; send move=true to move it here",
        )
    check_move_allowed(moves, now, policy)
    current = allocation(plans, appliances, now, policy)
    released = next(
        a for a in seated if (on := current.get(a.appliance_id)) is not None and on.active_at(now)
    )
    return Seat(released.seniority, released=released, plan=current[released.appliance_id])


def check_move_allowed(moves: Sequence[Move], now: datetime, policy: Policy) -> None:
    """Refuse a move past the moves allowed per 30 days (L5), with the time to wait: until
    the move that must leave the window has left it."""
    recent = recent_moves(moves, now)
    if len(recent) < policy.moves_per_window:
        return
    wait = MOVE_WINDOW
    if policy.moves_per_window > 0:
        wait = recent[len(recent) - policy.moves_per_window].at + MOVE_WINDOW - now
    raise RateLimited(
        ErrorCode.MOVE_LIMIT_REACHED,
        f"{policy.moves_per_window} licence moves are allowed per 30 days; "
        f"the next one is possible after {(now + wait).isoformat()}",
        retry_after=math.ceil(wait.total_seconds()),
    )
