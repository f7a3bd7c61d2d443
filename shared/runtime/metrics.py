"""Prometheus metrics shared by every service (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "xo_messages_total",
    "Messages consumed, by routing key and outcome (ok, refused, invalid, duplicate, failed).",
    ["service", "routing_key", "outcome"],
)
HANDLING_SECONDS = Histogram(
    "xo_message_handling_seconds",
    "Time to handle one message, from delivery to ack.",
    ["service", "routing_key"],
)
EVENTS_PUBLISHED = Counter(
    "xo_events_published_total", "Events published from the outbox.", ["service", "routing_key"]
)
OUTBOX_REMOVALS = Counter(
    "xo_outbox_removals_total",
    "Documents whose published events were removed after a publication at save, by how: "
    "by the aggregate's next save (next_save) or in one write with others (together).",
    ["how"],
)
EVENTS_PUBLISHED_AT_SAVE = Counter(
    "xo_events_published_at_save_total",
    "Events published by the save that stored them (the rest: by the relay's passes, "
    "after a crash, a failure, or a claim another replica held).",
)
DEAD_LETTERED = Counter(
    "xo_dead_lettered_total", "Messages dead-lettered with a reason.", ["service", "routing_key"]
)
REPLIES_DROPPED = Counter(
    "xo_replies_dropped_total",
    "Replies that could not be published (the requester sends again and gets the same one).",
    ["service"],
)
HTTP_REQUESTS = Counter(
    "xo_http_requests_total", "HTTP requests, by route and status.", ["service", "route", "status"]
)
SAVE_CONFLICTS = Counter(
    "xo_save_conflicts_total",
    "Optimistic saves that lost a race and were decided again, by aggregate.",
    ["aggregate"],
)
CREDIT_SHORTFALL = Counter(
    "xo_credit_shortfall_cents_total",
    "Credit an order was priced with but the balance no longer held when its orphaned "
    "reservation was revived (needs an operator: should stay 0).",
)
