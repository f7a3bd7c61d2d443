"""Operators sign in by the reseller space's rules (``shared.runtime.web``), on the real store:
guesses from many sources cannot lock an operator out, and a disabled operator is told
what a wrong password is told. The pages run exactly this (``services/console/http.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from argon2 import PasswordHasher

from services.console.domain import Operator, operator_closed
from services.console.store import ConsoleStore
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.runtime.attempts import AttemptCounters
from shared.runtime.store import connect
from shared.runtime.web import Passwords, SignInLimits, admit, attempt_sign_in

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)  # a window boundary: counts start afresh
EMAIL = "alice@ops.example"
PASSWORD = "correct horse battery staple"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
LIMITS = SignInLimits(window=timedelta(minutes=15), per_source=5, per_account=3)


@pytest.fixture
async def console(mongo_url: str) -> AsyncIterator[tuple[ConsoleStore, AttemptCounters]]:
    client = connect(mongo_url)
    db = client[f"t{uuid4().hex[:10]}_console"]
    store = ConsoleStore(db)
    await store.add_operator(
        Operator(id=EMAIL, name="Alice", password_hash=await FAST.hash(PASSWORD), created_at=NOW)
    )
    yield store, AttemptCounters(db["sign_in_attempts"])
    await client.drop_database(db.name)
    await client.close()


async def sign_in(
    console: tuple[ConsoleStore, AttemptCounters], password: str, source: str
) -> Operator:
    store, counters = console
    attempt = await attempt_sign_in(
        email=EMAIL.upper(),
        password=password,
        source=source,
        find=store.operator,
        password_hash=lambda operator: operator.password_hash,
        counters=counters,
        limits=LIMITS,
        passwords=FAST,
        now=NOW,
    )
    return admit(attempt, closed=operator_closed)


async def test_guesses_from_many_sources_cannot_lock_an_operator_out(
    console: tuple[ConsoleStore, AttemptCounters],
) -> None:
    for n in range(3):  # the account's limit, each from its own source
        with pytest.raises(Refused) as wrong:
            await sign_in(console, f"guess {n}", f"198.51.100.{n}")
        assert wrong.value.code == ErrorCode.INVALID_CREDENTIALS
    with pytest.raises(RateLimited) as limited:
        await sign_in(console, "guess", "198.51.100.9")
    assert limited.value.retry_after == 900
    operator = await sign_in(console, PASSWORD, "203.0.113.7")
    assert operator.email == EMAIL


async def test_a_disabled_operator_is_told_what_a_wrong_password_is_told(
    console: tuple[ConsoleStore, AttemptCounters],
) -> None:
    store, _ = console
    await store.operators.update_one({"_id": EMAIL}, {"$set": {"disabled": True}})
    with pytest.raises(Refused) as refused:
        await sign_in(console, PASSWORD, "192.0.2.1")
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.INVALID_CREDENTIALS,
        "wrong email or password",
    )
