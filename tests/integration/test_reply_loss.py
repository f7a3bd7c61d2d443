"""A reply that cannot be published is dropped, never a reason to handle the message again
(shared/runtime/messaging.py, ``Bus._reply``).

On RabbitMQ 3.10 a reply to a requester whose cluster node has died closes the replying
connection (541 INTERNAL_ERROR) until that node is back: retried through the delay queues,
such a message brought its service's publishing link down again at every attempt for the
whole outage (seen in tests/faults/test_cluster.py: 22 times in 95 s), and an outage longer
than the retries would have dead-lettered it. The requester resends when no answer comes;
the inbox answers the resend.
"""

from __future__ import annotations

from uuid import uuid4

import aio_pika
import pytest

from shared.contracts.quotes import RequestQuote
from shared.runtime.link import BrokerUnavailable
from shared.runtime.messaging import Delivery, Route
from shared.runtime.settings import Settings
from tests.integration.test_messaging import (
    QUOTE_REQUEST,
    QuoteCount,
    no_dead_letter,
    retrying,
    stand_in,
)

pytestmark = pytest.mark.integration


async def test_a_reply_that_cannot_be_published_is_dropped_and_the_resend_gets_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[str] = []

    async def count(_: RequestQuote, delivery: Delivery) -> QuoteCount:
        handled.append(delivery.message_id)
        return QuoteCount(count=len(handled), publisher=delivery.publisher)

    route = Route(RequestQuote, count)
    async with stand_in(retrying(settings, total=60), "quotes", route) as (runtime, client):
        link = runtime.bus.link
        publish = link.publish
        published: list[str] = []
        lost: list[str] = []

        async def first_reply_lost(exchange: str, message: aio_pika.Message, key: str) -> None:
            published.append(exchange)
            if exchange == "" and not lost:
                lost.append(key)
                raise BrokerUnavailable("default exchange: ConnectionInternalError: 541")
            await publish(exchange, message, key)

        monkeypatch.setattr(link, "publish", first_reply_lost)
        message_id = str(uuid4())
        with pytest.raises(TimeoutError):  # no retry answers it meanwhile
            await client.request("quote.request", QUOTE_REQUEST, message_id=message_id, timeout=3)
        resent = await client.request("quote.request", QUOTE_REQUEST, message_id=message_id)
        assert await no_dead_letter(client)
    assert handled == [message_id]  # handled once; the resend was answered by the inbox
    assert resent["ok"] is True and resent["result"]["count"] == 1
    assert len(lost) == 1
    assert runtime.topology.retry.name not in published  # no retry copy was scheduled
