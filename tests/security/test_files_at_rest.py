"""Secrets and data at rest are owner-only (issue: hardened edges)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from tools.broker_users import credentials_for
from tools.embedded_mongo import EmbeddedMongo


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_the_embedded_stores_files_are_owner_only(tmp_path: Path) -> None:
    store = EmbeddedMongo(tmp_path / "mongo")
    url = store.start()
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(url)
        with client:
            client["xo_orders"]["order_lines"].insert_one({"_id": "ol_1", "email": "a@b.c"})
    finally:
        store.stop()
    modes = _modes(tmp_path / "mongo")
    assert any(name.endswith(".db") for name in modes), modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_the_broker_users_file_is_owner_only_and_kept_across_starts(tmp_path: Path) -> None:
    path = tmp_path / "data" / "broker-users.json"
    first = credentials_for(path, prefix="xo-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = credentials_for(path, prefix="xo-")
    assert again == first  # a restart reuses the passwords
    assert first["orders"].username == "xo-orders"
    assert len({c.password for c in first.values()}) == len(first)  # one secret each
