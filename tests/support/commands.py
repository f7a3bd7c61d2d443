"""The store commands a client sends, to assert how many a path takes (not how long)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


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


@contextlib.asynccontextmanager
async def logged_database(
    mongo_url: str, prefix: str
) -> AsyncIterator[tuple[CommandLog, AsyncDatabase[Document]]]:
    """A fresh database on the store server, through a client that logs every command it
    sends; dropped afterwards."""
    log = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, event_listeners=[log])
    name = f"{prefix}_{uuid4().hex[:10]}"
    try:
        yield log, client[name]
    finally:
        await client.drop_database(name)
        await client.close()
