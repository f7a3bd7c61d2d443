"""The system as `make run` starts it: the launcher, its processes, the embedded store.

``launched_system`` starts ``python -m tools.launcher`` with a data dir, broker
namespace, users and ports of its own (replicas too: ``replicas={"orders": 2}``), and
gives the tests what an operator has: each process's pid and restart count (the
launcher's ``DATA_DIR/launcher.json``), the launcher's metrics, and the log (one JSON
object per line).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from shared.contracts import REGISTRY
from shared.contracts.identities import SERVICE_ROLES, WEB_FACE_ROLES
from shared.runtime.identity import Credentials, read_users
from shared.runtime.settings import SERVICES
from shared.runtime.topology import DEFAULT_RETRY_DELAYS, Topology
from tools import broker_users
from tools.embedded_mongo import free_port
from tools.launcher import REPLICA_PORT_STEP, programs


@dataclass
class LaunchedSystem:
    namespace: str
    ports: dict[str, int]  # replica 0's; replica k listens on port + 10k
    api_token: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    replicas: dict[str, int] = field(default_factory=dict)
    admin_ports: dict[str, int] = field(default_factory=dict)
    metrics_port: int = 0
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS

    def queue_names(self) -> list[str]:
        """Every queue this system's topology may hold (which exist: a passive declare)."""
        topology = Topology(namespace=self.namespace, retry_delays=self.retry_delays)
        return topology.queue_names((*SERVICE_ROLES, *WEB_FACE_ROLES, "mailer"), REGISTRY)

    def users(self) -> dict[str, Credentials]:
        """The broker users the launcher provisioned (``DATA_DIR/broker-users.json``)."""
        return read_users(self.data_dir / "broker-users.json")

    def url(self, service: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[service] + REPLICA_PORT_STEP * replica}"

    def urls(self, service: str) -> list[str]:
        return [self.url(service, k) for k in range(self.replicas.get(service, 1))]

    def admin_url(self, service: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.admin_ports[service] + REPLICA_PORT_STEP * replica}"

    def state(self) -> dict[str, Any]:
        """What the launcher says runs now (``DATA_DIR/launcher.json``)."""
        state: dict[str, Any] = json.loads((self.data_dir / "launcher.json").read_text())
        return state

    def pid(self, service: str, replica: int = 0) -> int | None:
        """The pid of a service's replica, or of the embedded store (``"store"``); None
        while it is down."""
        state = self.state()
        if service == "store":
            return state["store"]["pid"] if state["store"] else None
        pid: int | None = state["services"][service][replica]["pid"]
        return pid

    def restarts(self, service: str, replica: int = 0) -> int:
        state = self.state()
        if service == "store":
            return int(state["store"]["restarts"])
        return int(state["services"][service][replica]["restarts"])

    def kill(self, service: str, replica: int = 0) -> int:
        """SIGKILL one process (``"store"``: the embedded store); returns its pid."""
        pid = self.pid(service, replica)
        assert pid is not None, f"{service}[{replica}] is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(
        self, service: str, old_pid: int, replica: int = 0, *, timeout: float = 60
    ) -> int:
        """Wait until the launcher runs ``service`` again under a new pid (and, for a
        service, until it is ready); returns the new pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(service, replica)
            restarted = pid is not None and pid != old_pid
            if restarted and (service == "store" or _is_ready(self.url(service, replica))):
                assert pid is not None
                return pid
            time.sleep(0.1)
        raise TimeoutError(f"{service}[{replica}] not restarted within {timeout}s")

    def launcher_metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of the system's output, parsed (each must be one JSON object)."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = {url for service in self.ports for url in self.urls(service)}
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"launcher exited early:\n{self.log.read_text()[-4000:]}")
            pending = {url for url in pending if not _is_ready(url)}
            if pending:
                time.sleep(0.2)
        if pending:
            raise RuntimeError(
                f"not ready after {timeout}s: {sorted(pending)}\n{self.log.read_text()[-4000:]}"
            )


def _is_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_series(count: int, taken: set[int]) -> int:
    """A free port ``p`` such that ``p + 10k`` is free too for every replica ``k``."""
    for _ in range(200):
        base = free_port()
        series = {base + REPLICA_PORT_STEP * k for k in range(count)}
        if max(series) < 65536 and not series & taken and all(map(_bindable, series)):
            taken |= series
            return base
    raise RuntimeError("no free port series found")


def services_only(replicas: Mapping[str, int] | None = None) -> dict[str, int]:
    """``replicas`` for ``launched_system`` running the domain services only, no web face."""
    return {
        **{name: 0 for name in programs() if name not in SERVICES},
        **(replicas or {}),
    }


@contextmanager
def launched_system(
    amqp_url: str,
    workdir: Path,
    *,
    ready_timeout: float = 180,  # six processes starting on a busy 2-core machine
    settings: Mapping[str, str] | None = None,
    replicas: Mapping[str, int] | None = None,
) -> Iterator[LaunchedSystem]:
    """Start the launcher with its own data dir, namespace and ports; SIGTERM it at the end.

    ``settings`` are extra environment variables (e.g. a benchmark's higher limits);
    ``replicas`` how many processes of a service to run (``REPLICAS``)."""
    counts = {name: (replicas or {}).get(name, 1) for name in programs()}
    names = [name for name, count in counts.items() if count > 0]
    taken: set[int] = set()
    ports = {name: free_port_series(counts[name], taken) for name in names}
    admin_ports = {name: free_port_series(counts[name], taken) for name in names}
    metrics_port = free_port_series(1, taken)
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
        "LAUNCHER_METRICS_PORT": str(metrics_port),
        "REPLICAS": ",".join(f"{name}={n}" for name, n in counts.items() if n != 1),
        **{f"{s.upper()}_PORT": str(p) for s, p in ports.items()},
        **{f"{s.upper()}_ADMIN_PORT": str(p) for s, p in admin_ports.items()},
        **(settings or {}),
    }
    env.pop("MONGODB_URL", None)  # the launcher starts the embedded store, as `make run` does
    for name in names:  # ports the caller chose itself
        ports[name] = int(env[f"{name.upper()}_PORT"])
        admin_ports[name] = int(env[f"{name.upper()}_ADMIN_PORT"])
    log = workdir / "system.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.launcher"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    system = LaunchedSystem(
        namespace,
        ports,
        token,
        process,
        log,
        workdir / "data",
        replicas={name: counts[name] for name in names},
        admin_ports=admin_ports,
        metrics_port=metrics_port,
        retry_delays=tuple(json.loads(env.get("RETRY_DELAYS_SECONDS", "null")) or ())
        or DEFAULT_RETRY_DELAYS,
    )
    try:
        system.wait_ready(ready_timeout)
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
