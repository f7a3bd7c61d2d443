"""The broker identity a process connects with (CONTRACT.md, Identities).

Credentials come from one of two places, never from a silent default:
- ``BROKER_USERS_FILE`` (default ``DATA_DIR/broker-users.json``, mode 0600), written when
  the users are provisioned (``make run`` on a local broker, or the operator):
  ``{"<role>": {"username": "...", "password": "..."}, ...}``; the broker's address and
  virtual host still come from ``AMQP_URL``;
- or, when that file does not exist, ``AMQP_URL`` itself (a container given its own
  user's URL).

Either way the process must end up connected as ``<AMQP_USER_PREFIX><role>``: a service
that would connect as anyone else (``guest``...) refuses to start, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, TypeAdapter

from shared.contracts.identities import username


class Credentials(BaseModel):
    username: str
    password: str


USERS_FILE = TypeAdapter(dict[str, Credentials])


class IdentityError(RuntimeError):
    """The process has no usable broker identity: it must not start."""


def read_users(path: Path) -> dict[str, Credentials]:
    return USERS_FILE.validate_json(path.read_bytes())


def write_users(path: Path, users: dict[str, Credentials]) -> None:
    """Write the users file with mode 0600 (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps({r: c.model_dump() for r, c in users.items()}, indent=2) + "\n")
    tmp.replace(path)


def with_credentials(amqp_url: str, credentials: Credentials) -> str:
    """``amqp_url`` (scheme, host, port, vhost, query) with these credentials."""
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def user_of(amqp_url: str) -> str:
    """The user name an AMQP URL connects as (``guest`` when it names none)."""
    return unquote(urlsplit(amqp_url).username or "guest")


@dataclass(frozen=True)
class BrokerIdentity:
    """Who this process is on the broker: the URL it connects with, and its user name,
    which it sets as ``user_id`` on everything it publishes."""

    role: str
    url: str
    user_id: str

    @classmethod
    def resolve(cls, *, role: str, amqp_url: str, prefix: str, users_file: Path) -> BrokerIdentity:
        expected = username(prefix, role)
        if users_file.exists():
            users = read_users(users_file)
            if role not in users:
                raise IdentityError(f"{users_file} has no credentials for {role!r}")
            url = with_credentials(amqp_url, users[role])
        else:
            url = amqp_url
        actual = user_of(url)
        if actual != expected:
            raise IdentityError(
                f"{role} must connect to RabbitMQ as {expected!r}, not {actual!r}: provision "
                f"the users (`make run` does it on a local broker) and give {users_file}, "
                f"or put {expected!r}'s credentials in AMQP_URL"
            )
        return cls(role=role, url=url, user_id=actual)
