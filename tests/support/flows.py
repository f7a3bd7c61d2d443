"""Steps of a sale, as an outside system performs them (used by several tests)."""

from __future__ import annotations

from typing import Any

from tests.support.proofs import PDF, PNG
from tests.support.system import API_TOKEN, System

__all__ = ["PDF", "PNG", "bound_order", "paid_order", "place", "quote", "upload"]


async def quote(
    system: System,
    reseller: str,
    edition: str = "enterprise",
    billing: str = "annual",
    space: str = "reseller",
) -> dict[str, Any]:
    return await system.client.ok(
        "quote.request",
        {"reseller_id": reseller, "space": space, "edition": edition, "billing": billing},
    )


async def place(system: System, reseller: str, **fields: Any) -> dict[str, Any]:
    body = {"reseller_id": reseller, "space": "reseller", **fields}
    if "quote_number" not in body and "edition" not in body:
        body.update(edition="enterprise", billing="annual")
    return await system.client.ok("order.place", body)


async def upload(
    system: System,
    order_id: str,
    reseller: str,
    content: bytes = PDF,
    name: str = "proof.pdf",
    token: str = API_TOKEN,
) -> Any:
    async with system.http("orders") as http:
        return await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {token}", "X-Reseller-Id": reseller},
            files={"file": (name, content, "application/octet-stream")},
        )


async def paid_order(system: System, reseller: str, **fields: Any) -> str:
    order_id: str = (await place(system, reseller, **fields))["order_id"]
    response = await upload(system, order_id, reseller)
    assert response.status_code == 201, response.text
    await system.client.ok(
        "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "ops"}
    )
    return order_id


async def bound_order(system: System, reseller: str, email: str, **fields: Any) -> str:
    order_id = await paid_order(system, reseller, **fields)
    await system.client.ok(
        "plan.bind", {"reseller_id": reseller, "order_id": order_id, "customer_email": email}
    )
    return order_id
