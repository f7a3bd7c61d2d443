"""The system as `make run` starts it: launcher, four service processes, embedded store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx

from shared.runtime.identity import Credentials, read_users
from shared.runtime.settings import SERVICES
from tools import broker_users
from tools.embedded_mongo import free_port


@dataclass
class LaunchedSystem:
    namespace: str
    ports: dict[str, int]
    api_token: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path

    def users(self) -> dict[str, Credentials]:
        """The broker users the launcher provisioned (``DATA_DIR/broker-users.json``)."""
        return read_users(self.data_dir / "broker-users.json")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@contextmanager
def launched_system(
    amqp_url: str,
    workdir: Path,
    *,
    ready_timeout: float = 60,
    settings: dict[str, str] | None = None,
) -> Iterator[LaunchedSystem]:
    """Start the launcher with its own data dir, namespace and ports; SIGTERM it at the end.

    ``settings`` are extra environment variables (e.g. a benchmark's higher limits)."""
    ports = {s: free_port() for s in SERVICES}
    run = uuid4().hex[:10]
    namespace = f"e{run}."
    token = uuid4().hex
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "AMQP_NAMESPACE": namespace,
        "AMQP_USER_PREFIX": f"e{run}-",  # the launcher provisions these users, as make run does
        "DATA_DIR": str(workdir / "data"),
        "RESELLER_API_TOKEN": token,
        "LOG_FORMAT": "json",
        **{f"{s.upper()}_PORT": str(p) for s, p in ports.items()},
        **(settings or {}),
    }
    env.pop("MONGODB_URL", None)  # the launcher starts the embedded store, as `make run` does
    log = workdir / "system.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.launcher"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    system = LaunchedSystem(namespace, ports, token, process, log, workdir / "data")
    try:
        _wait_ready(system, ready_timeout)
        yield system
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if (workdir / "data" / "broker-users.json").exists():
            broker_users.delete_users(system.users().values())


def _wait_ready(system: LaunchedSystem, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(SERVICES)
    while pending and time.monotonic() < deadline:
        if system.process.poll() is not None:
            raise RuntimeError(f"launcher exited early:\n{system.log.read_text()[-4000:]}")
        for service in list(pending):
            try:
                if httpx.get(system.url(service) + "/ready", timeout=1).status_code == 200:
                    pending.discard(service)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if pending:
        raise RuntimeError(
            f"not ready after {timeout}s: {pending}\n{system.log.read_text()[-4000:]}"
        )
