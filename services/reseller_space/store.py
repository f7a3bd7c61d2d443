"""The reseller space's MongoDB adapter: partner accounts, sessions, sign-in attempt counters.

- ``partners``: one document per account (``Partner``), unique on ``contact_email``,
  indexed on ``link_digest`` (a link finds its account by one read).
- ``sessions``: ``{_id: <digest of the cookie's id>, reseller_id, csrf_token, space,
  idle_until, expires_at, ...}``; the id itself is never stored (``shared.runtime.web``).
- ``sign_in_attempts``: one counter per key digest and fixed window, ``$inc`` upserts, so
  every replica counts against the same number; purged two windows later
  (``shared.runtime.web``).
"""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.reseller_space.domain import Partner, Session
from shared.basics.errors import ErrorCode, Refused
from shared.runtime.attempts import AttemptCounters
from shared.runtime.store import Document, DocumentStore
from shared.runtime.web import Sessions, digest


def email_in_use(email: str) -> Refused:
    return Refused(ErrorCode.EMAIL_IN_USE, f"{email} is already the email of another partner")


class ResellerSpaceStore:
    def __init__(self, partners: DocumentStore[Partner], db: AsyncDatabase[Document]) -> None:
        self.partners = partners
        self.sessions = Sessions(db["sessions"], Session)
        self.attempts = AttemptCounters(db["sign_in_attempts"])

    async def create_indexes(self) -> None:
        await self.partners.collection.create_index([("contact_email", ASCENDING)], unique=True)
        await self.partners.collection.create_index([("link_digest", ASCENDING)])
        await self.sessions.create_indexes()
        await self.attempts.create_indexes()

    async def add_partner(self, partner: Partner) -> bool:
        """Store a new account; False if the reseller id exists, ``email_in_use`` if the
        email is another account's (the unique index decides races)."""
        if await self.partners.insert(partner):
            return True
        if await self.partners.get(partner.id) is not None:
            return False
        raise email_in_use(partner.contact_email)

    async def partner_by_email(self, email: str) -> Partner | None:
        doc = await self.partners.collection.find_one({"contact_email": email})
        return None if doc is None else Partner.model_validate(doc)

    async def partner_by_link(self, secret: str) -> Partner | None:
        doc = await self.partners.collection.find_one({"link_digest": digest(secret)})
        return None if doc is None else Partner.model_validate(doc)
