"""The appliance HTTP API of the licensing service (L2-L5), on the real broker and store."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.support.flows import bound_order
from tests.support.system import System

pytestmark = pytest.mark.integration


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_offline(licence: str, public_key_b64: str) -> dict[str, Any]:
    """What an appliance does, with nothing but the published key (no product code)."""
    payload, signature = licence.split(".")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64)).verify(
        _b64url(signature), payload.encode("ascii")
    )
    claims: dict[str, Any] = json.loads(_b64url(payload))
    return claims


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
    assert claims["customer_email"] == "sig@example.com"
    assert claims["appliance_id"] == "xoa-9"
    assert claims["edition"] == "premium"
    assert claims["key_id"] == keys["key_id"]
    assert {"valid_until", "issued_at"} <= claims.keys()
    payload, signature = registered["license"].split(".")
    forged = json.loads(_b64url(payload)) | {"edition": "premium", "appliance_id": "xoa-evil"}
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
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
        await http.post(
            "/v1/appliances/register",
            json={
                "email": "secret@example.com",
                "registration_token": token,
                "appliance_id": "xoa-s",
            },
        )
        wrong = await http.get(
            "/v1/appliances/xoa-s/license", headers={"Authorization": "Bearer nope"}
        )
        missing = await http.get("/v1/appliances/xoa-s/license")
        unknown = await http.get(
            "/v1/appliances/xoa-zz/license", headers={"Authorization": "Bearer nope"}
        )
    assert {r.status_code for r in (wrong, missing, unknown)} == {401}
    assert len({r.content for r in (wrong, missing, unknown)}) == 1
