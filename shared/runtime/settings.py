"""Configuration from the environment, read once per process.

Every knob that differs between a laptop, CI and production lives here, so that
services never read ``os.environ`` themselves.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.identities import SERVICE_ROLES

#: The domain services the launcher runs, each as its own process and broker user.
SERVICES: tuple[str, ...] = SERVICE_ROLES
#: The web faces the launcher also runs, each a process with a broker role of its own
#: (``services/<name>``; the reseller space is ``storefront``).
WEB_FACES: tuple[str, ...] = ("reseller_space", "console")


class Settings(BaseSettings):
    """All settings, with the defaults of CONTRACT.md ("Running it")."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Prefix for every exchange and queue name. Empty in production (the contract
    # names); tests set a unique one per run so concurrent runs never collide.
    amqp_namespace: str = ""
    # Unset: the launcher starts the embedded MongoDB wire server (nx-27017).
    mongodb_url: str | None = None
    mongodb_db_prefix: str = "xo_"
    data_dir: Path = Path(".data")
    # Broker identities (CONTRACT.md, Identities): each process connects as its own user,
    # ``<AMQP_USER_PREFIX><role>``, with the password from BROKER_USERS_FILE (default
    # DATA_DIR/broker-users.json, written when the users are provisioned) or from AMQP_URL.
    amqp_user_prefix: str = "xo-"
    broker_users_file: Path | None = None

    quotes_port: int = 8101
    orders_port: int = 8102
    credits_port: int = 8103
    licensing_port: int = 8104
    reseller_space_port: int = 8105
    console_port: int = 8106
    # The operations console listens on CONSOLE_HOST only (never the public HTTP_HOST).
    console_host: str = "127.0.0.1"
    http_host: str = "127.0.0.1"
    # The admin listener (/metrics, /docs, /openapi.json): never the public one. Its port
    # is <SERVICE>_ADMIN_PORT, by default the service's port + 100 (8201-8204).
    admin_host: str = "127.0.0.1"
    quotes_admin_port: int | None = None
    orders_admin_port: int | None = None
    credits_admin_port: int | None = None
    licensing_admin_port: int | None = None
    reseller_space_admin_port: int | None = None
    console_admin_port: int | None = None
    # Proxies (addresses or networks) whose X-Forwarded-For is believed; nobody by default.
    trusted_proxies: list[str] = Field(default_factory=list)

    reseller_api_token: str | None = None
    license_signing_key: str | None = None
    # Public keys (base64, raw 32 bytes) of previous signing keys still accepted: rotation.
    license_previous_public_keys: list[str] = Field(default_factory=list)

    log_format: str = "auto"  # "json", "console" or "auto" (console on a terminal)
    log_level: str = "INFO"

    quote_validity_days: int = 30
    proof_max_bytes: int = 10 * 1024 * 1024
    # Crash-loop guard only (a message whose handling kills the process, or a broker that
    # drops the connection mid-handling): handler failures are retried through the delay
    # queues below and never use it up.
    delivery_limit: int = 5
    prefetch: int = 64
    rpc_timeout_seconds: float = 10.0
    # Transient handler failures are retried after these delays (the last one repeats),
    # through RabbitMQ delay queues, until RETRY_TOTAL_SECONDS of delays have passed; then
    # the message is dead-lettered with reason ``retries_exhausted``.
    retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0], min_length=1
    )
    retry_total_seconds: float = Field(default=900.0, ge=0)
    # Publishing: how long one publication (or a wait for the connection) may take, and
    # after how many nacks in a row the connection is reopened (a node lost in a cluster).
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    publish_nacks_before_reopen: int = Field(default=3, ge=1)
    outbox_poll_seconds: float = 1.0
    # A relay claims a document for this long while it publishes its events; a relay that
    # crashed meanwhile is replaced once its claim expires.
    outbox_claim_seconds: float = Field(default=30.0, gt=0)
    # After a publication at save, the confirmed events stay in their document until the
    # aggregate's next save removes them, or for at most this long (then removed together
    # with the others of that moment, in one write): OutboxRelay.settle_now.
    outbox_settle_seconds: float = Field(default=0.05, ge=0)
    inbox_retention_days: float = 7.0  # replies kept for resent requests
    job_interval_seconds: float = 60.0  # periodic jobs: credit expiry, unpaid-line expiry
    unpaid_order_ttl_hours: float = 14 * 24  # O8: an unpaid line awaiting proof expires
    orphan_reservation_hours: float = 24.0  # a reservation whose line never appeared

    catalogue_path: Path | None = Field(
        default=None, description="Catalogue data file; the shipped M3 catalogue if unset."
    )

    # Licensing (L2, L3, L5, L6). Registration attempts are limited per client address
    # (the TCP peer; behind a reverse proxy list it in TRUSTED_PROXIES so that the client
    # is taken from X-Forwarded-For) and per email, over a sliding window.
    registration_window_seconds: int = Field(default=900, ge=1)
    registration_attempts_per_source: int = Field(default=20, ge=1)
    registration_attempts_per_email: int = Field(default=10, ge=1)
    license_moves_per_30_days: int = Field(default=3, ge=0)
    license_grace_days: int = Field(default=7, ge=0)
    license_expiry_warning_days: list[int] = Field(default_factory=lambda: [30, 7, 1])
    # A signed licence is valid offline at most this long, and never past plan end + grace.
    license_offline_days: int = Field(default=30, ge=1)
    # The licence check's per-process cache: a customer's licence view is served at most
    # this many seconds after it was read, so a change saved by another replica (a
    # suspension, a move, a new plan) reaches every answer within it (0: no cache); at
    # most this many customers are kept per process (least recently used out).
    license_cache_seconds: float = Field(default=2.0, ge=0)
    license_cache_entries: int = Field(default=10_000, ge=1)

    # The reseller space (services/reseller_space): where its pages are reached (links in
    # invitations and password resets), the orders HTTP API it uploads proofs to (unset:
    # this host's ORDERS_PORT), cookies marked Secure (set it behind TLS), sessions,
    # single-use links, and sign-in limits per source and per account over a window.
    reseller_space_url: str = "http://127.0.0.1:8105"
    orders_api_url: str | None = None
    session_cookie_secure: bool = False
    session_idle_minutes: int = Field(default=60, ge=1)
    session_max_hours: int = Field(default=12, ge=1)
    invitation_valid_hours: int = Field(default=72, ge=1)
    password_reset_valid_minutes: int = Field(default=60, ge=1)
    sign_in_window_seconds: int = Field(default=900, ge=1)
    sign_in_attempts_per_source: int = Field(default=20, ge=1)
    sign_in_attempts_per_account: int = Field(default=10, ge=1)

    # The operations console (services/console): when a line counts as stuck, and where
    # RabbitMQ's management HTTP API is (unset: http://<AMQP host>:15672; without it the
    # queues page falls back to AMQP passive declarations: depth and consumers only).
    stuck_awaiting_proof_days: float = Field(default=7, gt=0)
    stuck_review_hours: float = Field(default=24, gt=0)
    stuck_unbound_days: float = Field(default=7, gt=0)
    stuck_upgrade_hours: float = Field(default=24, gt=0)
    rabbitmq_management_url: str | None = None

    def users_file(self) -> Path:
        return self.broker_users_file or self.data_dir / "broker-users.json"

    def admin_port_of(self, service: str) -> int:
        port: int | None = getattr(self, f"{service}_admin_port", None)
        return port if port is not None else self.port_of(service) + 100

    def host_of(self, service: str) -> str:
        """The address a service's public listener binds (``<SERVICE>_HOST`` or HTTP_HOST)."""
        host: str | None = getattr(self, f"{service}_host", None)
        return host or self.http_host

    def port_of(self, service: str) -> int:
        """The HTTP port of a service (each overridable by its own variable)."""
        port: int = getattr(self, f"{service}_port")
        return port
