"""Partner account messages: operations create and disable the accounts of the reseller
space; the reseller space invites the partner and asks the mailer to send its links.

Sign-in, sessions and passwords stay inside the reseller space: only these facts and
commands are public.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts.base import Command, Event

PartnerStatus = Literal["invited", "active", "disabled"]
LinkKind = Literal["invitation", "password_reset"]

_ID = Field(min_length=1, max_length=128)


class PartnerView(BaseModel):
    reseller_id: str
    company: str
    contact_email: str = Field(description="The partner's sign-in email, normalised.")
    status: PartnerStatus = Field(
        description="invited: no password set yet; active: can sign in; disabled: cannot."
    )
    created_at: AwareDatetime


class CreatePartner(Command):
    """``partner.create`` (operations): a partner account for the reseller space. Its contact
    email gets an invitation link (``partner.notification``) to set its password."""

    ROUTING_KEY = "partner.create"
    RESULT = PartnerView
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reseller_id": "r-42", "company": "ACME IT", "contact_email": "ops@acme.example"}
            ]
        }
    )

    reseller_id: str = _ID
    company: str = Field(min_length=1, max_length=200)
    contact_email: str = Field(min_length=1, max_length=320)


class DisablePartner(Command):
    """``partner.disable`` (operations): the account can no longer sign in; its sessions end."""

    ROUTING_KEY = "partner.disable"
    RESULT = PartnerView

    reseller_id: str = _ID
    reason: str = Field(min_length=1, max_length=2000)


class InvitePartner(Command):
    """``partner.invite`` (operations): a fresh invitation link for a partner that has not
    set its password yet (the previous link dies); a partner already active is told to
    use the password reset. Extension: ``partner.create`` sent again does the same, but
    needs the company and email."""

    ROUTING_KEY = "partner.invite"
    RESULT = PartnerView

    reseller_id: str = _ID


class _PartnerEvent(Event):
    reseller_id: str


class PartnerCreated(_PartnerEvent):
    ROUTING_KEY = "partner.created"
    company: str
    contact_email: str


class PartnerInvited(_PartnerEvent):
    """An invitation link was issued (the link itself travels only in the notification)."""

    ROUTING_KEY = "partner.invited"
    contact_email: str
    expires_at: AwareDatetime


class PartnerDisabled(_PartnerEvent):
    ROUTING_KEY = "partner.disabled"
    reason: str


class PartnerNotification(_PartnerEvent):
    """For the mailer: send ``link`` to ``email``. The link holds a single-use secret valid
    until ``expires_at`` (only its digest is kept); a reseller asking for a password reset
    on an unknown email gets no notification at all."""

    ROUTING_KEY = "partner.notification"
    email: str
    kind: LinkKind
    link: str
    expires_at: AwareDatetime
