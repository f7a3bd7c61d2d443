"""Licensing messages (L1-L8) and the appliance HTTP bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from shared.contracts.base import Command, Event, Query

LicenseStatus = Literal[
    "active", "grace", "expired", "suspended", "not_registered", "moved", "free"
]
LicenseReason = Literal[
    "plan_active",  # a plan runs now (status active)
    "grace_period",  # the plan ended; its edition stays until the grace period ends (grace)
    "plan_ended",  # every plan ended, grace included (expired)
    "plan_not_started",  # the only plans start later (expired)
    "no_plan",  # the email never had a plan (expired)
    "all_plans_in_use",  # plans run, but on more senior appliances (expired)
    "license_suspended",  # operations suspended the licence (suspended)
    "appliance_not_registered",  # no such appliance for this customer (not_registered)
    "license_moved_to_another_appliance",  # a move released this appliance (moved)
]
PlanState = Literal["upcoming", "active", "grace", "ended", "superseded"]


class PlanEntitlementView(BaseModel):
    order_id: str
    edition: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    appliance_id: str | None = None
    state: PlanState = Field(default="active", description="The plan's state now.")
    grace_until: AwareDatetime | None = Field(
        default=None, description="When its edition is lost after the end (none if superseded)."
    )
    ended_at: AwareDatetime | None = Field(
        default=None, description="When an upgrade ended it early (O7)."
    )
    superseded_by: str | None = None
    warnings_sent: list[int] = Field(
        default_factory=list, description="Days-before-end warnings already handled (L6)."
    )


class ApplianceView(BaseModel):
    appliance_id: str
    order_id: str | None = Field(description="The plan it runs on now; none when no plan is left.")
    status: Literal["active", "moved"]
    registered_at: AwareDatetime
    license_status: LicenseStatus | None = Field(
        default=None, description="What its licence check answers now."
    )
    edition: str | None = Field(default=None, description="The edition it may unlock now.")
    moved_at: AwareDatetime | None = None


class LicenseStatusResult(BaseModel):
    customer_email: str
    edition: str
    status: LicenseStatus
    reason: LicenseReason
    valid_until: AwareDatetime | None = None  # replies omit None fields
    plans: list[PlanEntitlementView]
    appliances: list[ApplianceView]
    support: bool
    suspension_reason: str | None = None
    suspended_by: str | None = Field(default=None, description="The operator who suspended it.")
    moves_left: int | None = Field(
        default=None, description="Moves still allowed in the current 30-day window (L5)."
    )


class SuspensionResult(BaseModel):
    customer_email: str
    status: LicenseStatus


class RegistrationReissueResult(BaseModel):
    customer_email: str
    issued_at: AwareDatetime
    tokens_revoked: int = Field(description="Earlier registration tokens that no longer work.")


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
    operator: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The operator who acts (console, CLI); recorded in the event. Extension.",
    )


class ReinstateLicense(Command):
    """``license.reinstate`` (L8)."""

    ROUTING_KEY = "license.reinstate"
    RESULT = SuspensionResult

    customer_email: str = Field(min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=2000)
    operator: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The operator who acts (console, CLI); recorded in the event. Extension.",
    )


class ReissueRegistrationToken(Command):
    """``registration.reissue`` (operations, L2): a new registration token goes to the customer
    through ``customer.notification``; earlier tokens stop working."""

    ROUTING_KEY = "registration.reissue"
    RESULT = RegistrationReissueResult

    customer_email: str = Field(min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=2000)
    operator: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The operator who acts (console, CLI); recorded in the event. Extension.",
    )


class _CustomerEvent(Event):
    customer_email: str


class LicenseUnlocked(_CustomerEvent):
    """The email gained an edition until ``valid_until`` (L1)."""

    ROUTING_KEY = "license.unlocked"
    order_id: str
    edition: str
    valid_until: AwareDatetime


class LicenseChanged(_CustomerEvent):
    """The customer's effective edition changed (L1: upgrade, a plan starting or ending)."""

    ROUTING_KEY = "license.changed"
    edition: str
    previous_edition: str
    reason: str | None = Field(
        default=None,
        description="plan_bound, plan_upgraded, plan_superseded, plan_started or plan_ended.",
    )
    order_id: str | None = Field(default=None, description="The plan that gives the edition now.")


class LicenseExpiring(_CustomerEvent):
    """A plan ends in ``days_left`` days and nothing renews it (L6); once per warning."""

    ROUTING_KEY = "license.expiring"
    order_id: str
    edition: str
    period_end: AwareDatetime
    days_left: int


class LicenseExpired(_CustomerEvent):
    """A plan ended and nothing renews it (L6); its edition stays until ``grace_until``."""

    ROUTING_KEY = "license.expired"
    order_id: str
    edition: str
    period_end: AwareDatetime | None = None
    grace_until: AwareDatetime | None = None


class LicenseSuspended(_CustomerEvent):
    ROUTING_KEY = "license.suspended"
    reason: str
    operator: str | None = None


class LicenseReinstated(_CustomerEvent):
    ROUTING_KEY = "license.reinstated"
    reason: str
    operator: str | None = None


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
    days_left: int | None = Field(default=None, description="For license_expiring.")


# --- Appliance HTTP API bodies -------------------------------------------------------


# An appliance id: 1 to 128 ASCII letters, digits, ``.``, ``_``, ``:`` or ``-``, the first a
# letter or a digit (``.`` and ``..`` are path segments, not ids). The same pattern checks
# the id in the body of a registration and in the path of a licence check.
APPLIANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
APPLIANCE_ID_MAX_LENGTH = 128


class RegisterAppliance(BaseModel):
    """``POST /v1/appliances/register``."""

    email: str = Field(min_length=1, max_length=320)
    registration_token: str = Field(min_length=1, max_length=256)
    appliance_id: str = Field(
        min_length=1,
        max_length=APPLIANCE_ID_MAX_LENGTH,
        pattern=APPLIANCE_ID_PATTERN,
        description="1 to 128 ASCII letters, digits, '.', '_', ':' or '-'; the first a "
        "letter or a digit.",
    )
    move: bool = False


class LicenceClaims(BaseModel):
    """What a signed licence says (L3): the JSON object in the ``<payload>`` of ``license``.

    Check the signature first, with the key ``key_id`` names (``GET /v1/public-key``); then
    an appliance may trust these claims, offline, until ``valid_until``."""

    customer_email: str
    appliance_id: str
    edition: str = Field(description="The edition the appliance may unlock (free if none).")
    status: LicenseStatus
    reason: LicenseReason
    support: bool = Field(description="Support access (L7): only while the status is active.")
    order_id: str | None = Field(description="The plan it runs on; none when it runs on none.")
    period_end: AwareDatetime | None = Field(
        description="When that plan ends (when an upgrade ended it, if one did)."
    )
    grace_until: AwareDatetime | None = Field(
        description="When the plan's edition is lost after its end (none if superseded)."
    )
    valid_until: AwareDatetime | None = Field(
        description="Trust it until then, at most: the earlier of the plan's end plus grace "
        "and the offline validity; none when nothing is unlocked."
    )
    issued_at: AwareDatetime
    key_id: str = Field(description="The key that signed it, as ``GET /v1/public-key`` lists it.")


class _SignedClaims:
    """The JSON schema of a signed licence: a string whose payload is a ``LicenceClaims``,
    named as a component of the OpenAPI document and referenced by ``contentSchema``."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        claims = LicenceClaims.__pydantic_core_schema__
        reference = core_schema.definition_reference_schema(claims["ref"])
        return {
            **handler(schema),
            "description": "``<payload>.<signature>`` (L3): ``payload`` is the unpadded "
            "base64url of the JSON ``LicenceClaims``; ``signature`` the unpadded base64url "
            "Ed25519 signature of the ASCII bytes of ``payload``.",
            "contentSchema": handler(core_schema.definitions_schema(reference, [claims])),
        }


SignedLicence = Annotated[str, _SignedClaims()]


class Registration(BaseModel):
    appliance_secret: str
    license: SignedLicence


class ApplianceLicense(BaseModel):
    """``GET /v1/appliances/{appliance_id}/license``."""

    status: LicenseStatus
    reason: LicenseReason
    edition: str
    valid_until: AwareDatetime | None
    support: bool
    license: SignedLicence | None


class PublicKeyEntry(BaseModel):
    key_id: str
    public_key: str


class PublicKeys(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    public_key: str
    keys: list[PublicKeyEntry]
