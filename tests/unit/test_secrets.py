"""Generated secrets (README, Secrets): the environment wins; otherwise the first process
to generate one writes it whole, and every process, replicas starting together included,
reads that same non-empty secret."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

from shared.runtime.secrets import env_or_generated


def test_the_environment_wins_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert env_or_generated("from-env", path, lambda: "generated") == "from-env"
    assert not path.exists()


def test_a_generated_secret_is_kept_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token"
    first = env_or_generated(None, path, lambda: "s3cret")
    assert first == "s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env_or_generated(None, path, lambda: "another") == "s3cret"
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temporary left behind


def test_processes_starting_together_all_read_the_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "token"
    numbers = count()

    def slow_secret() -> str:
        return f"secret-{next(numbers)}-" + "x" * 100_000  # long enough to be caught mid-write

    with ThreadPoolExecutor(max_workers=16) as pool:
        seen = list(pool.map(lambda _: env_or_generated(None, path, slow_secret), range(64)))
    assert len(set(seen)) == 1 and seen[0].startswith("secret-")
    assert path.read_text().strip() == seen[0]
