"""The appliance-facing edge of licensing, probed as an attacker (issue: hardened edges).

Each probe worked against the system before the fix:
- L2 lockout: 10 wrong tokens from rotated sources locked the real customer out for 15
  minutes, and a source already over its own limit still used up the email's attempts;
- ``X-Forwarded-For`` from anyone rotated the source the limit counts;
- appliance ids ``.`` and ``..`` registered, then their licence check was unreachable;
- 10 concurrent 50 MB bodies to ``/register`` took licensing from 110 MB to 1 GB
  (bench/oversize_bodies.py measures the process; here: refused before being read);
- ``/docs``, ``/openapi.json``, ``/redoc`` and ``/metrics`` were on the public listener.

The licensing app is the real one (``http_app``) on the real broker and store, reached
through ``httpx.ASGITransport`` from a chosen peer address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from shared.basics.attempts import window_index
from shared.runtime.attempts import sliding_id
from shared.runtime.http import JSON_BODY_LIMIT, admin_app
from shared.runtime.settings import Settings
from testkit.broker import BrokerSession
from tests.support.licensing import ApplianceClient, bind, events
from tests.support.system import System, make_settings, running_system

pytestmark = pytest.mark.integration

PER_EMAIL, PER_SOURCE = 10, 20  # the defaults: "10 wrong tries" locked the customer out
PROXIES = "10.0.0.0/24"
EMAIL = "victim@customer.example.com"
MB = 1024 * 1024


@pytest.fixture
def settings(broker: BrokerSession, mongo_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        broker=broker,
        mongo_url=mongo_url,
        data_dir=tmp_path / "data",
        registration_attempts_per_email=PER_EMAIL,
        registration_attempts_per_source=PER_SOURCE,
        trusted_proxies=[PROXIES],
    )


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    """Licensing alone: plan events are published as orders publishes them."""
    async with running_system(settings, services=("licensing",)) as running:
        yield running


def codes(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


async def email_attempts_counted(system: System, email: str) -> int:
    """The attempts counted for ``email`` in the current window, read from the store."""
    window = timedelta(seconds=system.settings.registration_window_seconds)
    index = window_index(system.clock.now(), window)
    counters = system.runtimes["licensing"].db["registration_attempts"]
    counter = await counters.find_one({"_id": sliding_id(f"email:{email}")})
    return 0 if counter is None else int(counter["windows"].get(str(index), 0))


# --- L2: nobody can lock the customer out -------------------------------------------------


async def test_l2_thirty_rotated_sources_with_wrong_tokens_do_not_lock_the_customer_out(
    system: System,
) -> None:
    _, token = await bind(system, EMAIL)
    guesses = [
        await ApplianceClient(system, "xoa-evil", source=f"192.0.2.{n}").register(EMAIL, "guess")
        for n in range(1, 31)
    ]
    assert codes(guesses) == [401] * PER_EMAIL + [429] * (30 - PER_EMAIL)
    assert guesses[-1].json()["error"]["code"] == "too_many_attempts"

    customer = ApplianceClient(system, "xoa-home", source="198.51.100.7")
    registered = await customer.register(EMAIL, token)

    assert registered.status_code == 200, registered.text
    checked = await customer.check()
    assert (checked["status"], checked["claims"].appliance_id) == ("active", "xoa-home")
    # the email's limit still stops guessing: the next wrong token waits
    late = await ApplianceClient(system, "xoa-evil", source="192.0.2.99").register(EMAIL, "guess")
    assert late.status_code == 429 and int(late.headers["Retry-After"]) > 0
    await system.client.wait_event(
        "appliance.registered", lambda b: b["appliance_id"] == "xoa-home"
    )
    assert [e["appliance_id"] for e in events(system, "appliance.registered")] == ["xoa-home"]


async def test_l2_a_source_over_its_limit_does_not_count_against_the_email(
    system: System,
) -> None:
    _, token = await bind(system, EMAIL)
    scanner = ApplianceClient(system, "xoa-scan", source="203.0.113.9")
    spent = [await scanner.register(f"guess{n}@example.com", "guess") for n in range(PER_SOURCE)]
    assert codes(spent) == [401] * PER_SOURCE

    refused = [await scanner.register(EMAIL, "guess") for _ in range(3 * PER_EMAIL)]
    with_the_token = await scanner.register(EMAIL, token)  # the source limit holds for all

    assert set(codes([*refused, with_the_token])) == {429}
    assert await email_attempts_counted(system, EMAIL) == 0
    elsewhere = [
        await ApplianceClient(system, "xoa-x", source=f"198.51.100.{n}").register(EMAIL, "guess")
        for n in range(PER_EMAIL + 1)
    ]
    assert codes(elsewhere) == [401] * PER_EMAIL + [429]  # every attempt of the email was left
    assert await email_attempts_counted(system, EMAIL) == PER_EMAIL + 1


async def test_l2_forwarded_for_from_a_peer_that_is_no_trusted_proxy_does_not_rotate_the_source(
    system: System,
) -> None:
    spoofer = ApplianceClient(system, "xoa-spoof", source="203.0.113.50")
    spoofed = [
        await spoofer.register(
            f"spoof{n}@example.com", "guess", headers={"X-Forwarded-For": f"192.0.2.{n + 1}"}
        )
        for n in range(PER_SOURCE + 1)
    ]
    assert codes(spoofed) == [401] * PER_SOURCE + [429]  # one source: the TCP peer

    # The control: the same header from a configured proxy does name the client...
    proxy = ApplianceClient(system, "xoa-proxied", source="10.0.0.2")
    proxied = [
        await proxy.register(
            f"proxied{n}@example.com", "guess", headers={"X-Forwarded-For": f"192.0.2.{n + 1}"}
        )
        for n in range(PER_SOURCE + 1)
    ]
    assert codes(proxied) == [401] * (PER_SOURCE + 1)
    # ...and only when it parses as an address: garbage leaves the proxy as the source
    other_proxy = ApplianceClient(system, "xoa-garbage", source="10.0.0.3")
    garbage = [
        await other_proxy.register(
            f"garbage{n}@example.com", "guess", headers={"X-Forwarded-For": f"evil-{n}"}
        )
        for n in range(PER_SOURCE + 1)
    ]
    assert codes(garbage) == [401] * PER_SOURCE + [429]


# --- appliance ids start with a letter or a digit -------------------------------------------

BAD_IDS = [".", "..", "-x", "x" * 200, "xoa-\u00e9", "\uff58oa-1", "xoa-1\n", "_x"]


def assert_invalid_request(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "invalid_request"


async def test_an_appliance_id_that_does_not_start_with_a_letter_or_digit_does_not_register(
    system: System,
) -> None:
    _, token = await bind(system, EMAIL)
    for appliance_id in BAD_IDS:
        assert_invalid_request(await ApplianceClient(system, appliance_id).register(EMAIL, token))
    # the control: the same customer, token and source register a well-formed id
    good = ApplianceClient(system, "a")
    assert (await good.register(EMAIL, token)).status_code == 200
    assert (await good.check())["claims"].appliance_id == "a"
    await system.client.wait_event("appliance.registered")
    assert [e["appliance_id"] for e in events(system, "appliance.registered")] == ["a"]


BAD_PATH_IDS = ["%2E", "%2E%2E", "-x", "x" * 200, "x" * 129, "xoa-%C3%A9", "xoa-1%0A", "%20x"]


async def test_the_licence_check_refuses_a_malformed_appliance_id_in_its_path(
    system: System,
) -> None:
    bearer = {"Authorization": "Bearer k.secret"}
    async with system.http("licensing") as http:
        for path_id in BAD_PATH_IDS:
            response = await http.get(f"/v1/appliances/{path_id}/license", headers=bearer)
            assert response.url.raw_path == f"/v1/appliances/{path_id}/license".encode()
            assert_invalid_request(response)
            fields = [d["field"] for d in response.json()["error"]["details"]]
            assert fields == ["path.appliance_id"], path_id
        control = await http.get(f"/v1/appliances/{'x' * 128}/license", headers=bearer)
    assert control.status_code == 401  # a well-formed id reaches the credential check


# --- oversize bodies are refused before they are read ------------------------------------


class Chunks:
    """A 20 MB request body, streamed; counts what the server pulled from it."""

    def __init__(self, total: int = 20 * MB, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"{" + b" " * (self.chunk - 1)


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_20_mb_body_to_register_is_refused_with_413_before_it_is_read(
    system: System, declared: bool
) -> None:
    body = Chunks()
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(body.total)
    async with system.http("licensing") as http:
        response = await http.post("/v1/appliances/register", content=body, headers=headers)

    assert_too_large(response)
    assert body.sent <= (0 if declared else JSON_BODY_LIMIT + body.chunk)
    counters = system.runtimes["licensing"].db["registration_attempts"]
    assert await counters.count_documents({}) == 0  # the handler never ran


async def test_a_20_mb_body_as_one_piece_with_its_length_is_refused_with_413(
    system: System,
) -> None:
    async with system.http("licensing") as http:
        response = await http.post(
            "/v1/appliances/register",
            content=b"{" + b" " * (20 * MB - 1),
            headers={"Content-Type": "application/json"},
        )
    assert response.request.headers["Content-Length"] == str(20 * MB)
    assert_too_large(response)


# --- no docs and no metrics on the appliance-facing listener --------------------------------


async def test_docs_and_metrics_are_not_on_the_public_listener(system: System) -> None:
    runtime = system.runtimes["licensing"]
    admin = admin_app(system.apps["licensing"], service="licensing", ready=runtime.readiness)
    transport = httpx.ASGITransport(app=admin)
    async with (
        system.http("licensing") as public,
        httpx.AsyncClient(transport=transport, base_url="http://admin") as private,
    ):
        for path in ("/docs", "/openapi.json", "/redoc", "/metrics"):
            answer = await public.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
            # the control: the admin listener serves them (redoc is served nowhere)
            served = await private.get(path)
            assert served.status_code == (404 if path == "/redoc" else 200), path
        assert "/v1/appliances/register" in (await private.get("/openapi.json")).json()["paths"]
