"""Licensing messages (L1-L8) and the appliance HTTP bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from shared.contracts.base import Command, Event, Query

LicenseStatus = Literal[
    "active", "grace", "expired", "suspended", "not_registered", "moved", "free"
]


class PlanEntitlementView(BaseModel):
    order_id: str
    edition: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    appliance_id: str | None = None


class ApplianceView(BaseModel):
    appliance_id: str
    order_id: str | None = Field(description="The plan it runs on now; none when no plan is left.")
    status: Literal["active", "moved"]
    registered_at: AwareDatetime


class LicenseStatusResult(BaseModel):
    customer_email: str
    edition: str
    status: LicenseStatus
    reason: str
    valid_until: AwareDatetime | None
    plans: list[PlanEntitlementView]
    appliances: list[ApplianceView]
    support: bool


class SuspensionResult(BaseModel):
    customer_email: str
    status: LicenseStatus


class GetLicenseStatus(Query):
    """``license.status``: what a customer's email is entitled to (operations)."""

    ROUTING_KEY = "license.status"
    RESULT = LicenseStatusResult

    customer_email: str = Field(min_length=1, max_length=320)


class SuspendLicense(Command):
    """``license.suspend`` (L8)."""

    ROUTING_KEY = "license.suspend"
    RESULT = SuspensionResult

    customer_email: str = Field(min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=2000)


class ReinstateLicense(Command):
    """``license.reinstate`` (L8)."""

    ROUTING_KEY = "license.reinstate"
    RESULT = SuspensionResult

    customer_email: str = Field(min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=2000)


class _CustomerEvent(Event):
    customer_email: str


class LicenseUnlocked(_CustomerEvent):
    """The email gained an edition until ``valid_until`` (L1)."""

    ROUTING_KEY = "license.unlocked"
    order_id: str
    edition: str
    valid_until: AwareDatetime


class LicenseChanged(_CustomerEvent):
    ROUTING_KEY = "license.changed"
    edition: str
    previous_edition: str


class LicenseExpiring(_CustomerEvent):
    ROUTING_KEY = "license.expiring"
    order_id: str
    edition: str
    period_end: AwareDatetime
    days_left: int


class LicenseExpired(_CustomerEvent):
    ROUTING_KEY = "license.expired"
    order_id: str
    edition: str


class LicenseSuspended(_CustomerEvent):
    ROUTING_KEY = "license.suspended"
    reason: str


class LicenseReinstated(_CustomerEvent):
    ROUTING_KEY = "license.reinstated"
    reason: str


class ApplianceRegistered(_CustomerEvent):
    ROUTING_KEY = "appliance.registered"
    appliance_id: str
    order_id: str


class ApplianceMoved(_CustomerEvent):
    ROUTING_KEY = "appliance.moved"
    order_id: str
    from_appliance_id: str
    to_appliance_id: str


class CustomerNotification(_CustomerEvent):
    """For the mailer. ``registration_token`` lets the customer register appliances (L2).

    The customer receives no invoice (L7): there is no invoice kind.
    """

    ROUTING_KEY = "customer.notification"
    kind: Literal["plan_bound", "registration_token_reissued", "license_expiring"]
    edition: str
    registration_token: str | None = None
    order_id: str | None = None


# --- Appliance HTTP API bodies -------------------------------------------------------


class RegisterAppliance(BaseModel):
    """``POST /v1/appliances/register``."""

    email: str = Field(min_length=1, max_length=320)
    registration_token: str = Field(min_length=1, max_length=256)
    appliance_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    move: bool = False


class Registration(BaseModel):
    appliance_secret: str
    license: str


class ApplianceLicense(BaseModel):
    """``GET /v1/appliances/{appliance_id}/license``."""

    status: LicenseStatus
    reason: str
    edition: str
    valid_until: AwareDatetime | None
    support: bool
    license: str | None


class PublicKeyEntry(BaseModel):
    key_id: str
    public_key: str


class PublicKeys(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    public_key: str
    keys: list[PublicKeyEntry]
