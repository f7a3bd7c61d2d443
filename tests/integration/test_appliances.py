"""The appliance HTTP API of the licensing service (L2-L5), on the real broker and store."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.licensing.app import wire as wire_licensing
from shared.runtime.service import Runtime, http_app
from shared.runtime.settings import Settings
from testkit.broker import BrokerSession
from tests.support.flows import bound_order
from tests.support.licensing import (
    ApplianceClient,
    b64url_decode,
    bind,
    events,
    verify_offline,
)
from tests.support.system import System, make_settings

pytestmark = pytest.mark.integration

PER_EMAIL, PER_SOURCE = 4, 8


@pytest.fixture
def settings(broker: BrokerSession, mongo_url: str, tmp_path: Path) -> Settings:
    """Small limits, so that a test reaches them in a few requests."""
    return make_settings(
        broker=broker,
        mongo_url=mongo_url,
        data_dir=tmp_path / "data",
        registration_attempts_per_email=PER_EMAIL,
        registration_attempts_per_source=PER_SOURCE,
        license_moves_per_30_days=1,
        job_interval_seconds=3600,
    )


async def _token(system: System, email: str, edition: str = "enterprise") -> str:
    order_id = await bound_order(system, "r-1", email, edition=edition, billing="annual")
    event = await system.client.wait_event(
        "customer.notification", lambda b: b["order_id"] == order_id
    )
    token: str = event["registration_token"]
    return token


async def test_l2_wrong_email_wrong_token_and_unknown_email_look_the_same(system: System) -> None:
    token = await _token(system, "known@example.com")
    attempts = [
        {"email": "known@example.com", "registration_token": "wrong-token"},
        {"email": "other@example.com", "registration_token": token},
        {"email": "nobody@example.com", "registration_token": "whatever"},
        {"email": "not an email", "registration_token": token},
    ]
    async with system.http("licensing") as http:
        answers = [
            await http.post("/v1/appliances/register", json={**a, "appliance_id": "xoa-1"})
            for a in attempts
        ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1, [r.text for r in answers]
    assert answers[0].json()["error"]["code"] == "invalid_registration"


async def test_l3_licence_verifies_offline_and_a_tampered_one_does_not(system: System) -> None:
    token = await _token(system, "sig@example.com", "premium")
    async with system.http("licensing") as http:
        keys = (await http.get("/v1/public-key")).json()
        registered = (
            await http.post(
                "/v1/appliances/register",
                json={
                    "email": "sig@example.com",
                    "registration_token": token,
                    "appliance_id": "xoa-9",
                },
            )
        ).json()
    assert keys["algorithm"] == "Ed25519"
    assert keys["key_id"] in [k["key_id"] for k in keys["keys"]]
    claims = verify_offline(registered["license"], keys["public_key"])
    assert (claims.customer_email, claims.appliance_id, claims.edition) == (
        "sig@example.com",
        "xoa-9",
        "premium",
    )
    assert claims.key_id == keys["key_id"]
    assert claims.valid_until is not None and claims.valid_until > claims.issued_at
    payload, signature = registered["license"].split(".")
    forged = json.loads(b64url_decode(payload)) | {"appliance_id": "xoa-evil"}
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(ValueError, match="does not verify"):
        verify_offline(f"{forged_payload}.{signature}", keys["public_key"])


async def test_l5_one_appliance_per_plan_and_moving_it(system: System) -> None:
    token = await _token(system, "move@example.com")
    body = {"email": "move@example.com", "registration_token": token}
    async with system.http("licensing") as http:
        first = await http.post("/v1/appliances/register", json={**body, "appliance_id": "xoa-a"})
        assert first.status_code == 200
        second = await http.post("/v1/appliances/register", json={**body, "appliance_id": "xoa-b"})
        assert (second.status_code, second.json()["error"]["code"]) == (409, "plan_in_use")
        moved = await http.post(
            "/v1/appliances/register", json={**body, "appliance_id": "xoa-b", "move": True}
        )
        assert moved.status_code == 200
        old = await http.get(
            "/v1/appliances/xoa-a/license",
            headers={"Authorization": f"Bearer {first.json()['appliance_secret']}"},
        )
        new = await http.get(
            "/v1/appliances/xoa-b/license",
            headers={"Authorization": f"Bearer {moved.json()['appliance_secret']}"},
        )
    assert (old.json()["status"], old.json()["edition"]) == ("moved", "free")
    assert (new.json()["status"], new.json()["edition"]) == ("active", "enterprise")
    event = await system.client.wait_event("appliance.moved")
    assert (event["from_appliance_id"], event["to_appliance_id"]) == ("xoa-a", "xoa-b")


async def test_l4_licence_check_needs_the_appliance_secret(system: System) -> None:
    token = await _token(system, "secret@example.com")
    async with system.http("licensing") as http:
        registered = await http.post(
            "/v1/appliances/register",
            json={
                "email": "secret@example.com",
                "registration_token": token,
                "appliance_id": "xoa-s",
            },
        )
        key, _, random_part = registered.json()["appliance_secret"].partition(".")
        attempts = [
            ("xoa-s", "nope"),  # no customer key: looked up through the appliance index
            ("xoa-s", f"{key}.{random_part[::-1]}"),  # the right customer, a wrong secret
            ("xoa-s", f"{'0' * 32}.{random_part}"),  # no such customer key
            ("xoa-zz", f"{key}.{random_part}"),  # another appliance's secret
            ("xoa-zz", "nope"),
        ]
        answers = [
            await http.get(
                f"/v1/appliances/{appliance_id}/license",
                headers={"Authorization": f"Bearer {secret}"},
            )
            for appliance_id, secret in attempts
        ]
        answers.append(await http.get("/v1/appliances/xoa-s/license"))
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1


# --- L2: registration attempts are rate limited, without telling customers apart ----------


async def test_l2_rate_limit_answers_an_unknown_email_exactly_like_a_known_one(
    system: System,
) -> None:
    _, token = await bind(system, "limited@example.com")
    answers = {}
    for email, source in (("limited@example.com", "192.0.2.1"), ("ghost@example.com", "192.0.2.2")):
        appliance = ApplianceClient(system, "xoa-l", source=source)
        answers[email] = [
            await appliance.register(email, "wrong-" + token) for _ in range(PER_EMAIL + 2)
        ]
    known, unknown = answers["limited@example.com"], answers["ghost@example.com"]
    expected = [401] * PER_EMAIL + [429, 429]
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == expected
    assert [r.content for r in known] == [r.content for r in unknown]
    assert known[-1].json()["error"]["code"] == "too_many_attempts"
    assert [r.headers.get("Retry-After") for r in known] == [
        r.headers.get("Retry-After") for r in unknown
    ]


async def test_l2_past_the_email_limit_the_right_token_registers_a_wrong_one_waits(
    system: System,
) -> None:
    """L2 lockout: the email's limit stops guessing, never the customer's own token."""
    _, token = await bind(system, "patient@example.com")
    guesser = ApplianceClient(system, "xoa-g", source="192.0.2.10")
    for _ in range(PER_EMAIL):
        assert (await guesser.register("patient@example.com", "nope")).status_code == 401
    limited = await guesser.register("patient@example.com", "nope")
    assert limited.status_code == 429
    wait = int(limited.headers["Retry-After"])
    assert 0 < wait <= 2 * system.settings.registration_window_seconds

    customer = ApplianceClient(system, "xoa-p", source="198.51.100.10")
    assert (await customer.register("patient@example.com", token)).status_code == 200
    assert (await customer.check())["status"] == "active"

    system.clock.advance(timedelta(seconds=wait - 1))
    assert (await guesser.register("patient@example.com", "nope")).status_code == 429
    system.clock.advance(timedelta(seconds=2 * system.settings.registration_window_seconds))
    assert (await guesser.register("patient@example.com", "nope")).status_code == 401


async def test_l2_attempts_are_limited_per_source_whatever_the_email(system: System) -> None:
    scanner = ApplianceClient(system, "xoa-scan", source="203.0.113.9")
    answers = [
        await scanner.register(f"guess{n}@example.com", "token") for n in range(PER_SOURCE + 1)
    ]
    assert [r.status_code for r in answers] == [401] * PER_SOURCE + [429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    elsewhere = ApplianceClient(system, "xoa-other", source="198.51.100.1")
    assert (await elsewhere.register("guess0@example.com", "token")).status_code == 401
    # L2: the source limit holds even for the right token (a source over it is refused
    # before anything else is looked at)
    _, token = await bind(system, "behind-scanner@example.com")
    assert (await scanner.register("behind-scanner@example.com", token)).status_code == 429


async def test_l2_the_limit_holds_across_two_replicas_of_the_licensing_service(
    system: System,
) -> None:
    second = Runtime("licensing", system.settings, system.clock)
    wiring = wire_licensing(second)
    app = http_app(second, wiring, title="licensing-2")
    await second.start(wiring)
    try:
        statuses = []
        for n in range(PER_EMAIL + 2):
            transport = httpx.ASGITransport(
                app=app if n % 2 else system.apps["licensing"], client=("192.0.2.77", 1)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://l") as http:
                response = await http.post(
                    "/v1/appliances/register",
                    json={
                        "email": "shared@example.com",
                        "registration_token": "t",
                        "appliance_id": "x",
                    },
                )
            statuses.append(response.status_code)
    finally:
        await second.stop()
    assert statuses == [401] * PER_EMAIL + [429, 429]


async def test_l2_counters_no_window_reads_are_purged(system: System) -> None:
    appliance = ApplianceClient(system, "xoa-purge", source="192.0.2.99")
    await appliance.register("purge@example.com", "t")
    counters = system.runtimes["licensing"].db["registration_attempts"]
    assert await counters.count_documents({}) == 2  # one per source, one per email
    purge = system.runtimes["licensing"].periodic["attempt_counters_purge"]
    await purge(system.clock.now())
    assert await counters.count_documents({}) == 2  # still read by the sliding window
    system.clock.advance(timedelta(seconds=2 * system.settings.registration_window_seconds))
    await purge(system.clock.now())
    assert await counters.count_documents({}) == 0


# --- L3: what the licence carries ---------------------------------------------------------


async def test_l3_licence_valid_until_is_the_plan_end_plus_grace_at_most(system: System) -> None:
    start = system.clock.now()
    _, token = await bind(system, "short@example.com", "starter", start=start, days=10)
    appliance = ApplianceClient(system, "xoa-short")
    assert (await appliance.register("short@example.com", token)).status_code == 200
    checked = await appliance.check()
    end = start + timedelta(days=10)
    assert checked["valid_until"] == end.isoformat().replace("+00:00", "Z")
    claims = checked["claims"]
    assert claims.valid_until == end + timedelta(days=7)
    assert claims.period_end == end
    assert (claims.status, claims.reason, claims.edition) == (
        "active",
        "plan_active",
        "starter",
    )


# --- L5: moves are limited -------------------------------------------------------------------


async def test_l5_moves_past_the_limit_wait_for_retry_after(system: System) -> None:
    start = system.clock.now()
    _, token = await bind(system, "mover@example.com", start=start, days=90)
    first, second, third = (ApplianceClient(system, f"xoa-m{n}") for n in range(3))
    assert (await first.register("mover@example.com", token)).status_code == 200
    assert (await second.register("mover@example.com", token, move=True)).status_code == 200
    refused = await third.register("mover@example.com", token, move=True)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "move_limit_reached"
    assert int(refused.headers["Retry-After"]) == 30 * 24 * 3600
    assert (await second.check())["status"] == "active"
    system.clock.advance(timedelta(days=30))
    assert (await third.register("mover@example.com", token, move=True)).status_code == 200
    assert ((await second.check())["status"], (await third.check())["status"]) == (
        "moved",
        "active",
    )
    await system.client.wait_event("appliance.moved", lambda b: b["to_appliance_id"] == "xoa-m2")
    assert [e["from_appliance_id"] for e in events(system, "appliance.moved")] == [
        "xoa-m0",
        "xoa-m1",
    ]
