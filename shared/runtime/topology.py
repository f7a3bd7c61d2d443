"""The broker topology (CONTRACT.md, Conventions; DESIGN.md, Stack).

- ``reseller.commands`` and ``reseller.events``: durable topic exchanges, routing key =
  message name.
- One durable **quorum queue per (service, routing key)**, named
  ``<service>.<routing key>``: operations see the depth of each command and event
  stream separately, and one poison stream never blocks another.
- Every queue dead-letters to ``reseller.dlx`` with a delivery limit, so a message
  that keeps failing ends in ``reseller.dead-letters`` instead of looping.

A namespace prefix (empty in production) keeps concurrent test runs apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

from shared.contracts import Command, Message

COMMANDS = "reseller.commands"
EVENTS = "reseller.events"
DEAD_LETTERS_EXCHANGE = "reseller.dlx"
DEAD_LETTERS_QUEUE = "reseller.dead-letters"


@dataclass(frozen=True)
class Topology:
    namespace: str = ""
    delivery_limit: int = 5

    def exchange(self, name: str) -> RabbitExchange:
        return RabbitExchange(self.namespace + name, type=ExchangeType.TOPIC, durable=True)

    @property
    def commands(self) -> RabbitExchange:
        return self.exchange(COMMANDS)

    @property
    def events(self) -> RabbitExchange:
        return self.exchange(EVENTS)

    @property
    def dead_letters(self) -> RabbitExchange:
        return self.exchange(DEAD_LETTERS_EXCHANGE)

    def exchange_of(self, message: type[Message]) -> RabbitExchange:
        """Commands and queries travel on ``reseller.commands``, events on ``reseller.events``."""
        return self.commands if issubclass(message, Command) else self.events

    def queue(self, service: str, routing_key: str) -> RabbitQueue:
        """The quorum queue through which ``service`` consumes ``routing_key``."""
        return RabbitQueue(
            f"{self.namespace}{service}.{routing_key}",
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=routing_key,
            arguments={
                "x-dead-letter-exchange": self.namespace + DEAD_LETTERS_EXCHANGE,
                "x-delivery-limit": self.delivery_limit,
            },
        )

    def dead_letter_queue(self) -> RabbitQueue:
        """Where every dead letter of every service lands, whatever its routing key."""
        return RabbitQueue(
            self.namespace + DEAD_LETTERS_QUEUE,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key="#",
        )

    async def declare(self, broker: RabbitBroker) -> None:
        """Declare the exchanges and the dead-letter queue (idempotent)."""
        for exchange in (self.commands, self.events, self.dead_letters):
            await broker.declare_exchange(exchange)
        dlq = await broker.declare_queue(self.dead_letter_queue())
        await dlq.bind(self.namespace + DEAD_LETTERS_EXCHANGE, routing_key="#")
