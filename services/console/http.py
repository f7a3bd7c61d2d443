"""The console's pages (server-rendered, Jinja2; a little plain JavaScript for shortcuts).

Every page needs a signed-in operator (``shared.runtime.web``: argon2id, sessions, CSRF,
sign-in limits); every action is a command of the public contract sent as ``operations``,
naming the operator, and logged in the event log.
"""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

import asyncio
import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from uuid import uuid4

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import BaseModel

from services.console import handlers
from services.console.domain import (
    LineState,
    OperatorSession,
    format_age,
    format_money,
    operator_closed,
)
from services.console.handlers import ConsoleDeps
from services.console.queues import QueueWatcher
from shared.basics.emails import normalise_email
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.contracts import REGISTRY, Command
from shared.contracts.credits import BalanceResult, GetBalance, GetStatement, StatementResult
from shared.contracts.identities import SERVICE_ROLES, WEB_FACE_ROLES
from shared.contracts.licensing import GetLicenseStatus, LicenseStatusResult
from shared.contracts.operations import (
    DeadLetterList,
    DeadLetterResult,
    DiscardDeadLetter,
    GetProof,
    ListDeadLetters,
    ProofFile,
    ReplayDeadLetter,
)
from shared.contracts.orders import GetOrder, OrderLineView
from shared.runtime.attempts import AttemptCounters
from shared.runtime.http import STATUS_OF
from shared.runtime.messaging import UpstreamUnavailable
from shared.runtime.service import Runtime
from shared.runtime.topology import DEAD_LETTERS_QUEUE
from shared.runtime.web import (
    Passwords,
    SessionPolicy,
    Sessions,
    SignInLimits,
    WebSession,
    admit,
    attempt_sign_in,
    form_token,
    form_token_ok,
)

HERE = Path(__file__).parent
#: The consumers that keep their dead letters and answer ``deadletter.*``.
KEEPERS: tuple[str, ...] = (*SERVICE_ROLES, *WEB_FACE_ROLES)
COOKIE = "xo_console_session"
PRE_COOKIE = "xo_console_signin"  # the sign-in form's own CSRF token (no session yet)
MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript"}
#: The vendored static files, read once (no build chain).
STATIC = {
    path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
    for path in sorted((HERE / "static").iterdir())
    if path.suffix in MEDIA_TYPES
}


def _filters(templates: Jinja2Templates) -> None:
    env = templates.env
    env.filters["money"] = lambda amount, currency="EUR": (
        "—" if amount is None else format_money(int(amount), currency)
    )
    env.filters["age"] = lambda seconds: format_age(timedelta(seconds=seconds or 0))
    env.filters["when"] = lambda at: "—" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["size"] = lambda n: f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


class Pages:
    def __init__(self, deps: ConsoleDeps, runtime: Runtime) -> None:
        settings = runtime.settings
        self.deps = deps
        self.runtime = runtime
        # The reseller space's rules (``shared.runtime.web``), with operators as accounts.
        self.policy = SessionPolicy.of(settings)
        self.limits = SignInLimits.of(settings)
        self.passwords = Passwords()
        self.sessions = Sessions(runtime.db["sessions"], OperatorSession)
        self.attempts = AttemptCounters(runtime.db["sign_in_attempts"])
        self.queues = QueueWatcher(
            runtime.identity.url,
            settings.amqp_namespace,
            settings.rabbitmq_management_url,
            tuple(settings.retry_delays_seconds),
        )
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        _filters(self.templates)

    async def setup(self) -> None:
        await self.sessions.create_indexes()
        await self.attempts.create_indexes()

    async def purge(self, now: datetime) -> int:
        return await self.sessions.purge(now) + await self.attempts.purge(now)

    # --- helpers -------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.deps.clock.now()

    async def session(self, request: Request) -> OperatorSession | None:
        cookie = request.cookies.get(COOKIE)
        return await self.sessions.live(cookie, now=self.now(), policy=self.policy)

    def to_signin(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303)

    def render(
        self,
        request: Request,
        template: str,
        session: WebSession | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        context.update(
            operator=session.subject if session else None,
            csrf=session.csrf_token if session else "",
            now=self.now(),
            has=lambda key: key in REGISTRY,
        )
        response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def ask(self, query: Command, result: type[BaseModel]) -> Any:
        """A query as operations; a refusal or an absent service is raised as ``Refused``."""
        try:
            return await self.deps.bus.call(
                query, result, message_id=str(uuid4()), correlation_id=None
            )
        except UpstreamUnavailable as exc:
            raise Refused(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc

    async def checked_form(
        self, request: Request
    ) -> tuple[WebSession | None, dict[str, str], Response | None]:
        """The session and the form of a POST, or the response that refuses it."""
        session = await self.session(request)
        if session is None:
            return None, {}, self.to_signin(request)
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not session.csrf_ok(form.get("csrf")):
            page = self.render(
                request,
                "error.html",
                session,
                status_code=403,
                message="This form has expired or did not come from the console. Reload the "
                "page and try again.",
            )
            return session, form, page
        return session, form, None

    # --- routes --------------------------------------------------------------------------

    def router(self) -> APIRouter:
        routes = APIRouter(include_in_schema=False)
        pages = self

        @routes.get("/static/{name}")
        async def static(name: str) -> Response:
            if name not in STATIC:
                return Response("not found", status_code=404, media_type="text/plain")
            body, media_type = STATIC[name]
            return Response(
                body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
            )

        @routes.get("/")
        async def home() -> RedirectResponse:
            return RedirectResponse("/review", status_code=303)

        # sign-in ---------------------------------------------------------------------------

        @routes.get("/signin")
        async def signin_form(request: Request, next: str = "/review") -> HTMLResponse:
            token = form_token(request.cookies.get(PRE_COOKIE))
            response = pages.render(request, "signin.html", None, next=_local(next), pre=token)
            response.set_cookie(PRE_COOKIE, token, **pages.policy.cookie_options())
            return response

        @routes.post("/signin")
        async def signin(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            target = _local(form.get("next", "/review"))
            pre = request.cookies.get(PRE_COOKIE, "")
            email = form.get("email", "").strip().lower()
            now = pages.now()

            def refused(message: str, status: int) -> HTMLResponse:
                return pages.render(
                    request,
                    "signin.html",
                    None,
                    status_code=status,
                    next=target,
                    pre=form_token(pre),
                    error=message,
                    email=email,
                )

            if not form_token_ok(pre, form.get("pre")):
                return refused("The sign-in form expired: try again.", 403)
            try:
                attempt = await attempt_sign_in(
                    email=email,
                    password=form.get("password", ""),
                    source=request.client.host if request.client else "unknown",
                    find=pages.deps.store.operator,
                    password_hash=lambda operator: operator.password_hash,
                    counters=pages.attempts,
                    limits=pages.limits,
                    passwords=pages.passwords,
                    now=now,
                )
                operator = admit(attempt, closed=operator_closed)
            except Refused as refusal:
                message = refusal.message[:1].upper() + refusal.message[1:] + "."
                response = refused(message, STATUS_OF.get(refusal.code, 401))
                if isinstance(refusal, RateLimited):
                    response.headers["Retry-After"] = str(refusal.retry_after)
                return response
            token, _ = await pages.sessions.open(
                now=now, policy=pages.policy, operator=operator.email
            )
            done = RedirectResponse(target, status_code=303)
            done.set_cookie(COOKIE, token, **pages.policy.cookie_options())
            done.delete_cookie(PRE_COOKIE, path="/")
            return done

        @routes.post("/signout")
        async def signout(request: Request) -> Response:
            _session, _, refusal = await pages.checked_form(request)
            if refusal is not None:
                return refusal
            await pages.sessions.end(request.cookies.get(COOKIE))
            response = RedirectResponse("/signin", status_code=303)
            response.delete_cookie(COOKIE, path="/")
            return response

        # review queue ----------------------------------------------------------------------

        async def review_page(
            request: Request,
            session: WebSession,
            selected: str | None,
            *,
            error: str | None = None,
            notice: str | None = None,
            status_code: int = 200,
        ) -> HTMLResponse:
            now = pages.now()
            items = await handlers.review_lines(pages.deps)
            ids = [item["order_id"] for item in items]
            chosen = selected if selected in ids else (ids[0] if ids else None)
            current = await pages.deps.store.line(chosen) if chosen else None
            index = ids.index(chosen) if chosen else -1
            return pages.render(
                request,
                "review.html",
                session,
                status_code=status_code,
                count=len(items),
                rows=queue_rows(items, chosen),
                current=current,
                item=handlers.review_item(current, now) if current else None,
                previous=ids[index - 1] if index > 0 else None,
                following=ids[index + 1] if 0 <= index < len(ids) - 1 else None,
                error=error,
                notice=notice,
            )

        @routes.get("/review")
        async def review_queue(
            request: Request, order: str | None = None, done: str | None = None
        ) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            notice = None
            if done:
                decision, _, order_id = done.partition(":")
                notice = (
                    f"Proof of {order_id} {'accepted' if decision == 'accept' else 'rejected'}."
                )
            return await review_page(request, session, order, notice=notice)

        @routes.get("/review/{order_id}/proof/{proof_id}")
        async def proof_file(request: Request, order_id: str, proof_id: str) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            try:
                proof: ProofFile = await pages.ask(
                    GetProof(order_id=order_id, proof_id=proof_id), ProofFile
                )
            except Refused as refusal:
                return Response(refusal.message, status_code=404, media_type="text/plain")
            return Response(
                base64.b64decode(proof.content_base64),
                media_type=proof.content_type,
                headers={
                    "Content-Disposition": f'inline; filename="{quote(proof.filename)}"',
                    "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "default-src 'none'; img-src 'self'; "
                    "object-src 'self'; plugin-types application/pdf",
                    "Cache-Control": "private, max-age=300",
                    "X-Proof-Sha256": proof.sha256,
                },
            )

        @routes.post("/review/{order_id}")
        async def decide(request: Request, order_id: str) -> Response:
            session, form, refusal = await pages.checked_form(request)
            if refusal is not None or session is None:
                return refusal or pages.to_signin(request)
            decision = form.get("decision", "")
            if decision not in ("accept", "reject"):
                return await review_page(
                    request, session, order_id, error="Choose accept or reject.", status_code=422
                )
            try:
                await handlers.review(
                    pages.deps, session.subject, order_id, decision, form.get("reason")
                )
            except Refused as refused:
                message = refused.message
                if refused.code == ErrorCode.ORDER_NOT_AWAITING_PROOF:
                    message = await already_decided(order_id) or message
                elif refused.code == ErrorCode.REJECTION_REASON_REQUIRED:
                    message = "A rejection needs a reason: the reseller sees it."
                return await review_page(
                    request,
                    session,
                    order_id,
                    error=message,
                    status_code=409 if refused.code != ErrorCode.REJECTION_REASON_REQUIRED else 422,
                )
            return RedirectResponse(
                f"/review?{urlencode({'done': f'{decision}:{order_id}'})}", status_code=303
            )

        async def already_decided(order_id: str) -> str | None:
            entries = await pages.deps.store.timeline(order_id)
            decided = [e for e in entries if e.routing_key in ("proof.accepted", "proof.rejected")]
            if not decided:
                return "This line is not awaiting review any more (already decided)."
            last = decided[-1]
            verb = "accepted" if last.routing_key == "proof.accepted" else "rejected"
            return (
                f"Already decided: {verb} by {last.operator or 'someone'} at "
                f"{last.occurred_at:%Y-%m-%d %H:%M:%S} UTC. Nothing was changed."
            )

        # stuck lines and one line ------------------------------------------------------------

        @routes.get("/stuck")
        async def stuck_lines(request: Request) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            found = await handlers.stuck_now(pages.deps)
            return pages.render(
                request,
                "stuck.html",
                session,
                stuck=found,
                rules=pages.deps.rules.describe(),
            )

        @routes.get("/lines/{order_id}")
        async def line_page(request: Request, order_id: str) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            line = await pages.deps.store.line(order_id)
            entries = await pages.deps.store.timeline(order_id)
            view: OrderLineView | None = None
            licence: LicenseStatusResult | None = None
            problems: list[str] = []
            if line is not None and line.reseller_id:
                try:
                    view = await pages.ask(
                        GetOrder(reseller_id=line.reseller_id, order_id=order_id), OrderLineView
                    )
                except Refused as refusal:
                    problems.append(f"orders: {refusal.message}")
            email = (view.customer_email if view else None) or (
                line.customer_email if line else None
            )
            if email:
                try:
                    licence = await pages.ask(
                        GetLicenseStatus(customer_email=email), LicenseStatusResult
                    )
                except Refused as refusal:
                    problems.append(f"licensing: {refusal.message}")
            if line is None and not entries:
                return pages.render(
                    request,
                    "error.html",
                    session,
                    status_code=404,
                    message=f"The event log knows no line {order_id}.",
                )
            return pages.render(
                request,
                "line.html",
                session,
                order_id=order_id,
                line=line,
                view=view,
                licence=licence,
                entries=entries,
                problems=problems,
            )

        # customers ---------------------------------------------------------------------------

        async def customer_page(
            request: Request,
            session: WebSession,
            email: str,
            *,
            error: str | None = None,
            notice: str | None = None,
            status_code: int = 200,
        ) -> HTMLResponse:
            licence: LicenseStatusResult | None = None
            lines: list[LineState] = []
            if email:
                try:
                    email = normalise_email(email)
                    licence = await pages.ask(
                        GetLicenseStatus(customer_email=email), LicenseStatusResult
                    )
                except Refused as refusal:
                    error = error or refusal.message
                lines = await pages.deps.store.lines_of(email=email)
            entries = await pages.deps.store.entries({"customer_email": email}) if email else []
            return pages.render(
                request,
                "customers.html",
                session,
                status_code=status_code,
                email=email,
                licence=licence,
                lines=lines,
                entries=entries[-50:],
                error=error,
                notice=notice,
            )

        @routes.get("/customers")
        async def customers(request: Request, email: str = "") -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            return await customer_page(request, session, email.strip())

        @routes.post("/customers/{action}")
        async def customer_action(request: Request, action: str) -> Response:
            session, form, refusal = await pages.checked_form(request)
            if refusal is not None or session is None:
                return refusal or pages.to_signin(request)
            email = form.get("email", "").strip()
            if action not in ("suspend", "reinstate", "reissue"):
                return await customer_page(request, session, email, error="Unknown action.")
            try:
                await handlers.licence_action(
                    pages.deps, session.subject, action, email, form.get("reason", "")
                )
            except Refused as refused:
                return await customer_page(
                    request, session, email, error=refused.message, status_code=409
                )
            done = {
                "suspend": "Licence suspended.",
                "reinstate": "Licence reinstated.",
                "reissue": "A new registration token was sent to the customer.",
            }[action]
            return await customer_page(request, session, email, notice=done)

        # partners -----------------------------------------------------------------------------

        async def partner_page(
            request: Request,
            session: WebSession,
            reseller_id: str | None,
            *,
            error: str | None = None,
            notice: str | None = None,
            status_code: int = 200,
        ) -> HTMLResponse:
            context: dict[str, Any] = {"reseller_id": reseller_id, "keys": None}
            problems: list[str] = []
            if reseller_id:
                try:
                    context["balance"] = await pages.ask(
                        GetBalance(reseller_id=reseller_id), BalanceResult
                    )
                    context["statement"] = await pages.ask(
                        GetStatement(reseller_id=reseller_id), StatementResult
                    )
                except Refused as refusal:
                    problems.append(f"credits: {refusal.message}")
                if "apikey.list" in REGISTRY:
                    model = REGISTRY["apikey.list"]
                    try:
                        context["keys"] = await pages.ask(
                            model(reseller_id=reseller_id),  # type: ignore[arg-type]
                            model.RESULT,  # type: ignore[attr-defined]
                        )
                    except Refused as refusal:
                        problems.append(f"API keys: {refusal.message}")
                context["lines"] = await pages.deps.store.lines_of(reseller_id=reseller_id)
                context["entries"] = (await pages.deps.store.entries({"reseller_id": reseller_id}))[
                    -50:
                ]
            context["resellers"] = await pages.deps.store.resellers()
            return pages.render(
                request,
                "partners.html",
                session,
                status_code=status_code,
                error=error,
                notice=notice,
                problems=problems,
                **context,
            )

        @routes.get("/partners")
        async def partners(request: Request, reseller: str = "") -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            return await partner_page(request, session, reseller.strip() or None)

        @routes.post("/partners/{action}")
        async def partner_action(request: Request, action: str) -> Response:
            session, form, refusal = await pages.checked_form(request)
            if refusal is not None or session is None:
                return refusal or pages.to_signin(request)
            reseller_id = form.get("reseller_id", "").strip()
            commands = {
                "create": ("partner.create", ("reseller_id", "company", "contact_email")),
                "disable": ("partner.disable", ("reseller_id", "reason")),
                "create-key": ("apikey.create", ("reseller_id", "label")),
                "revoke-key": ("apikey.revoke", ("reseller_id", "key_id")),
            }
            if action not in commands or commands[action][0] not in REGISTRY:
                return await partner_page(
                    request,
                    session,
                    reseller_id or None,
                    error=f"{action} is not available on this system yet.",
                    status_code=404,
                )
            key, fields = commands[action]
            model = REGISTRY[key]
            try:
                command = model.model_validate({f: form.get(f, "") for f in fields})
                assert isinstance(command, Command)
                assert command.RESULT is not None
                result = await handlers.act(pages.deps, session.subject, command, command.RESULT)
            except Refused as refused:
                return await partner_page(
                    request, session, reseller_id or None, error=refused.message, status_code=409
                )
            except ValueError as invalid:
                return await partner_page(
                    request, session, reseller_id or None, error=str(invalid), status_code=422
                )
            notice = f"{key}: done."
            secret = getattr(result, "key", None)
            if isinstance(secret, str):
                notice = f"New API key (shown once, give it to the reseller): {secret}"
            return await partner_page(request, session, reseller_id or None, notice=notice)

        # queues ---------------------------------------------------------------------------------

        @routes.get("/queues")
        async def queues(request: Request) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            view = await pages.queues.look()
            return pages.render(request, "queues.html", session, view=view)

        # dead letters -------------------------------------------------------------------------

        async def dead_letters_page(
            request: Request,
            session: WebSession,
            *,
            reason: str = "",
            error: str | None = None,
            notice: str | None = None,
            status_code: int = 200,
        ) -> HTMLResponse:
            async def listed(service: str) -> tuple[str, DeadLetterList | None]:
                query = ListDeadLetters(service=service, reason=reason or None)
                try:
                    answer = await asyncio.wait_for(pages.ask(query, DeadLetterList), 3.0)
                except (TimeoutError, Refused):
                    return service, None
                return service, answer

            answers = await asyncio.gather(*(listed(s) for s in KEEPERS))
            letters = [d for _, a in answers if a is not None for d in a.dead_letters]
            silent = [s for s, a in answers if a is None]
            view = await pages.queues.look()
            parked = next((q for q in view.queues if q.name.endswith(DEAD_LETTERS_QUEUE)), None)
            return pages.render(
                request,
                "dead_letters.html",
                session,
                status_code=status_code,
                letters=sorted(letters, key=lambda d: d.dead_at, reverse=True),
                silent=silent,
                parked=parked,
                reason=reason,
                error=error,
                notice=notice,
            )

        @routes.get("/dead-letters")
        async def dead_letters(request: Request, reason: str = "") -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            return await dead_letters_page(request, session, reason=reason.strip())

        @routes.post("/dead-letters/{action}")
        async def dead_letter_action(request: Request, action: str) -> Response:
            session, form, refusal = await pages.checked_form(request)
            if refusal is not None or session is None:
                return refusal or pages.to_signin(request)
            picked = (await request.form()).getlist("pick")  # "<service> <message id>"
            done, failed = 0, []
            for value in picked:
                service, _, message_id = str(value).partition(" ")
                command: Command
                if action == "replay":
                    command = ReplayDeadLetter(
                        service=service, message_id=message_id, operator=session.subject
                    )
                else:
                    command = DiscardDeadLetter(
                        service=service,
                        message_id=message_id,
                        operator=session.subject,
                        reason=form.get("reason", "").strip() or "discarded from the console",
                    )
                try:
                    await handlers.act(pages.deps, session.subject, command, DeadLetterResult)
                    done += 1
                except Refused as refused:
                    failed.append(f"{message_id}: {refused.message}")
            return await dead_letters_page(
                request,
                session,
                notice=f"{action}: {done} done." if done else None,
                error="; ".join(failed) or None,
            )

        # the event log ------------------------------------------------------------------------

        @routes.get("/events")
        async def events(request: Request) -> Response:
            session = await pages.session(request)
            if session is None:
                return pages.to_signin(request)
            entries = await pages.deps.store.recent(200)
            total = await pages.deps.store.count()
            return pages.render(request, "events.html", session, entries=entries, total=total)

        return routes


def queue_rows(items: list[dict[str, Any]], current: str | None) -> Markup:
    """The review queue's rows, built in Python: a thousand rows through template filters
    cost more than the rest of the page (bench/review_queue.py)."""
    rows = []
    for item in items:
        order_id = escape(item["order_id"])
        amount = item.get("amount_due")
        due = "—" if amount is None else format_money(int(amount), item.get("currency") or "EUR")
        age = format_age(timedelta(seconds=item["age_seconds"]))
        marked = ' class="current"' if item["order_id"] == current else ""
        edition = escape(item.get("edition") or "")
        billing = escape(item.get("billing") or "")
        reseller = escape(item.get("reseller_id") or "")
        rows.append(
            f'<tr{marked}><td><a href="/review?order={order_id}">{order_id}</a><br>'
            f'<span class="muted">{edition} · {billing}</span></td><td>{reseller}</td>'
            f'<td class="num">{escape(due)}</td><td class="num">{age}</td></tr>'
        )
    return Markup("".join(rows))


def _local(target: str) -> str:
    """Only a path of this site (no open redirect after sign-in)."""
    return target if target.startswith("/") and not target.startswith("//") else "/review"
