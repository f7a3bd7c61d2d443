"""The orders HTTP API, probed as an attacker (CONTRACT.md, Identities; issue: hardened edges).

Real broker and store (the ``system`` fixture), HTTP through the orders ASGI app. Each
probe below succeeded before: one shared token let anyone name any reseller, a 100 MB
upload with no token was spooled to disk before the refusal, concurrent uploads to one
line answered 500, a PDF that was also a ZIP (or a PNG that was also an ELF) was stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gridfs import AsyncGridFSBucket

from services.orders.domain import MAX_PROOFS_PER_LINE, OrderLine
from services.orders.handlers import SHOWN_KEY_GRACE
from shared.basics.errors import Conflict
from shared.runtime import store as runtime_store
from shared.runtime.store import DocumentStore
from testkit.contract_client import ContractClient
from tests.support.flows import place
from tests.support.proofs import JPEG, PDF, PNG, POLYGLOTS
from tests.support.system import API_TOKEN, System

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


async def create_key(system: System, reseller: str, **kwargs: Any) -> dict[str, Any]:
    return await system.client.ok(
        "apikey.create", {"reseller_id": reseller, "label": "billing script"}, **kwargs
    )


async def post_proof(
    system: System,
    order_id: str,
    *,
    token: str | None,
    reseller: str | None = None,
    content: bytes = PDF,
    name: str = "proof.pdf",
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if reseller is not None:
        headers["X-Reseller-Id"] = reseller
    async with system.http("orders") as http:
        return await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers=headers,
            files={"file": (name, content, "application/octet-stream")},
        )


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def stored_proofs(system: System) -> list[Any]:
    """The proof files in orders' GridFS bucket."""
    bucket = AsyncGridFSBucket(system.runtimes["orders"].db, bucket_name="proofs")
    return [grid_out async for grid_out in bucket.find({})]


async def stored_proof_files(system: System) -> int:
    return len(await stored_proofs(system))


async def line_of(system: System, reseller: str, order_id: str) -> dict[str, Any]:
    return await system.client.ok("order.get", {"reseller_id": reseller, "order_id": order_id})


# --- reseller API keys -----------------------------------------------------------------------


async def test_an_api_key_acts_as_its_reseller_and_is_shown_once(system: System) -> None:
    created = await create_key(system, "r-key", as_role="operations")
    key = created["key"]
    order = await place(system, "r-key")

    answered = await post_proof(system, order["order_id"], token=key)  # no X-Reseller-Id
    assert answered.status_code == 201, answered.text
    named = await post_proof(system, order["order_id"], token=key, reseller="r-key")
    assert named.status_code == 201, named.text

    listed = await system.client.ok("apikey.list", {"reseller_id": "r-key"})
    [view] = listed["keys"]
    assert (view["key_id"], view["status"], view["label"]) == (
        created["key_id"],
        "active",
        "billing script",
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(listed) and digest not in json.dumps(listed)
    event = await system.client.wait_event(
        "apikey.created", lambda b: b["key_id"] == created["key_id"]
    )
    assert event["reseller_id"] == "r-key" and key not in json.dumps(event)


async def test_cross_reseller_api_key_use_is_refused_and_leaves_no_trace(system: System) -> None:
    key = (await create_key(system, "r-mallory"))["key"]  # the storefront may create keys too
    victim = (await place(system, "r-victim"))["order_id"]

    as_victim = await post_proof(system, victim, token=key, reseller="r-victim")
    assert error_of(as_victim) == (403, "forbidden")
    on_victims_line = await post_proof(system, victim, token=key)
    assert error_of(on_victims_line) == (403, "not_your_order")
    revoke = await system.client.request(
        "apikey.revoke",
        {"reseller_id": "r-victim", "key_id": key.split("_", 1)[1][:27]},
        as_role="operations",
    )
    assert revoke["error"]["code"] == "unknown_api_key"  # another reseller's key names nothing

    line = await line_of(system, "r-victim", victim)
    assert (line["status"], line["proofs"]) == ("awaiting_proof", [])
    assert await stored_proof_files(system) == 0


async def test_a_revoked_api_key_is_refused(system: System) -> None:
    created = await create_key(system, "r-rev", as_role="operations")
    order_id = (await place(system, "r-rev"))["order_id"]
    assert (await post_proof(system, order_id, token=created["key"])).status_code == 201

    revoked = await system.client.ok(
        "apikey.revoke",
        {"reseller_id": "r-rev", "key_id": created["key_id"]},
        as_role="operations",
    )
    assert revoked["status"] == "revoked"
    refused = await post_proof(system, order_id, token=created["key"])
    assert error_of(refused) == (401, "unauthorised")
    assert refused.json()["error"]["message"] == "this API key was revoked"
    await system.client.wait_event("apikey.revoked", lambda b: b["key_id"] == created["key_id"])
    listed = await system.client.ok("apikey.list", {"reseller_id": "r-rev"})
    assert [k["status"] for k in listed["keys"]] == ["revoked"]
    assert len((await line_of(system, "r-rev", order_id))["proofs"]) == 1


async def test_the_internal_token_still_acts_for_x_reseller_id(system: System) -> None:
    order_id = (await place(system, "r-int"))["order_id"]
    assert (
        await post_proof(system, order_id, token=API_TOKEN, reseller="r-int")
    ).status_code == 201
    unnamed = await post_proof(system, order_id, token=API_TOKEN)
    assert error_of(unnamed) == (422, "invalid_request")
    for wrong in (None, "wrong", API_TOKEN + "x", "xo_ak_" + "0" * 24 + "_" + "A" * 43):
        refused = await post_proof(system, order_id, token=wrong, reseller="r-int")
        assert error_of(refused) == (401, "unauthorised"), wrong
    assert len((await line_of(system, "r-int", order_id))["proofs"]) == 1


async def test_a_guest_cannot_create_an_api_key(system: System) -> None:
    async with ContractClient(system.settings.amqp_url, system.settings.amqp_namespace) as guest:
        reply = await guest.request("apikey.create", {"reseller_id": "r-g", "label": "mine now"})
    assert reply["error"]["code"] == "forbidden"
    [dead] = await system.client.dead_letters(wait_for=1)
    assert str((dead.headers or {})["x-death-reason"]).startswith("unauthorized_publisher")
    assert (await system.client.ok("apikey.list", {"reseller_id": "r-g"}))["keys"] == []


async def test_the_key_lives_on_as_its_digest_only(system: System) -> None:
    """The inbox keeps ``apikey.create``'s reply for resends, and that reply shows the key:
    a resend within the grace gets it again; then the inbox forgets it, and the key is
    nowhere in orders' database but as its digest."""
    message_id = str(uuid.uuid4())
    body = {"reseller_id": "r-inbox", "label": "ci"}
    first = await system.client.ok("apikey.create", body, message_id=message_id)
    assert (await system.client.ok("apikey.create", body, message_id=message_id)) == first

    orders = system.runtimes["orders"]
    system.clock.advance(SHOWN_KEY_GRACE + SHOWN_KEY_GRACE)
    assert await orders.periodic["shown_keys"](system.clock.now()) == 1

    db = orders.db
    dump = "".join(
        [str(doc) for name in await db.list_collection_names() async for doc in db[name].find()]
    )
    assert first["key"] not in dump
    assert hashlib.sha256(first["key"].encode()).hexdigest() in dump
    late = await system.client.request("apikey.create", body, message_id=message_id)
    assert late["error"]["code"] == "api_key_shown_once"
    listed = await system.client.ok("apikey.list", {"reseller_id": "r-inbox"})
    assert [k["key_id"] for k in listed["keys"]] == [first["key_id"]]  # still one key


# --- the upload's body is read only after its credential --------------------------------------


class CountingBody:
    """A request body of ``total`` bytes, streamed in chunks; counts what was taken."""

    def __init__(self, total: int, prefix: bytes = b"", chunk: int = 64 * 1024) -> None:
        self.total, self.prefix, self.chunk = total, prefix, chunk
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.prefix:
            self.taken += len(self.prefix)
            yield self.prefix
        filler = b"\x00" * self.chunk
        while self.taken < self.total:
            self.taken += self.chunk
            yield filler


BOUNDARY = "xoboundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
FILE_PART = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
    "Content-Type: application/pdf\r\n\r\n"
).encode() + PDF


async def test_an_oversize_upload_without_a_credential_is_refused_unread(system: System) -> None:
    """100 MB streamed with no token: 401 before the route takes a byte of it."""
    order_id = (await place(system, "r-big"))["order_id"]
    body = CountingBody(100 * MIB, FILE_PART)
    started = time.perf_counter()
    async with system.http("orders") as http:
        response = await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers={**MULTIPART, "X-Reseller-Id": "r-big"},
            content=body,
        )
    assert error_of(response) == (401, "unauthorised")
    assert body.taken == 0
    assert time.perf_counter() - started < 5
    assert await stored_proof_files(system) == 0


async def test_an_oversize_upload_is_cut_at_the_routes_limit(system: System) -> None:
    """With a valid token, a declared 100 MB body is refused before a byte is read, and a
    streamed one as soon as it passes the limit (the proof limit plus the multipart
    framing), not after 100 MB."""
    order_id = (await place(system, "r-cut"))["order_id"]
    headers = {**MULTIPART, "Authorization": f"Bearer {API_TOKEN}", "X-Reseller-Id": "r-cut"}
    limit = system.settings.proof_max_bytes + 64 * 1024
    declared = CountingBody(100 * MIB, FILE_PART)
    streamed = CountingBody(100 * MIB, FILE_PART)
    async with system.http("orders") as http:
        at_once = await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers={**headers, "Content-Length": str(100 * MIB)},
            content=declared,
        )
        cut = await http.post(f"/v1/orders/{order_id}/proofs", headers=headers, content=streamed)
    assert error_of(at_once) == (413, "body_too_large") and declared.taken == 0
    assert error_of(cut) == (413, "body_too_large")
    assert limit < streamed.taken <= limit + 2 * streamed.chunk
    line = await line_of(system, "r-cut", order_id)
    assert line["proofs"] == [] and await stored_proof_files(system) == 0


async def test_a_line_that_takes_no_proof_refuses_before_the_body(system: System) -> None:
    order_id = (await place(system, "r-closed"))["order_id"]
    await system.client.ok("order.cancel", {"reseller_id": "r-closed", "order_id": order_id})
    body = CountingBody(20 * MIB, FILE_PART)
    async with system.http("orders") as http:
        response = await http.post(
            f"/v1/orders/{order_id}/proofs",
            headers={
                **MULTIPART,
                "Authorization": f"Bearer {API_TOKEN}",
                "X-Reseller-Id": "r-closed",
            },
            content=body,
        )
    assert error_of(response) == (409, "order_not_awaiting_proof")
    assert body.taken == 0


# --- what a proof may be -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(POLYGLOTS))
async def test_polyglot_proofs_are_refused_and_nothing_is_stored(system: System, kind: str) -> None:
    order_id = (await place(system, "r-poly"))["order_id"]
    response = await post_proof(
        system, order_id, token=API_TOKEN, reseller="r-poly", content=POLYGLOTS[kind]
    )
    assert error_of(response) == (422, "invalid_proof"), response.text
    line = await line_of(system, "r-poly", order_id)
    assert (line["status"], line["proofs"]) == ("awaiting_proof", [])
    assert await stored_proof_files(system) == 0


async def test_real_pdf_png_and_jpeg_proofs_are_accepted(system: System) -> None:
    order_id = (await place(system, "r-real"))["order_id"]
    for content in (PDF, PNG, JPEG):
        response = await post_proof(
            system, order_id, token=API_TOKEN, reseller="r-real", content=content
        )
        assert response.status_code == 201, response.text
    line = await line_of(system, "r-real", order_id)
    assert [p["content_type"] for p in line["proofs"]] == [
        "application/pdf",
        "image/png",
        "image/jpeg",
    ]
    assert await stored_proof_files(system) == 3


async def test_uploaded_file_names_are_sanitised(system: System) -> None:
    order_id = (await place(system, "r-name"))["order_id"]
    response = await post_proof(
        system,
        order_id,
        token=API_TOKEN,
        reseller="r-name",
        name="../../<img src=x onerror=alert(1)>invoice\u202efdp.exe\u200b.pdf",
    )
    assert response.status_code == 201, response.text
    kept = "_img src=x onerror=alert(1)_invoicefdp.exe.pdf"  # no path, markup, override
    assert response.json()["filename"] == kept
    [proof] = (await line_of(system, "r-name", order_id))["proofs"]
    assert proof["filename"] == kept
    [stored] = await stored_proofs(system)
    assert stored.filename == kept


# --- concurrency and bounds --------------------------------------------------------------------


async def test_concurrent_uploads_to_one_line_never_answer_500(system: System) -> None:
    order_id = (await place(system, "r-race"))["order_id"]
    responses = await asyncio.gather(
        *(
            post_proof(system, order_id, token=API_TOKEN, reseller="r-race", name=f"p{n}.pdf")
            for n in range(10)
        )
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409, 503}, [r.text for r in responses]
    assert all("error" in r.json() for r in responses if r.status_code != 201)
    accepted = statuses.count(201)
    assert accepted >= 1
    assert len((await line_of(system, "r-race", order_id))["proofs"]) == accepted
    assert await stored_proof_files(system) == accepted  # nothing half-written


async def test_a_line_keeps_a_bounded_number_of_proofs(system: System) -> None:
    order_id = (await place(system, "r-many"))["order_id"]
    for n in range(MAX_PROOFS_PER_LINE):
        response = await post_proof(system, order_id, token=API_TOKEN, reseller="r-many")
        assert response.status_code == 201, (n, response.text)
    one_more = await post_proof(system, order_id, token=API_TOKEN, reseller="r-many")
    assert error_of(one_more) == (409, "too_many_proofs")
    assert len((await line_of(system, "r-many", order_id))["proofs"]) == MAX_PROOFS_PER_LINE
    assert await stored_proof_files(system) == MAX_PROOFS_PER_LINE


async def test_an_upload_that_keeps_losing_its_race_answers_503_with_the_envelope(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every save of the line loses to another writer until the store gives up: 503
    ``busy`` with Retry-After, and the stored file is deleted."""
    order_id = (await place(system, "r-busy"))["order_id"]
    save = DocumentStore.save

    async def lost_for_lines(self: DocumentStore[Any], aggregate: Any) -> None:
        if isinstance(aggregate, OrderLine):
            raise Conflict(f"OrderLine {aggregate.id} changed")
        await save(self, aggregate)

    monkeypatch.setattr(runtime_store, "SAVE_ATTEMPTS", 3)
    monkeypatch.setattr(DocumentStore, "save", lost_for_lines)
    response = await post_proof(system, order_id, token=API_TOKEN, reseller="r-busy")
    assert error_of(response) == (503, "busy")
    assert response.headers["Retry-After"] == "1"
    monkeypatch.undo()
    assert (await line_of(system, "r-busy", order_id))["proofs"] == []
    assert await stored_proof_files(system) == 0
