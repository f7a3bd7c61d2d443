"""System-wide messages."""

from __future__ import annotations

from shared.contracts.base import ErrorBody, Event


class CommandRejected(Event):
    """``command.rejected``: a command sent without ``reply_to`` was refused."""

    ROUTING_KEY = "command.rejected"
    command: str
    message_id: str | None
    error: ErrorBody
