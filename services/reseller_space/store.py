"""The reseller space's MongoDB adapter: partner accounts, sessions, sign-in attempt counters.

- ``partners``: one document per account (``Partner``), unique on ``contact_email``,
  indexed on ``link_digest`` (a link finds its account by one read).
- ``sessions``: ``{_id: <digest of the cookie's id>, reseller_id, csrf_token, space,
  idle_until, expires_at, ...}``; the id itself is never stored.
- ``sign_in_attempts``: one counter per key digest and fixed window, ``$inc`` upserts, so
  every replica counts against the same number; purged two windows later.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.reseller_space.domain import EPOCH, Partner, Session, digest, window_index
from shared.basics.errors import ErrorCode, Refused
from shared.runtime.store import Document, DocumentStore


class AttemptCounters:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["sign_in_attempts"]

    async def count(self, key: str, *, now: datetime, window: timedelta) -> int:
        """Count one attempt for ``key`` now; returns this window's count, this one included."""
        index = window_index(now, window)
        expires_at = EPOCH + window * (index + 2)
        for _ in range(3):  # two first attempts may race to create the counter
            try:
                current = await self.collection.find_one_and_update(
                    {"_id": f"{digest(key)}:{index}", "expires_at": expires_at},
                    {"$inc": {"count": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                return int(current["count"]) if current else 1
            except DuplicateKeyError:
                continue
        raise RuntimeError(f"could not count a sign-in attempt in window {index}")

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count


class Sessions:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["sessions"]

    @staticmethod
    def _document(session: Session) -> Document:
        doc = session.model_dump(mode="python")
        doc["_id"] = doc.pop("id_digest")
        return doc

    async def add(self, session: Session) -> None:
        await self.collection.insert_one(self._document(session))

    async def get(self, session_id: str) -> Session | None:
        doc = await self.collection.find_one({"_id": digest(session_id)})
        if doc is None:
            return None
        doc["id_digest"] = doc.pop("_id")
        return Session.model_validate(doc)

    async def update(self, session: Session, **fields: object) -> None:
        """The session with ``fields`` changed, saved whole (a ``$set`` of a datetime comes
        back as text from the embedded server; whole documents keep their types)."""
        changed = session.model_copy(update=fields)
        await self.collection.replace_one({"_id": session.id_digest}, self._document(changed))

    async def end(self, session_id: str) -> None:
        await self.collection.delete_one({"_id": digest(session_id)})

    async def end_all_of(self, reseller_id: str) -> int:
        result = await self.collection.delete_many({"reseller_id": reseller_id})
        return result.deleted_count

    async def purge(self, now: datetime) -> int:
        result = await self.collection.delete_many(
            {"$or": [{"idle_until": {"$lte": now}}, {"expires_at": {"$lte": now}}]}
        )
        return result.deleted_count


def email_in_use(email: str) -> Refused:
    return Refused(ErrorCode.EMAIL_IN_USE, f"{email} is already the email of another partner")


class ResellerSpaceStore:
    def __init__(self, partners: DocumentStore[Partner], db: AsyncDatabase[Document]) -> None:
        self.partners = partners
        self.sessions = Sessions(db)
        self.attempts = AttemptCounters(db)

    async def create_indexes(self) -> None:
        await self.partners.collection.create_index([("contact_email", ASCENDING)], unique=True)
        await self.partners.collection.create_index([("link_digest", ASCENDING)])
        await self.sessions.collection.create_index([("reseller_id", ASCENDING)])
        await self.sessions.collection.create_index([("expires_at", ASCENDING)])
        await self.attempts.collection.create_index([("expires_at", ASCENDING)])

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
