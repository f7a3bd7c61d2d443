"""A three-node RabbitMQ cluster on this machine, behind one endpoint (HAProxy).

The cluster fault test (tests/faults/test_cluster.py) needs brokers it may SIGKILL: the
machine's RabbitMQ on 5672 is shared and never touched. So each node here is the
machine's own ``rabbitmq-server`` started under another name (``xo-c1@localhost``...),
on other ports (AMQP 5701-5703, management + 10000, distribution + 20000), with its data,
logs, config and Erlang cookie under a directory of its own. Nodes 2 and 3 join node 1;
HAProxy listens on one AMQP port (5700) and one management port (15700) and sends each
new connection to the next live node (checked every second; the sessions of a node
marked down are cut at once, and a connection the dead node refuses before its checks
fail is redispatched to another node). HAProxy rather than a proxy of our own: it is what the
compose cluster variant runs (deploy/haproxy/haproxy.cfg), and Debian packages it
(``scripts/ensure-cluster-tools``).

Every process is started by ``LocalCluster`` and only those pids are ever signalled.
``rabbitmqctl`` for this cluster is ``LocalCluster.ctl_script``, a wrapper the launcher
uses through ``RABBITMQCTL`` (tools.broker_users) to provision the broker users here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # Debian: /usr/sbin's wrappers su to rabbitmq
MANAGEMENT_OFFSET = 10000  # as RabbitMQ's defaults: AMQP 5672, management 15672
DIST_OFFSET = 20000  # and distribution 25672
START_SECONDS = 120.0


def _tool(name: str) -> str:
    real = RABBITMQ_BIN / name
    if real.exists():
        return str(real)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/ensure-cluster-tools")
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Node:
    """One RabbitMQ node of the cluster, its files under ``home``."""

    name: str  # e.g. xo-c1@localhost
    amqp_port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def management_port(self) -> int:
        return self.amqp_port + MANAGEMENT_OFFSET

    @property
    def pid_file(self) -> Path:
        return self.home / "rabbitmq.pid"

    def beam_pid(self) -> int | None:
        """The Erlang VM's pid (the wrapper script's child), from the node's pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        mine = f"RABBITMQ_NODENAME={self.name}".encode() in environ
        return pid if mine else None  # a recycled pid is never signalled

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """Three local nodes of one cluster and HAProxy in front (see the module docstring)."""

    workdir: Path
    endpoint_port: int = 5700
    first_port: int = 5701
    size: int = 3
    prefix: str = "xo-c"
    nodes: list[Node] = field(default_factory=list)
    proxy: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.cookie = secrets.token_hex(20)
        self.nodes = [
            Node(f"{self.prefix}{k + 1}@localhost", self.first_port + k, self.workdir / f"n{k + 1}")
            for k in range(self.size)
        ]

    # --- what the tests use ----------------------------------------------------------

    @property
    def url(self) -> str:
        """The one endpoint (HAProxy), as ``guest`` on ``/`` (the cluster is ours alone)."""
        return f"amqp://guest:guest@127.0.0.1:{self.endpoint_port}/"

    def node_url(self, node: Node) -> str:
        """One node directly, bypassing the endpoint."""
        return f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"

    @property
    def ctl_script(self) -> Path:
        return self.workdir / "rabbitmqctl"

    def ctl(
        self, node: Node, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_tool("rabbitmqctl"), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def leaders(self) -> Counter[str]:
        """How many queues each node leads (quorum queues; management API of a live node)."""
        live = next(node for node in self.nodes if node.running())
        listed = httpx.get(
            f"http://127.0.0.1:{live.management_port}/api/queues",
            params={"columns": "name,leader,node"},
            auth=("guest", "guest"),
            timeout=30,
        )
        listed.raise_for_status()
        return Counter(row.get("leader") or row.get("node") for row in listed.json())

    def kill(self, node: Node) -> int:
        """SIGKILL the node's Erlang VM (its pid only: the machine's broker is untouched)."""
        pid = node.beam_pid()
        assert pid is not None, f"{node.name} is not running"
        os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            node.process.wait(timeout=30)  # the wrapper script exits with its VM
        return pid

    def restart(self, node: Node) -> None:
        """Start a stopped node again, same name and data: it rejoins the cluster."""
        self._launch(node)
        self._await(node)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        taken = [
            port
            for node in self.nodes
            for port in (node.amqp_port, node.management_port, node.amqp_port + DIST_OFFSET)
        ] + [self.endpoint_port, self.endpoint_port + MANAGEMENT_OFFSET]
        busy = [port for port in taken if not _bindable(port)]
        if busy:
            raise RuntimeError(f"ports already in use: {busy} (another cluster run?)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cookie = self.workdir / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        self._write_ctl_script()
        for node in self.nodes:
            self._configure(node)
            self._launch(node)
        for node in self.nodes:
            self._await(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        self.ctl(first, "await_online_nodes", str(self.size), "--timeout", "120")
        self._start_proxy()

    def stop(self) -> None:
        """Stop HAProxy and every node this cluster started (nothing else)."""
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        for node in self.nodes:
            if not node.running():
                continue
            with suppress(subprocess.TimeoutExpired):
                self.ctl(node, "stop", timeout=60, check=False)
            pid = node.beam_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            assert node.process is not None
            if node.process.poll() is None:
                node.process.kill()
            node.process.wait(timeout=30)

    # --- internals -------------------------------------------------------------------

    def _env(self, node: Node) -> dict[str, str]:
        home = node.home
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),  # .erlang.cookie: the cluster's own
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.amqp_port + DIST_OFFSET),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),  # not /etc's
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _configure(self, node: Node) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        (node.home / "rabbitmq-env.conf").write_text("")
        (node.home / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (node.home / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {node.management_port}",
                    # a lone node never serves a minority: it pauses until it sees the others
                    "cluster_partition_handling = pause_minority",
                    "loopback_users = none",
                    "log.console = false",
                    "log.file.level = info",
                    "",
                ]
            )
        )

    def _launch(self, node: Node) -> None:
        log = (node.home / "stdout.log").open("ab")
        with log:
            node.process = subprocess.Popen(
                [_tool("rabbitmq-server")],
                env=self._env(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is not theirs
            )

    def _await(self, node: Node) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if not node.running():
                raise RuntimeError(f"{node.name} exited; see {node.home / 'log'}")
            done = self.ctl(node, "await_startup", "--timeout", "10", timeout=30, check=False)
            if done.returncode == 0 and node.beam_pid() is not None:
                return
            time.sleep(1)
        raise RuntimeError(f"{node.name} did not start within {START_SECONDS} s")

    def _write_ctl_script(self) -> None:
        """``rabbitmqctl`` talking to this cluster (node 1 unless ``-n`` says otherwise)."""
        env = self._env(self.nodes[0])
        exports = " ".join(f"{k}='{env[k]}'" for k in ("HOME", "RABBITMQ_CONF_ENV_FILE"))
        self.ctl_script.write_text(
            f'#!/bin/sh\n{exports} exec {_tool("rabbitmqctl")} -n {self.nodes[0].name} "$@"\n'
        )
        self.ctl_script.chmod(0o700)

    def _start_proxy(self) -> None:
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy not found: run scripts/ensure-cluster-tools")
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self))
        log = (self.workdir / "haproxy.log").open("ab")
        with log:
            self.proxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while _bindable(self.endpoint_port):
            if self.proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start; see {self.workdir / 'haproxy.log'}")
            time.sleep(0.2)


def haproxy_config(cluster: LocalCluster) -> str:
    """HAProxy in TCP mode, as deploy/haproxy/haproxy.cfg with local addresses."""

    def servers(offset: int) -> str:
        return "".join(
            f"  server {node.name.split('@')[0]} 127.0.0.1:{node.amqp_port + offset} check\n"
            for node in cluster.nodes
        )

    return (
        "global\n"
        "  maxconn 4096\n"
        "defaults\n"
        "  mode tcp\n"
        "  timeout connect 2s\n"
        "  timeout client 3h\n"
        "  timeout server 3h\n"
        "  retries 2\n"
        "  option redispatch 1\n"
        "  default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions\n"
        "listen amqp\n"
        f"  bind 127.0.0.1:{cluster.endpoint_port}\n"
        "  balance roundrobin\n"
        f"{servers(0)}"
        "listen management\n"
        f"  bind 127.0.0.1:{cluster.endpoint_port + MANAGEMENT_OFFSET}\n"
        "  balance roundrobin\n"
        f"{servers(MANAGEMENT_OFFSET)}"
    )


@contextmanager
def local_cluster(workdir: Path) -> Iterator[LocalCluster]:
    """A started cluster, stopped at the end whatever happened."""
    cluster = LocalCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
