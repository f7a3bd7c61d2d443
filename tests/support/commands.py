"""The store commands a client sends, to assert how many a path takes (not how long)."""

from __future__ import annotations

from typing import Any

from pymongo import monitoring


class CommandLog(monitoring.CommandListener):
    """Every command the client sends, as ``(name, collection)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
