"""The licensing side of a test: plan events published as orders publishes them, an
appliance that talks to the licensing HTTP API from a chosen client address, and the one
offline licence verifier of the tests (``verify_offline``: what an appliance does)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.contracts import Event
from shared.contracts.identities import OWNERS
from shared.contracts.licensing import LicenceClaims
from shared.contracts.orders import PlanBound

if TYPE_CHECKING:  # the verifier alone needs no running system (e2e imports it)
    from tests.support.system import System


async def publish(system: System, event: Event, *, message_id: str | None = None) -> str:
    """Publish ``event`` on ``reseller.events`` exactly as its owning service would (as
    that service's broker user: anyone else's event is refused)."""
    message_id = message_id or str(uuid4())
    [owner] = OWNERS[event.ROUTING_KEY]
    await system.client.publish_event(
        event.ROUTING_KEY,
        json.loads(event.model_dump_json()),
        message_id=message_id,
        correlation_id=event.correlation_id,
        as_role=owner,
    )
    return message_id


async def bind(
    system: System,
    email: str,
    edition: str = "enterprise",
    *,
    start: datetime | None = None,
    days: int = 30,
    order_id: str | None = None,
) -> tuple[str, str]:
    """A plan bound to ``email`` (``plan.bound``); returns (order id, registration token)."""
    order_id = order_id or f"ol_{uuid4().hex[:12]}"
    start = start or system.clock.now()
    await publish(
        system,
        PlanBound(
            order_id=order_id,
            reseller_id="r-1",
            space="reseller",
            customer_email=email,
            edition=edition,
            billing="monthly",
            period_start=start,
            period_end=start + timedelta(days=days),
            occurred_at=start,
            correlation_id=order_id,
        ),
    )
    note = await system.client.wait_event(
        "customer.notification", lambda b: b.get("order_id") == order_id
    )
    return order_id, str(note["registration_token"])


async def until_applied(system: System, message_id: str, *, timeout: float = 15) -> None:
    """Wait until the licensing service has applied the plan event ``message_id`` (the
    customer it changed keeps its id: plan events have no inbox claim)."""
    customers = system.runtimes["licensing"].db["customers"]
    deadline = asyncio.get_running_loop().time() + timeout
    while await customers.find_one({"applied_messages": message_id}, {"_id": 1}) is None:
        assert asyncio.get_running_loop().time() < deadline, f"{message_id} not handled"
        await asyncio.sleep(0.01)  # waiting for a delivery, not for time to pass


def events(system: System, routing_key: str, **where: Any) -> list[dict[str, Any]]:
    """The events of ``routing_key`` received so far whose fields match ``where``: one per
    message id, in the order first received. Publication is at least once (a publication
    retried after a late confirm comes again with its id), and consumers apply a message
    id once: so does this, and "once each" means one message id each."""
    seen: set[str | None] = set()
    found = []
    for key, body, message in system.client.events:
        if key != routing_key or not all(body.get(k) == v for k, v in where.items()):
            continue
        if message.message_id is None or message.message_id not in seen:
            seen.add(message.message_id)
            found.append(body)
    return found


async def run_checks(system: System) -> int:
    """One pass of the licensing expiry job at the system's (fixed) time."""
    checked = await system.runtimes["licensing"].periodic["licence_checks"](system.clock.now())
    assert isinstance(checked, int)
    return checked


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url, as the licence's two parts are written."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_offline(licence: str, public_key_b64: str) -> LicenceClaims:
    """What an appliance does, with nothing but the published key and the contract (no
    product code): check the Ed25519 signature of ``<payload>.<signature>``, then read
    the payload. ``ValueError`` if the licence is malformed or does not verify."""
    try:
        payload, signature = licence.split(".")
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(b64url_decode(signature), payload.encode("ascii"))
    except (ValueError, InvalidSignature) as exc:
        raise ValueError("licence signature does not verify") from exc
    return LicenceClaims.model_validate_json(b64url_decode(payload))


@dataclass
class ApplianceClient:
    """An appliance: registers with the customer's email and token, then checks."""

    system: System
    appliance_id: str
    source: str = "127.0.0.1"
    secret: str | None = None
    responses: list[httpx.Response] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=self.system.apps["licensing"], client=(self.source, 40000)
        )
        return httpx.AsyncClient(transport=transport, base_url="http://licensing")

    async def register(
        self,
        email: str,
        token: str,
        *,
        move: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        async with self.http() as http:
            response = await http.post(
                "/v1/appliances/register",
                json={
                    "email": email,
                    "registration_token": token,
                    "appliance_id": self.appliance_id,
                    "move": move,
                },
                headers=headers,
            )
        if response.status_code == 200:
            self.secret = response.json()["appliance_secret"]
        return response

    async def check(self) -> dict[str, Any]:
        """``GET /v1/appliances/{id}/license``, its licence verified with the published key:
        the answer's JSON, with ``claims`` the verified ``LicenceClaims``."""
        async with self.http() as http:
            response = await http.get(
                f"/v1/appliances/{self.appliance_id}/license",
                headers={"Authorization": f"Bearer {self.secret}"},
            )
            assert response.status_code == 200, response.text
            keys = (await http.get("/v1/public-key")).json()
        body: dict[str, Any] = response.json()
        body["claims"] = verify_offline(body["license"], keys["public_key"])
        return body
