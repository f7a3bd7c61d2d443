"""``make run``: the whole system in the foreground.

Starts the embedded MongoDB wire server unless ``MONGODB_URL`` is set, provisions the
broker users on a local RabbitMQ (CONTRACT.md, Identities), then the four services as
separate processes, each connecting as its own user; Ctrl-C or SIGTERM stops them all,
cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from urllib.parse import urlsplit

from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.settings import SERVICES, Settings
from tools import broker_users
from tools.embedded_mongo import EmbeddedMongo

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


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


def main() -> int:
    settings = Settings()
    configure_logging(service="launcher", fmt=settings.log_format, level=settings.log_level)
    log = get_logger("launcher")
    env = dict(os.environ)
    embedded: EmbeddedMongo | None = None
    if not settings.mongodb_url:
        embedded = EmbeddedMongo(settings.data_dir / "mongo")
        env["MONGODB_URL"] = embedded.start()
        log.info("embedded_store_started", url=env["MONGODB_URL"], data_dir=str(embedded.data_dir))
    if provision_local_broker(settings):
        log.info("broker_users_provisioned", users_file=str(settings.users_file()))

    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("stop_requested", signal=signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = {
        name: subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env)
        for name in SERVICES
    }
    log.info("services_started", pids={n: p.pid for n, p in children.items()})
    status = 0
    while not stopping:
        dead = [n for n, p in children.items() if p.poll() is not None]
        if dead:
            log.error("service_exited", services=dead)
            status = 1
            break
        time.sleep(0.2)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in children.items():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log.warning("service_killed", service=name)
            proc.kill()
    if embedded is not None:
        embedded.stop()
    log.info("system_stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
