"""Secrets are read from the environment or generated at first start, never stored in the repo."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def env_or_generated(value: str | None, path: Path, generate: Callable[[], str]) -> str:
    """``value`` if set; else the secret kept in ``path``, generated there (mode 0600) once."""
    if value:
        return value
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the service generated it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
