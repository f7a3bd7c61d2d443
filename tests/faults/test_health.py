"""Health that tells the truth, and logs that stay JSON when things fail.

- ``/ready`` is false while a route's consumer is not attached (stopped, or its channel
  closed), and while the store is down; it says which check fails, in the envelope.
- A service process whose store is SIGKILLed answers its API with ``503
  store_unavailable`` in the envelope (with ``Retry-After``), is ready again once the
  store is back, and every line it writes meanwhile, uvicorn's and the libraries'
  tracebacks included, is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.runtime.settings import Settings
from testkit.broker import BrokerSession
from testkit.contract_client import ContractClient, read_users
from tests.support.system import System, make_settings
from tools.embedded_mongo import EmbeddedMongo, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_ready_is_false_while_a_consumer_is_detached(system: System) -> None:
    runtime = system.runtimes["orders"]
    assert await runtime.readiness() == dict.fromkeys(await runtime.readiness(), True)
    subscriber = runtime.broker.subscribers[0]

    await subscriber.stop()  # no longer consuming its queue
    checks = await runtime.readiness()
    assert checks["consumers"] is False
    assert checks["broker"] is True and checks["database"] is True
    async with system.http("orders") as http:
        answer = await http.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["error"] == {"code": "busy", "message": "not ready: consumers"}

    await subscriber.start()
    assert (await runtime.readiness())["consumers"] is True
    queue: Any = subscriber._queue_obj  # type: ignore[attr-defined]
    await queue.channel.close()  # the channel its consumer lives on is gone
    assert (await runtime.readiness())["consumers"] is False


async def test_ready_is_false_before_the_runtime_started(system: System) -> None:
    from shared.runtime.service import Runtime

    idle = Runtime("quotes", system.settings, system.clock)
    try:
        checks = await idle.readiness()
    finally:
        await idle.mongo.close()
    assert checks["database"] is True
    assert checks["consumers"] is False and checks["workers"] is False


def _environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the environment a service process reads them from."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[name.upper()] = value if isinstance(value, str) else json.dumps(value)
    return env


def _start(service: str, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=env, stdout=out, stderr=out
        )


def _status(url: str) -> int | None:
    """``/ready``'s status, None while nothing answers."""
    try:
        return httpx.get(url + "/ready", timeout=5).status_code
    except httpx.HTTPError:
        return None


def _wait(
    predicate: Any, what: str, timeout: float, process: subprocess.Popen[bytes], output: Path
) -> Any:
    """Poll ``predicate`` until it holds; fails at once if the service exits, and says
    what the service logged either way (a start-up that hangs or dies is then readable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            break
        time.sleep(0.1)
    tail = "\n".join(output.read_text(errors="replace").splitlines()[-30:])
    ended = "running" if process.poll() is None else f"exited {process.returncode}"
    raise AssertionError(f"{what}: not within {timeout}s (service {ended}); its log ends:\n{tail}")


async def test_a_service_whose_store_is_killed_answers_503_stays_json_and_recovers(
    broker: BrokerSession, tmp_path: Path
) -> None:
    store = EmbeddedMongo(tmp_path / "mongo")
    stores = [store]
    mongo_url = store.start()
    port, admin_port = free_port(), free_port()
    # The integration tests' settings (the session's queues were declared with them).
    settings = make_settings(
        broker=broker,
        mongo_url=mongo_url,
        data_dir=tmp_path / "data",
        licensing_port=port,
        licensing_admin_port=admin_port,
        log_format="json",
    )
    env = {**os.environ, **_environment(settings)}
    output = tmp_path / "licensing.log"
    url = f"http://127.0.0.1:{port}"
    process = _start("licensing", env, output)
    try:
        await asyncio.to_thread(_wait, lambda: _status(url) == 200, "ready", 90, process, output)

        # a library's log line: uvicorn's, for a request that is not HTTP
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"NOT HTTP AT ALL\x00\x01\r\n\r\n")
            raw.recv(1024)

        assert store.process is not None
        store.process.send_signal(signal.SIGKILL)
        store.process.wait()
        await asyncio.to_thread(
            _wait,
            lambda: _status(url) == 503,
            "not ready while the store is down",
            15,
            process,
            output,
        )
        async with httpx.AsyncClient(timeout=30) as http:
            down = (await http.get(url + "/ready")).json()
            assert down["checks"]["database"] is False
            assert down["error"]["code"] == "store_unavailable"
            registered = await http.post(
                url + "/v1/appliances/register",
                json={"email": "a@b.example", "registration_token": "t" * 32, "appliance_id": "x"},
            )
        assert registered.status_code == 503, registered.text
        assert registered.json()["error"]["code"] == "store_unavailable"
        assert registered.headers["Retry-After"]

        # a handler that fails (the store is down), retried until the store is back
        async with ContractClient(broker.admin_url, "", read_users(broker.users_file)) as client:
            asked = asyncio.create_task(
                client.request("license.status", {"customer_email": "a@b.example"}, timeout=90)
            )
            await asyncio.to_thread(
                _wait,
                lambda: "message_failed" in output.read_text(),
                "a failed handler",
                30,
                process,
                output,
            )
            restarted = EmbeddedMongo(tmp_path / "mongo", port=store.port)  # same port and data
            stores.append(restarted)
            await asyncio.to_thread(restarted.start)
            answer = await asked
        assert answer["ok"] is True, answer  # answered once the store was back
        await asyncio.to_thread(
            _wait, lambda: _status(url) == 200, "ready again", 60, process, output
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for each in stores:
            each.stop()

    lines = [json.loads(line) for line in output.read_text().splitlines()]  # one object each
    assert all(isinstance(line, dict) and line["service"] == "licensing" for line in lines)
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert any(line.get("logger", "").startswith("uvicorn.") for line in lines)
    failed = next(line for line in lines if line["event"] == "message_failed")
    assert failed["routing_key"] == "license.status" and failed["message_id"]
    assert failed["exception"][-1]["frames"], "the traceback is a structured field"
    assert any(line["event"] == "store_unavailable" for line in lines)
    assert lines[-1]["event"] == "service_stopped"
