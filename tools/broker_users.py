"""Provision the broker identities (CONTRACT.md, Identities): users, permissions, topic
permissions, all derived from the one table in ``shared.contracts.identities``.

- ``make run`` on a local broker calls ``provision``: random passwords (kept in
  ``DATA_DIR/broker-users.json``, mode 0600, and reused on the next start), imported in
  one ``rabbitmqctl import_definitions`` call (idempotent; definitions go through stdin,
  never through a file another user could read).
- For a broker started elsewhere (docker compose), ``python -m tools.broker_users
  definitions DATA_DIR`` writes the same definitions to ``DATA_DIR/rabbitmq-definitions.json``
  for RabbitMQ's ``load_definitions``, the users file, and ``DATA_DIR/compose.env`` with
  each role's password as ``XO_<ROLE>_AMQP_PASSWORD`` (all 0600) for
  ``docker compose --env-file``.

What each user may touch (names prefixed by ``AMQP_NAMESPACE``):
- a service: declare its own queues ``<service>.*``, the shared exchanges, the
  dead-letter queue and the retry exchange with its delay queues ``reseller.retry.*``;
  publish the events it owns and the commands it sends, replies (default exchange), dead
  letters and retries;
- a web face's role (``storefront``: the reseller space; ``operations``: the operations
  console and CLI) as a service: its own queues ``<role>.*``, its commands and events,
  replies and dead letters; ``operations`` also has the ``management`` tag, so the
  console reads queue depths from RabbitMQ's management API (its own virtual host only);
- ``mailer``: its own queues ``mailer.*`` bound to ``reseller.events``; publishes nothing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.contracts.identities import (
    ROLES,
    SERVICE_ROLES,
    WEB_FACE_ROLES,
    commands_of,
    events_of,
    username,
)
from shared.runtime.identity import Credentials, read_users, write_users
from shared.runtime.settings import Settings
from shared.runtime.topology import COMMANDS, DEAD_LETTERS_EXCHANGE, EVENTS

NOTHING = "^$"
Definitions = dict[str, Any]


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _any_of(names: Iterable[str]) -> str:
    escaped = [re.escape(name) for name in names]
    return "^(" + "|".join(escaped) + ")$" if escaped else NOTHING


def permissions(role: str, namespace: str) -> dict[str, str]:
    """RabbitMQ's configure / write / read regexes on resource names for ``role``."""
    ns = re.escape(namespace)
    # The shared exchanges, the dead-letter queue, and the retry exchange with its delay
    # queues ``reseller.retry.<delay>`` (every service declares, binds and publishes to
    # them; RabbitMQ moves a retry back to its queue when the delay has passed).
    shared_names = f"{ns}reseller\\.(commands|events|dlx|dead-letters|retry(\\.[^.]+)?)"
    if role in (*SERVICE_ROLES, *WEB_FACE_ROLES):  # a web face consumes like a service
        own = f"{ns}{re.escape(role)}\\..+"
        return {
            "configure": f"^({shared_names}|{own})$",
            "write": f"^({shared_names}|{own}|amq\\.default)$",
            "read": f"^({shared_names}|{own})$",
        }
    if role == "mailer":
        own = f"{ns}mailer\\..+"
        return {
            "configure": f"^{own}$",
            "write": f"^{own}$",
            "read": f"^({own}|{ns}reseller\\.events)$",
        }
    # any other outside role: send commands, read their replies (direct reply-to)
    return {"configure": NOTHING, "write": f"^{ns}reseller\\.commands$", "read": NOTHING}


def topic_permissions(role: str, namespace: str) -> list[dict[str, str]]:
    """Which routing keys ``role`` may publish on each topic exchange (nothing else)."""
    return [
        {"exchange": namespace + COMMANDS, "write": _any_of(commands_of(role)), "read": ".*"},
        {"exchange": namespace + EVENTS, "write": _any_of(events_of(role)), "read": ".*"},
        {
            "exchange": namespace + DEAD_LETTERS_EXCHANGE,
            "write": ".*" if role in (*SERVICE_ROLES, *WEB_FACE_ROLES) else NOTHING,
            "read": ".*",
        },
    ]


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    users: dict[str, Credentials], *, vhost: str, namespace: str, roles: Iterable[str] = ROLES
) -> Definitions:
    """The RabbitMQ definitions document creating ``vhost`` and every role's user."""
    wanted = [role for role in roles if role in users]
    return {
        "vhosts": [{"name": vhost}],
        "users": [
            {
                "name": users[role].username,
                "password_hash": password_hash(users[role].password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["management"] if role == "operations" else [],
            }
            for role in wanted
        ],
        "permissions": [
            {"user": users[role].username, "vhost": vhost, **permissions(role, namespace)}
            for role in wanted
        ],
        "topic_permissions": [
            {"user": users[role].username, "vhost": vhost, **topic}
            for role in wanted
            for topic in topic_permissions(role, namespace)
        ],
    }


def credentials_for(
    users_file: Path, *, prefix: str, roles: Sequence[str] = ROLES
) -> dict[str, Credentials]:
    """The users file's credentials, completed with random passwords for missing roles
    and written back (0600): a second start reuses the same passwords."""
    users = read_users(users_file) if users_file.exists() else {}
    changed = False
    for role in roles:
        if role not in users or users[role].username != username(prefix, role):
            users[role] = Credentials(
                username=username(prefix, role), password=secrets.token_urlsafe(24)
            )
            changed = True
    if changed or not users_file.exists():
        write_users(users_file, users)
    return users


def rabbitmqctl() -> str | None:
    """The ``rabbitmqctl`` to provision with: ``RABBITMQCTL`` when set (a wrapper naming
    another node, as the cluster fault test's local cluster does), else the one on PATH."""
    return os.environ.get("RABBITMQCTL") or shutil.which("rabbitmqctl")


#: One ``rabbitmqctl`` at a time on this machine, whichever process asks: concurrent
#: ``import_definitions`` calls wedged a RabbitMQ 3.10 node here (each hung at
#: "Importing concurrently N users", then the node stopped answering AMQP handshakes).
CTL_LOCK = Path(tempfile.gettempdir()) / "xo-reseller-rabbitmqctl.lock"
CTL_TIMEOUT_SECONDS = 60.0


def run_ctl(
    args: Sequence[str], *, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``rabbitmqctl args`` under the machine-wide lock, in its own process group: on a
    timeout the whole group (``su``, ``sh``, the Erlang VM) is killed, never left holding
    the node's CLI ports."""
    ctl = rabbitmqctl()
    if ctl is None:
        raise RuntimeError("rabbitmqctl not found: provision the broker users yourself")
    with CTL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = subprocess.Popen(
            [ctl, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(stdin, timeout=CTL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return subprocess.CompletedProcess([ctl, *args], process.returncode, out, err)


def import_definitions(document: Definitions) -> None:
    """Load definitions into the local node (idempotent: existing users are updated)."""
    done = run_ctl(["import_definitions"], stdin=json.dumps(document).encode())
    done.check_returncode()


def provision(
    *, amqp_url: str, namespace: str, prefix: str, users_file: Path, roles: Sequence[str] = ROLES
) -> dict[str, Credentials]:
    """Create (or update) every role's user on the local broker; returns the credentials."""
    users = credentials_for(users_file, prefix=prefix, roles=roles)
    import_definitions(
        definitions(users, vhost=vhost_of(amqp_url), namespace=namespace, roles=roles)
    )
    return users


def delete_users(users: Iterable[Credentials]) -> None:
    """Remove users (test sessions clean up after themselves)."""
    if rabbitmqctl() is None:
        return
    for user in users:
        run_ctl(["delete_user", user.username])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.broker_users", description=__doc__)
    parser.add_argument("action", choices=["provision", "definitions"])
    parser.add_argument("data_dir", type=Path, nargs="?", help="default: DATA_DIR")
    args = parser.parse_args(argv)
    settings = Settings()
    data_dir = args.data_dir or settings.data_dir
    users_file = settings.broker_users_file or data_dir / "broker-users.json"
    if args.action == "provision":
        provision(
            amqp_url=settings.amqp_url,
            namespace=settings.amqp_namespace,
            prefix=settings.amqp_user_prefix,
            users_file=users_file,
        )
        print(f"provisioned {len(ROLES)} broker users; credentials in {users_file}")
        return 0
    users = credentials_for(users_file, prefix=settings.amqp_user_prefix)
    target = data_dir / "rabbitmq-definitions.json"
    target.touch(mode=0o600)
    document = definitions(
        users, vhost=vhost_of(settings.amqp_url), namespace=settings.amqp_namespace
    )
    target.write_text(json.dumps(document, indent=2) + "\n")
    env_file = data_dir / "compose.env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        "".join(f"XO_{r.upper()}_AMQP_PASSWORD={c.password}\n" for r, c in users.items())
    )
    print(f"wrote {target}, {env_file} and {users_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
