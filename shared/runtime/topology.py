"""The broker topology (CONTRACT.md, Conventions; DESIGN.md, Stack).

- ``reseller.commands`` and ``reseller.events``: durable topic exchanges, routing key =
  message name.
- One durable **quorum queue per (service, routing key)**, named
  ``<service>.<routing key>``: operations see the depth of each command and event
  stream separately, and one poison stream never blocks another.
- **Retries**: a message whose handling failed for a transient reason is published again,
  through ``reseller.retry`` (a headers exchange), into one of a small fixed set of delay
  queues ``reseller.retry.<delay>`` (quorum, ``x-message-ttl`` = the delay). When the delay
  has passed RabbitMQ dead-letters it (at least once) to the default exchange with its
  routing key, which is the name of the queue it failed in: back where it came from.
- Every consumed queue dead-letters to ``reseller.dlx`` with a delivery limit (a message
  that crashes its consumer again and again ends in ``reseller.dead-letters`` instead of
  looping); the runtime dead-letters refused and exhausted messages there itself.

A namespace prefix (empty in production) keeps concurrent test runs apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

from shared.contracts import Command, Message

COMMANDS = "reseller.commands"
EVENTS = "reseller.events"
DEAD_LETTERS_EXCHANGE = "reseller.dlx"
DEAD_LETTERS_QUEUE = "reseller.dead-letters"
RETRY_EXCHANGE = "reseller.retry"
#: The header ``reseller.retry`` routes on: which delay queue a retry waits in.
RETRY_DELAY_HEADER = "retry-delay"
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)


def delay_label(seconds: float) -> str:
    """A delay as it appears in a queue name: ``200ms``, ``5s``, ``2m``."""
    ms = max(1, round(seconds * 1000))
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def delay_queue_names(namespace: str, delays: Sequence[float]) -> list[str]:
    """The delay queues of these delays (also what test and bench clean-ups delete)."""
    return [f"{namespace}{RETRY_EXCHANGE}.{delay_label(d)}" for d in dict.fromkeys(delays)]


@dataclass(frozen=True)
class Topology:
    namespace: str = ""
    delivery_limit: int = 5
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS

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

    @property
    def retry(self) -> RabbitExchange:
        return RabbitExchange(
            self.namespace + RETRY_EXCHANGE, type=ExchangeType.HEADERS, durable=True
        )

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

    def retry_delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1, 2, ...): the last delay repeats."""
        return self.retry_delays[min(max(attempt, 1), len(self.retry_delays)) - 1]

    def delay_queue(self, seconds: float) -> RabbitQueue:
        """Where a retry waits ``seconds``; then RabbitMQ dead-letters it (at least once) to
        the default exchange with its routing key: the name of the queue it came from."""
        return RabbitQueue(
            delay_queue_names(self.namespace, [seconds])[0],
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments={
                "x-message-ttl": max(1, round(seconds * 1000)),
                "x-dead-letter-exchange": "",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
            },
        )

    def delay_queues(self) -> list[RabbitQueue]:
        return [self.delay_queue(d) for d in dict.fromkeys(self.retry_delays)]

    def queue_names(self, consumers: Iterable[str], routing_keys: Iterable[str]) -> list[str]:
        """Every queue this topology may hold for these consumers: one per (consumer,
        routing key), the dead letters, the delay queues. Where no listing API answers
        (RabbitMQ's management plugin off), passive declarations of these names find the
        queues that exist (the console's queues page, the fault tests' "quiet" check)."""
        keys = sorted(routing_keys)
        return [
            *(self.queue(consumer, key).name for consumer in consumers for key in keys),
            self.dead_letter_queue().name,
            *(queue.name for queue in self.delay_queues()),
        ]

    async def declare(self, broker: RabbitBroker) -> None:
        """Declare the exchanges, the dead-letter queue and the delay queues (idempotent)."""
        for exchange in (self.commands, self.events, self.dead_letters, self.retry):
            await broker.declare_exchange(exchange)
        dlq = await broker.declare_queue(self.dead_letter_queue())
        await dlq.bind(self.namespace + DEAD_LETTERS_EXCHANGE, routing_key="#")
        for seconds in dict.fromkeys(self.retry_delays):
            queue = await broker.declare_queue(self.delay_queue(seconds))
            await queue.bind(
                self.retry.name,
                routing_key="",
                arguments={"x-match": "all", RETRY_DELAY_HEADER: delay_label(seconds)},
            )
