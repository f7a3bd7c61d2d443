"""The reseller space's API keys page: a reseller creates keys for its scripts (the orders
HTTP API acts as that reseller with one), each shown once, and revokes them. Through the
orders service's ``apikey.create``, ``apikey.revoke`` and ``apikey.list``."""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from services.reseller_space import handlers
from services.reseller_space.domain import Session
from services.reseller_space.http import Kit
from shared.basics.errors import ErrorCode, Refused
from shared.contracts.api_keys import (
    ApiKeyCreatedResult,
    ApiKeyList,
    ApiKeyView,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
)


def router(kit: Kit) -> APIRouter:
    deps, pages, routes = kit.deps, kit.pages, kit.router()
    signed_in, posted, form_id, text = kit.signed_in, kit.posted, kit.form_id, kit.text

    async def keys_page(
        request: Request, session: Session, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        listed = await handlers.ask(
            ListApiKeys(reseller_id=session.reseller_id), ApiKeyList, deps=deps
        )
        return pages.render(
            request,
            "api_keys.html",
            session=session,
            status=status,
            keys=listed.keys,
            form_id=secrets.token_hex(16),
            **ctx,
        )

    @routes.get("/api-keys", include_in_schema=False)
    async def api_keys(request: Request) -> Response:
        return await keys_page(request, await signed_in(request))

    @routes.post("/api-keys", include_in_schema=False)
    async def create_api_key(request: Request) -> Response:
        session, form = await posted(request, back="/api-keys")
        label = text(form, "label")
        try:
            if not label:
                raise Refused(ErrorCode.INVALID_REQUEST, "give the key a label, e.g. its script")
            created = await handlers.ask(
                CreateApiKey(reseller_id=session.reseller_id, label=label[:100]),
                ApiKeyCreatedResult,
                deps=deps,
                message_id=form_id(form),
            )
        except (Refused, ValueError) as error:
            message = error.message if isinstance(error, Refused) else "use printable text only"
            return await keys_page(request, session, status=422, key_error=message, label=label)
        return await keys_page(request, session, status=201, created=created)

    @routes.post("/api-keys/{key_id}/revoke", include_in_schema=False)
    async def revoke_api_key(request: Request, key_id: str) -> Response:
        session, form = await posted(request, back="/api-keys")
        try:
            revoked = await handlers.ask(
                RevokeApiKey(reseller_id=session.reseller_id, key_id=key_id),
                ApiKeyView,
                deps=deps,
                message_id=form_id(form),
            )
        except (Refused, ValueError) as error:
            message = error.message if isinstance(error, Refused) else "no such key"
            return await keys_page(request, session, status=404, key_error=message)
        return await keys_page(request, session, revoked=revoked)

    return routes
