"""The team's CONTRACT.md, found beside the checkout and read by the unit tests.

The contract lives in the team folder, not in this repository: CI (and every checkout
made the documented way) lays it out as ``<checkout>/../shared/CONTRACT.md``. A test that
needs it fails when it is missing: a silent skip would let a checkout pass without
ever comparing the code with the contract.

- ``TEAM_CONTRACT=<path>`` reads it from elsewhere (another folder layout).
- ``SKIP_TEAM_CONTRACT=<reason>`` skips those tests, saying why (e.g. a machine without
  the team folder); nothing skips them silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT.parent / "shared" / "CONTRACT.md"
PATH_VARIABLE = "TEAM_CONTRACT"
SKIP_VARIABLE = "SKIP_TEAM_CONTRACT"
ROUTING_KEY = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`")


def contract_path() -> Path:
    """Where CONTRACT.md is read from: ``$TEAM_CONTRACT``, else beside the checkout."""
    configured = os.environ.get(PATH_VARIABLE)
    return Path(configured) if configured else DEFAULT_PATH


def read_contract() -> str:
    """CONTRACT.md's text; a test failure when it is missing, a stated skip when opted out."""
    reason = os.environ.get(SKIP_VARIABLE, "").strip()
    if reason:
        pytest.skip(f"CONTRACT.md not checked: {SKIP_VARIABLE}={reason!r}")
    path = contract_path()
    if not path.is_file():
        pytest.fail(
            f"the team contract is not at {path}. Lay the team folder beside the checkout "
            f"(<checkout>/../shared/CONTRACT.md, as CI does), point {PATH_VARIABLE} at "
            f"CONTRACT.md, or set {SKIP_VARIABLE} to the reason for not checking it.",
            pytrace=False,
        )
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class ContractKeys:
    """The routing keys CONTRACT.md names, by kind."""

    commands: frozenset[str]
    queries: frozenset[str]
    events: frozenset[str]


def _section(markdown: str, heading: str) -> list[str]:
    """The lines under the ``## <heading>...`` title, up to the next ``## `` title."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {heading}")), None)
    assert start is not None, f"CONTRACT.md has no '## {heading}' section: did its layout change?"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1 : end]


def _tables(lines: list[str]) -> list[set[str]]:
    """The routing keys in the first column of each markdown table, table by table."""
    tables: list[set[str]] = []
    in_table = False
    for line in lines:
        is_row = line.startswith("|")
        if is_row and not in_table:
            tables.append(set())
        if is_row:
            first_cell = line.strip("|").split("|")[0]
            tables[-1].update(ROUTING_KEY.findall(first_cell))
        in_table = is_row
    return tables


def _first_paragraph(lines: list[str]) -> str:
    paragraph: list[str] = []
    for line in lines:
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            break
    return "\n".join(paragraph)


def routing_keys(markdown: str) -> ContractKeys:
    """Commands (first table of "## Commands"), queries (its second table) and events (the
    first paragraph of "## Events"). Checked for size, so a layout change cannot make the
    tests that use them vacuous."""
    tables = _section(markdown, "Commands")
    parsed = _tables(tables)
    assert len(parsed) == 2, f"expected a command table and a query table, found {len(parsed)}"
    commands, queries = parsed
    events = set(ROUTING_KEY.findall(_first_paragraph(_section(markdown, "Events"))))
    assert len(commands) >= 8, f"parsed too few commands: {sorted(commands)}"
    assert len(queries) >= 4, f"parsed too few queries: {sorted(queries)}"
    assert len(events) >= 20, f"parsed too few events: {sorted(events)}"
    return ContractKeys(frozenset(commands), frozenset(queries), frozenset(events))
