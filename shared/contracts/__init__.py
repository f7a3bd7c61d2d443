"""The public messages of xo-reseller, one pydantic model per message (CONTRACT.md).

Importing this package registers every message in ``Message.REGISTRY`` (routing key
-> model), from which the AsyncAPI document is generated.
"""

from shared.contracts import (
    api_keys,
    credits,
    licensing,
    operations,
    orders,
    partners,
    quotes,
    system,
)
from shared.contracts.base import Command, ErrorBody, Event, Message, Query, Reply

REGISTRY = Message.REGISTRY

__all__ = [
    "REGISTRY",
    "Command",
    "ErrorBody",
    "Event",
    "Message",
    "Query",
    "Reply",
    "api_keys",
    "credits",
    "licensing",
    "operations",
    "orders",
    "partners",
    "quotes",
    "system",
]
