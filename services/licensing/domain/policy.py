"""The terms licensing decides with: configurable (from settings), given to every decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.basics.catalogue import Catalogue

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Policy:
    """The configurable terms of licensing (from settings), given to every decision."""

    catalogue: Catalogue
    grace: timedelta = timedelta(days=7)
    warning_days: tuple[int, ...] = (30, 7, 1)
    moves_per_window: int = 3
    offline_validity: timedelta = timedelta(days=30)
