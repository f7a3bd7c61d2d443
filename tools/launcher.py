"""``make run``: the whole system in the foreground, supervised.

Starts the embedded MongoDB wire server unless ``MONGODB_URL`` is set, provisions the
broker users on a local RabbitMQ (CONTRACT.md, Identities), then every service (and web
face) as separate processes, each connecting as its own user.

Supervision:
- A process that dies is started again after a back-off: 1 s, doubling up to 30 s for a
  process that keeps dying, back to 1 s once it has run 60 s. Each restart is logged
  (``service_exited``, then ``service_restarted``: ``process`` (the service, or
  ``store``), ``replica``, ``exit_code``, ``restarts`` (its count) and ``delay``) and
  counted in ``xo_service_restarts_total{service,replica}`` on the launcher's own metrics
  listener (``LAUNCHER_METRICS_PORT``, default 8200, on ``ADMIN_HOST``; 0 turns it off).
  The other processes keep serving meanwhile.
- The embedded store is supervised the same way: started again on the same port with the
  same data directory.
- Replicas: ``--replicas orders=2`` (repeatable, or comma-separated) or
  ``REPLICAS=orders=2,credits=2`` runs N processes of a service (at most 10; 0 leaves it
  out). Replica
  ``k`` listens on the service's port + 10k and its admin port + 10k (orders: 8102, 8112,
  8122, ...; admin 8202, 8212, ...).
- ``DATA_DIR/launcher.json`` (mode 0600) says what runs now: the launcher's pid, the
  store's, and every replica's pid, ports and restart count; it is rewritten on each
  change.
- Logs: in JSON mode each child's output passes through the launcher, which adds the
  ``replica`` of a service run more than once and wraps any line that is not a JSON
  object (an interpreter crash before logging was set up) into one
  (``{"event": "process_output", "line": ...}``): every line of ``make run`` is one JSON
  object.
- Ctrl-C or SIGTERM stops everything: each process gets SIGTERM, then SIGKILL after
  ``STOP_GRACE_SECONDS`` (20); the embedded store stops last.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from shared.runtime import settings as settings_module
from shared.runtime.logging import configure_logging, get_logger, uses_json
from shared.runtime.settings import SERVICES, Settings
from tools import broker_users
from tools.embedded_mongo import EmbeddedMongo

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STORE = "store"
MAX_REPLICAS = 10  # replica k listens on port + 10k: ten replicas stay below the admin ports
REPLICA_PORT_STEP = 10
POLL_SECONDS = 0.1

log = get_logger("launcher")
REGISTRY = CollectorRegistry()
RESTARTS = Counter(
    "xo_service_restarts_total",
    "Processes the launcher started again after they died, by service and replica.",
    ["service", "replica"],
    registry=REGISTRY,
)
UP = Gauge(
    "xo_service_up",
    "1 while the launcher's process for this service and replica runs.",
    ["service", "replica"],
    registry=REGISTRY,
)


def programs() -> tuple[str, ...]:
    """What the launcher runs: every service, then every web face whose package exists."""
    faces: tuple[str, ...] = getattr(settings_module, "WEB_FACES", ())
    present = tuple(f for f in faces if _runnable(f"services.{f}"))
    return (*SERVICES, *present)


def _runnable(package: str) -> bool:
    """``python -m <package>`` would run (a face still being written is left out)."""
    try:
        return importlib.util.find_spec(f"{package}.__main__") is not None
    except ImportError:
        return False


def parse_replicas(specs: Sequence[str], known: Sequence[str]) -> dict[str, int]:
    """``["orders=2,credits=2", "console=0"]`` -> ``{"orders": 2, ...}``; others run once,
    and 0 leaves a process out."""
    counts = dict.fromkeys(known, 1)
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, number = item.partition("=")
            name = name.strip()
            if not sep or name not in counts:
                raise ValueError(f"replicas: {item!r} is not <service>=<count> of {list(known)}")
            if not number.strip().isdigit() or not 0 <= int(number) <= MAX_REPLICAS:
                raise ValueError(f"replicas: {name} needs a count from 0 to {MAX_REPLICAS}")
            counts[name] = int(number)
    return counts


def replica_ports(settings: Settings, service: str, replica: int) -> tuple[int, int]:
    """The HTTP and admin ports of ``service``'s replica ``replica`` (0 keeps the base)."""
    shift = REPLICA_PORT_STEP * replica
    return settings.port_of(service) + shift, settings.admin_port_of(service) + shift


@dataclass
class Backoff:
    """How long to wait before starting a dead process again: ``initial`` doubling up to
    ``maximum`` while it keeps dying, back to ``initial`` once it ran ``stable_after``."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0
    failures: int = 0  # deaths in a row, each after less than ``stable_after``

    def after_exit(self, ran_for: float) -> float:
        if ran_for >= self.stable_after:
            self.failures = 0
        delay: float = min(self.initial * 2.0 ** min(self.failures, 30), self.maximum)
        self.failures += 1
        return delay


def provision_local_broker(settings: Settings) -> bool:
    """On a local broker (and with ``rabbitmqctl``), create or update every role's user;
    elsewhere the operator provides them (BROKER_USERS_FILE or each process's AMQP_URL)."""
    host = urlsplit(settings.amqp_url).hostname
    if host not in LOCAL_HOSTS or broker_users.rabbitmqctl() is None:
        return False
    broker_users.provision(
        amqp_url=settings.amqp_url,
        namespace=settings.amqp_namespace,
        prefix=settings.amqp_user_prefix,
        users_file=settings.users_file(),
    )
    return True


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def relay_output(
    source: IO[bytes], *, service: str, replica: int | None, out_fd: int | None = None
) -> None:
    """Copy a child's output to ours, line by line (one ``write`` each, so lines from
    several children never mix): JSON objects as they are (with ``replica`` added when
    the service runs more than once), anything else wrapped into one."""
    for raw in iter(source.readline, b""):
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            continue
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        if isinstance(line, dict):
            if replica is None:
                out = text
            else:
                line.setdefault("replica", replica)
                out = json.dumps(line)
        else:
            out = json.dumps(
                {
                    "event": "process_output",
                    "line": text,
                    "service": service,
                    **({} if replica is None else {"replica": replica}),
                    "level": "warning",
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        with contextlib.suppress(OSError):  # our output is gone: keep draining the child
            _write_all(sys.stderr.fileno() if out_fd is None else out_fd, (out + "\n").encode())
    source.close()


@dataclass
class Child:
    """One supervised process of a service (or web face)."""

    service: str
    replica: int
    replicas: int  # how many of this service run
    port: int
    admin_port: int
    env: dict[str, str]
    relay: bool  # pass the output through relay_output (JSON mode)
    backoff: Backoff = field(default_factory=Backoff)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None  # set while dead, waiting for its back-off
    last_exit: int | None = None
    delay: float = 0.0
    relay_thread: threading.Thread | None = None

    @property
    def labels(self) -> tuple[str, str]:
        return self.service, str(self.replica)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}"],
            env=self.env,
            stdout=subprocess.PIPE if self.relay else None,
            stderr=subprocess.STDOUT if self.relay else None,
            process_group=0,  # Ctrl-C reaches the launcher only; it stops the children
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.relay:
            assert self.process.stdout is not None
            self.relay_thread = threading.Thread(
                target=relay_output,
                args=(self.process.stdout,),
                kwargs={
                    "service": self.service,
                    "replica": self.replica if self.replicas > 1 else None,
                },
                daemon=True,
            )
            self.relay_thread.start()
        UP.labels(*self.labels).set(1)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def describe(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "pid": self.process.pid if self.running() and self.process else None,
            "port": self.port,
            "admin_port": self.admin_port,
            "restarts": self.restarts,
        }


class Supervisor:
    """Keeps every child (and the embedded store) running until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        replicas: Mapping[str, int],
        *,
        relay: bool,
        embedded: EmbeddedMongo | None,
        stop_grace: float,
    ) -> None:
        self.settings = settings
        self.embedded = embedded
        self.store_backoff = Backoff()
        self.store_started_at = time.monotonic()
        self.store_restart_at: float | None = None
        self.store_restarts = 0
        self._store_exit: tuple[int | None, float] = (None, 0.0)
        self.stop_grace = stop_grace
        self.stopping = False
        self.state_file = settings.data_dir / "launcher.json"
        self.children: list[Child] = []
        for service, count in replicas.items():
            for replica in range(count):
                port, admin_port = replica_ports(settings, service, replica)
                child_env = {
                    **env,
                    f"{service.upper()}_PORT": str(port),
                    f"{service.upper()}_ADMIN_PORT": str(admin_port),
                }
                self.children.append(
                    Child(service, replica, count, port, admin_port, child_env, relay)
                )

    def request_stop(self, signum: int, _: FrameType | None) -> None:
        if not self.stopping:
            log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stopping = True

    def write_state(self) -> None:
        store: dict[str, Any] | None = None
        if self.embedded is not None:
            process = self.embedded.process
            alive = process is not None and process.poll() is None
            store = {
                "pid": process.pid if alive and process else None,
                "url": self.embedded.url,
                "restarts": self.store_restarts,
            }
        services: dict[str, list[dict[str, Any]]] = {}
        for child in self.children:
            services.setdefault(child.service, []).append(child.describe())
        state = {"launcher": os.getpid(), "store": store, "services": services}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, indent=1)
        temporary.replace(self.state_file)

    def start_all(self) -> None:
        for child in self.children:
            child.start()
        self.write_state()
        pids: dict[str, list[int]] = {}
        for child in self.children:
            assert child.process is not None
            pids.setdefault(child.service, []).append(child.process.pid)
        log.info("services_started", pids=pids)

    def run(self) -> None:
        """Supervise until ``request_stop``."""
        while not self.stopping:
            changed = self._watch_store()
            for child in self.children:
                changed = self._watch(child) or changed
            if changed:
                self.write_state()
            time.sleep(POLL_SECONDS)

    def _watch(self, child: Child) -> bool:
        now = time.monotonic()
        if child.restart_at is None:
            if child.running():
                return False
            assert child.process is not None
            child.last_exit = child.process.returncode
            child.delay = child.backoff.after_exit(now - child.started_at)
            child.restart_at = now + child.delay
            UP.labels(*child.labels).set(0)
            log.error(
                "service_exited",
                process=child.service,
                replica=child.replica,
                exit_code=child.last_exit,
                restart_in=child.delay,
            )
            return True
        if now < child.restart_at or self.stopping:
            return False
        child.restarts += 1
        child.start()
        RESTARTS.labels(*child.labels).inc()
        assert child.process is not None
        log.warning(
            "service_restarted",
            process=child.service,
            replica=child.replica,
            pid=child.process.pid,
            exit_code=child.last_exit,
            restarts=child.restarts,
            delay=child.delay,
        )
        return True

    def _watch_store(self) -> bool:
        if self.embedded is None:
            return False
        now = time.monotonic()
        process = self.embedded.process
        if self.store_restart_at is None:
            if process is not None and process.poll() is None:
                return False
            exit_code = process.returncode if process is not None else None
            delay = self.store_backoff.after_exit(now - self.store_started_at)
            self.store_restart_at = now + delay
            UP.labels(STORE, "0").set(0)
            log.error("service_exited", process=STORE, exit_code=exit_code, restart_in=delay)
            self._store_exit = (exit_code, delay)
            return True
        if now < self.store_restart_at or self.stopping:
            return False
        exit_code, delay = self._store_exit
        self.store_restarts += 1
        self.store_started_at = time.monotonic()
        try:
            self.embedded.start()  # same port, same data directory
        except RuntimeError as exc:
            log.error("store_start_failed", error=str(exc))
            self.store_restart_at = None  # seen dead again: the next, longer back-off
            return True
        self.store_restart_at = None
        RESTARTS.labels(STORE, "0").inc()
        UP.labels(STORE, "0").set(1)
        assert self.embedded.process is not None
        log.warning(
            "service_restarted",
            process=STORE,
            replica=0,
            pid=self.embedded.process.pid,
            exit_code=exit_code,
            restarts=self.store_restarts,
            delay=delay,
        )
        return True

    def stop_all(self) -> None:
        """SIGTERM every child, SIGKILL what still runs after the grace, then the store."""
        running = [c for c in self.children if c.running()]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service_killed", process=child.service, replica=child.replica)
                child.process.kill()
                child.process.wait()
        for child in self.children:
            if child.relay_thread is not None:
                child.relay_thread.join(timeout=5)
            UP.labels(*child.labels).set(0)
        if self.embedded is not None:
            self.embedded.stop()
            log.info("embedded_store_stopped")
        self.write_state()


def parse_args(argv: Sequence[str] | None, known: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.launcher", description=__doc__)
    parser.add_argument(
        "--replicas",
        action="append",
        default=[os.environ["REPLICAS"]] if os.environ.get("REPLICAS") else [],
        help=f"<service>=<count>[,...] (also REPLICAS); services: {', '.join(known)}",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("LAUNCHER_METRICS_PORT", "8200")),
        help="the launcher's /metrics (restarts); 0: none (also LAUNCHER_METRICS_PORT)",
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=float(os.environ.get("STOP_GRACE_SECONDS", "20")),
        help="seconds between SIGTERM and SIGKILL on stop (also STOP_GRACE_SECONDS)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings()
    json_logs = uses_json(settings.log_format)
    configure_logging(
        service="launcher", fmt="json" if json_logs else "console", level=settings.log_level
    )
    known = programs()
    args = parse_args(argv, known)
    try:
        replicas = parse_replicas(args.replicas, known)
    except ValueError as exc:
        log.error("launcher_misconfigured", error=str(exc))
        return 2
    # Children log as we do (their output is a pipe when relayed, never a terminal).
    env = {**os.environ, "LOG_FORMAT": "json" if json_logs else "console"}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    early: list[int] = []  # a stop asked for while starting: honoured once started

    def stop_early(signum: int, _: FrameType | None) -> None:
        early.append(signum)

    signal.signal(signal.SIGTERM, stop_early)
    signal.signal(signal.SIGINT, stop_early)
    embedded: EmbeddedMongo | None = None
    try:
        if not settings.mongodb_url:
            embedded = EmbeddedMongo(settings.data_dir / "mongo")
            env["MONGODB_URL"] = embedded.start()
            UP.labels(STORE, "0").set(1)
            log.info(
                "embedded_store_started", url=env["MONGODB_URL"], data_dir=str(embedded.data_dir)
            )
        if provision_local_broker(settings):
            log.info("broker_users_provisioned", users_file=str(settings.users_file()))
    except BaseException:
        if embedded is not None:
            embedded.stop()  # never leave the store running without us
        raise
    if args.metrics_port:
        try:
            start_http_server(args.metrics_port, addr=settings.admin_host, registry=REGISTRY)
            log.info("launcher_metrics_listening", port=args.metrics_port)
        except OSError as exc:  # the system runs without them rather than not at all
            log.error("launcher_metrics_unavailable", port=args.metrics_port, error=str(exc))

    supervisor = Supervisor(
        settings, env, replicas, relay=json_logs, embedded=embedded, stop_grace=args.stop_grace
    )
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    if early:
        supervisor.request_stop(early[0], None)
    else:
        supervisor.start_all()
        supervisor.run()
    supervisor.stop_all()
    log.info("system_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
