"""The embedded default store: nx-27017, a MongoDB wire-protocol server over SQLite.

Started when ``MONGODB_URL`` is unset, on a free port with its data under
``DATA_DIR``; the same product code then runs on it as on a real MongoDB.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

_START = "import sys; from nx_27017.nx_27017 import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _private(path: Path) -> Path:
    """``path``, created owner-only if it does not exist yet."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    return path


class EmbeddedMongo:
    """One nx-27017 process; ``start()`` returns its URL once it answers ping."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> str:
        # The store holds order lines, customers' emails and proofs: owner-only, like every
        # file it creates (umask 077 in the server process).
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        pid_file = self.data_dir / "nx-27017.pid"
        pid_file.unlink(missing_ok=True)  # a stale pid file from a killed run must not block us
        log_file = self.data_dir / "nx-27017.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _START,
                "--data-dir",
                str(self.data_dir / "db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-file",
                str(log_file),
                "--pid-file",
                str(pid_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=_private(self.data_dir / "nx-27017.stderr").open("ab"),
            umask=0o077,
            process_group=0,  # Ctrl-C reaches whoever started it, who stops it last
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nx-27017 exited with {self.process.returncode}; see {log_file}"
                )
            try:
                client: MongoClient[dict[str, object]]
                with MongoClient(self.url, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return self.url
            except PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nx-27017 did not answer ping within {timeout}s; see {log_file}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
