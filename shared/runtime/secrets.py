"""Secrets are read from the environment or generated at first start, never stored in the repo."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def env_or_generated(value: str | None, path: Path, generate: Callable[[], str]) -> str:
    """``value`` if set; else the secret kept in ``path``, generated there (mode 0600) once.

    Replicas of a service may start together: the secret is written whole to a private
    temporary file, then linked to ``path`` (atomic, and refused if ``path`` exists), so
    a process never reads a half-written or empty secret, and all agree on the first one."""
    if value:
        return value
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = generate()
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        os.link(temporary, path)
    except FileExistsError:  # another process of the service linked its secret first
        return path.read_text().strip()
    finally:
        os.unlink(temporary)
    return secret
