"""``make run``: the whole system in the foreground.

Starts the embedded MongoDB wire server unless ``MONGODB_URL`` is set, then the four
services as separate processes; Ctrl-C or SIGTERM stops them all, cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.settings import SERVICES, Settings
from tools.embedded_mongo import EmbeddedMongo


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
