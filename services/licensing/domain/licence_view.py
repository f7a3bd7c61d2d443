"""What a licence check needs of a customer (L4, L5, L8): a read model. No I/O.

The appliance API's hottest path reads this, not the ``Customer`` aggregate: the plans,
the appliances (with their secret digests), the suspension, and the email the licence
names. Tokens, moves, the outbox and the applied message ids are never read, so the
store projects them away and the licence cache keeps less per entry. It is never saved:
changes go through ``Customer`` and the aggregate's store.

What it answers comes from the same pure functions ``Customer`` uses
(``entitlement.appliance_entitlement``, ``registration.secret_matches``), at the moment
asked: a plan that ends or leaves its grace period is seen at once, cached or not.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from services.licensing.domain import registration
from services.licensing.domain.appliances import Appliance, find_appliance
from services.licensing.domain.entitlement import Entitlement, appliance_entitlement
from services.licensing.domain.plans import PlanEntitlement
from services.licensing.domain.policy import Policy

if TYPE_CHECKING:
    from services.licensing.domain.customer import Customer

#: The fields of a customer document a licence check reads (a MongoDB projection).
LICENCE_FIELDS: dict[str, Any] = {"key": 1, "plans": 1, "appliances": 1, "suspended": 1}


class LicenceView(BaseModel):
    """A customer as its appliances' licence checks see it (``id`` = email)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    id: str = Field(alias="_id")
    key: str
    plans: list[PlanEntitlement] = []
    appliances: list[Appliance] = []
    suspended: bool = False

    @classmethod
    def of(cls, customer: Customer) -> LicenceView:
        """The view of a customer as this process holds it (just saved): the same fields
        as the store's projection, copied, so that nothing done to ``customer`` later
        reaches it."""
        fields = customer.model_dump(by_alias=True, include={"id", *LICENCE_FIELDS})
        return cls.model_validate(fields)

    @property
    def email(self) -> str:
        return self.id

    def secret_matches(self, appliance_id: str, secret: str) -> bool:
        """Constant time, the same work for an unknown appliance (``registration``)."""
        return registration.secret_matches(find_appliance(self.appliances, appliance_id), secret)

    def appliance_entitlement(
        self, appliance_id: str, now: datetime, policy: Policy
    ) -> Entitlement:
        """What one appliance may unlock at ``now`` (L4): as ``Customer`` says it."""
        return appliance_entitlement(
            appliance_id,
            plans=self.plans,
            appliances=self.appliances,
            suspended=self.suspended,
            now=now,
            policy=policy,
        )
