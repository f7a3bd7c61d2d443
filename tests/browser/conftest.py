"""Browser tests: the reseller space in Debian's Chromium (tests/browser/harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.runtime.settings import Settings
from tests.browser.harness import SCREENSHOTS, Web, web_system


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[Web]:
    proof_limit = settings.model_copy(update={"proof_max_bytes": 256 * 1024})
    async with web_system(proof_limit) as running:
        yield running


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.exists() else []
    if shots:
        terminalreporter.write_line(f"browser screenshots ({len(shots)}): {SCREENSHOTS}/")
