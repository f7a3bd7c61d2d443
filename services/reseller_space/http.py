"""The reseller space's pages: server-rendered (Jinja2), a little plain JavaScript.

- Every page but sign-in and the links needs a session (cookie ``xo_session``: HttpOnly,
  SameSite=Lax, Secure when ``SESSION_COOKIE_SECURE``); without one the browser goes to
  sign-in, then back to the page it asked for.
- Every form carries a CSRF token: the session's, or before sign-in the one of the
  ``xo_form`` cookie; every POST checks it before anything else.
- The reseller of every command is the session's; no form field names it.
- A refusal from a service is shown with its message next to the form that caused it;
  an unexpected error shows a short page, never a stack trace (it is logged).
"""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime.

import secrets
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote as url_quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from services.reseller_space import handlers, views
from services.reseller_space.domain import Session
from services.reseller_space.handlers import SpaceDeps
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money
from shared.contracts.credits import GetStatement, StatementResult
from shared.contracts.orders import (
    BindPlan,
    CancelOrder,
    GetOrder,
    ListOrders,
    OrderLineView,
    OrderList,
    OrderPlacedResult,
    OrderStatusResult,
    PlaceOrder,
    PlanBoundResult,
    UpgradePlan,
    UpgradeResult,
)
from shared.contracts.quotes import QuoteResult, RequestQuote
from shared.runtime import web
from shared.runtime.http import STATUS_OF
from shared.runtime.logging import get_logger

log = get_logger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "xo_session"
FORM_COOKIE = "xo_form"
ORDER_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
PROOF_PATH = r"/lines/[^/]+/proof"
HIDDEN_ORDER = (ErrorCode.UNKNOWN_ORDER, ErrorCode.NOT_YOUR_ORDER)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a link's secret never leaves in a Referer
    "X-Frame-Options": "DENY",
}


class SignInNeeded(Exception):
    def __init__(self, next_path: str, *, expired: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


class FormExpired(Exception):
    """A POST without the right CSRF token."""


class NoSuchLine(Exception):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


def local_path(candidate: str | None, default: str = "/lines") -> str:
    """Only a path of this site (no ``//host``, no scheme): no open redirect."""
    if not candidate or not candidate.startswith("/") or candidate.startswith("//"):
        return default
    if "\\" in candidate or any(ord(c) < 32 for c in candidate):
        return default
    return candidate


class Pages:
    """Templates and the context every page shares."""

    def __init__(self, deps: SpaceDeps) -> None:
        self.deps = deps
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            money=views.money,
            money_of=lambda raw: views.money(Money.model_validate(raw)),
            day=views.day,
            minute=views.minute,
            size=views.size,
        )
        self.env.globals.update(
            status_labels=views.STATUS_LABELS,
            action_labels=views.ACTION_LABELS,
            proof_max_bytes=deps.proofs.max_bytes,
        )

    def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None = None,
        status: int = 200,
        csrf: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            session=session,
            csrf_token=session.csrf_token if session else csrf,
            path=request.url.path,
            now=self.deps.clock.now(),
            **context,
        )
        return HTMLResponse(html, status_code=status)


class PageRoute(APIRoute):
    """Turns what a page handler raises into a page: sign-in redirects, refusals, 404s,
    expired forms, and anything unexpected (logged, never shown)."""

    pages: Pages  # set by ``router``

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        pages = self.pages

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except SignInNeeded as need:
                target = f"/sign-in?next={url_quote(need.next_path, safe='/')}"
                response = RedirectResponse(target + ("&expired=1" if need.expired else ""), 303)
                if need.expired:
                    response.delete_cookie(SESSION_COOKIE, path="/")
            except FormExpired:
                response = pages.render(
                    request,
                    "error.html",
                    status=403,
                    title="This form has expired",
                    message="The form was not sent from this page or has expired: reload the "
                    "page and try again.",
                )
            except NoSuchLine as missing:
                response = pages.render(
                    request,
                    "error.html",
                    status=404,
                    title="No such line",
                    message=f"There is no line {missing.order_id} in your space.",
                )
            except Refused as refusal:
                response = pages.render(
                    request,
                    "error.html",
                    status=STATUS_OF.get(refusal.code, 409),
                    title="That did not work",
                    message=refusal.message,
                )
            except (RequestValidationError, ValidationError):
                response = pages.render(
                    request,
                    "error.html",
                    status=422,
                    title="Something is missing",
                    message="The request was incomplete or malformed; go back and try again.",
                )
            except Exception:
                log.exception("page_failed", path=request.url.path)
                response = pages.render(
                    request,
                    "error.html",
                    status=500,
                    title="Something went wrong on our side",
                    message="It was logged; please try again in a moment.",
                )
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if response.headers.get("content-type", "").startswith("text/html"):
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handler


class Kit:
    """What every page module shares: the templates, the page route class, sessions, forms."""

    def __init__(self, deps: SpaceDeps) -> None:
        self.deps = deps
        self.pages = Pages(deps)
        self.route_class: type[APIRoute] = type(
            "BoundPageRoute", (PageRoute,), {"pages": self.pages}
        )

    def router(self) -> APIRouter:
        return APIRouter(route_class=self.route_class)

    async def session_or_none(self, request: Request) -> Session | None:
        return await handlers.session_of(request.cookies.get(SESSION_COOKIE), deps=self.deps)

    async def signed_in(self, request: Request, *, back: str | None = None) -> Session:
        """The session, or sign-in first and then back to ``back`` (default: this page)."""
        session = await self.session_or_none(request)
        if session is None:
            path = back or request.url.path
            if back is None and request.url.query:
                path += "?" + request.url.query
            raise SignInNeeded(path, expired=SESSION_COOKIE in request.cookies)
        return session

    async def posted(self, request: Request, *, back: str) -> tuple[Session, Mapping[str, Any]]:
        """A form post of a signed-in page: the session and the form, CSRF checked first."""
        session = await self.signed_in(request, back=back)
        form = await request.form()
        token = form.get("csrf_token")
        if not session.csrf_ok(token if isinstance(token, str) else None):
            raise FormExpired()
        return session, form

    @staticmethod
    def form_id(form: Mapping[str, Any]) -> str | None:
        """The form's own id (rendered into it): the message id of the command it sends."""
        value = form.get("form_id")
        if isinstance(value, str) and 16 <= len(value) <= 64 and value.replace("-", "").isalnum():
            return value
        return None

    @staticmethod
    def text(form: Mapping[str, Any], name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""


def router(deps: SpaceDeps, kit: Kit) -> APIRouter:
    pages = kit.pages
    routes = kit.router()
    static = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
    session_or_none, signed_in, posted = kit.session_or_none, kit.signed_in, kit.posted
    form_id, text = kit.form_id, kit.text

    def set_cookie(response: Response, name: str, value: str) -> None:
        response.set_cookie(name, value, **deps.sessions.cookie_options())

    def form_token(request: Request) -> str:
        return web.form_token(request.cookies.get(FORM_COOKIE))

    def check_form_token(request: Request, given: str | None) -> None:
        """Forms before sign-in: the token must match the ``xo_form`` cookie (login CSRF)."""
        if not web.form_token_ok(request.cookies.get(FORM_COOKIE), given):
            raise FormExpired()

    def with_form_cookie(response: Response, token: str) -> Response:
        set_cookie(response, FORM_COOKIE, token)
        return response

    def source(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def ask_line(session: Session, order_id: str) -> OrderLineView:
        try:
            return await handlers.ask(
                GetOrder(reseller_id=session.reseller_id, order_id=order_id),
                OrderLineView,
                deps=deps,
            )
        except Refused as refusal:  # another reseller's line looks like no line (O9)
            if refusal.code in HIDDEN_ORDER:
                raise NoSuchLine(order_id) from None
            raise

    async def all_lines(session: Session) -> list[OrderLineView]:
        listed = await handlers.ask(
            ListOrders(reseller_id=session.reseller_id), OrderList, deps=deps
        )
        return listed.orders

    # --- static files and the front door ---------------------------------------------------

    @routes.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        path = static.get(name)
        if path is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such file"}}, 404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})

    @routes.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/lines", 303)

    # --- sign-in, sign-out, links -------------------------------------------------------------

    @routes.get("/sign-in", include_in_schema=False)
    async def sign_in_page(
        request: Request,
        next: Annotated[str | None, Query(max_length=500)] = None,
        expired: bool = False,
        password_set: bool = False,
        signed_out: bool = False,
    ) -> Response:
        if await session_or_none(request) is not None:
            return RedirectResponse(local_path(next), 303)
        token = form_token(request)
        notice = None
        if expired:
            notice = "Your session has expired: sign in again to go on."
        elif password_set:
            notice = "Your password is set: sign in."
        elif signed_out:
            notice = "You are signed out."
        page = pages.render(
            request, "sign_in.html", csrf=token, next=local_path(next, ""), notice=notice, email=""
        )
        return with_form_cookie(page, token)

    @routes.post("/sign-in", include_in_schema=False)
    async def sign_in(
        request: Request,
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf_token: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=500)] = "",
    ) -> Response:
        check_form_token(request, csrf_token)
        try:
            session_id, _ = await handlers.sign_in(
                email=email, password=password, source=source(request), deps=deps
            )
        except Refused as refusal:
            page = pages.render(
                request,
                "sign_in.html",
                status=STATUS_OF.get(refusal.code, 401),
                csrf=csrf_token,
                next=local_path(next, ""),
                error=refusal.message,
                email=email,
            )
            if refusal.code == ErrorCode.TOO_MANY_ATTEMPTS and hasattr(refusal, "retry_after"):
                page.headers["Retry-After"] = str(refusal.retry_after)
            return page
        response = RedirectResponse(local_path(next), 303)
        set_cookie(response, SESSION_COOKIE, session_id)
        response.delete_cookie(FORM_COOKIE, path="/")
        return response

    @routes.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        await posted(request, back="/lines")
        await handlers.sign_out(request.cookies.get(SESSION_COOKIE, ""), deps=deps)
        response = RedirectResponse("/sign-in?signed_out=1", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @routes.get("/forgot-password", include_in_schema=False)
    async def forgot_page(request: Request) -> Response:
        token = form_token(request)
        return with_form_cookie(pages.render(request, "forgot.html", csrf=token), token)

    @routes.post("/forgot-password", include_in_schema=False)
    async def forgot(
        request: Request,
        email: Annotated[str, Form(max_length=320)] = "",
        csrf_token: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        check_form_token(request, csrf_token)
        try:
            await handlers.request_password_reset(email=email, source=source(request), deps=deps)
        except Refused as refusal:
            return pages.render(
                request, "forgot.html", status=429, csrf=csrf_token, error=refusal.message
            )
        return pages.render(request, "forgot.html", csrf=csrf_token, sent=True)

    @routes.get("/set-password/{secret}", include_in_schema=False)
    async def set_password_page(request: Request, secret: str) -> Response:
        partner = await handlers.partner_for_link(secret, deps=deps)
        token = form_token(request)
        page = pages.render(request, "set_password.html", csrf=token, partner=partner)
        return with_form_cookie(page, token)

    @routes.post("/set-password/{secret}", include_in_schema=False)
    async def set_password(
        request: Request,
        secret: str,
        password: Annotated[str, Form(max_length=1024)] = "",
        confirm: Annotated[str, Form(max_length=1024)] = "",
        csrf_token: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        check_form_token(request, csrf_token)
        partner = await handlers.partner_for_link(secret, deps=deps)
        try:
            await handlers.set_password(
                secret=secret, password=password, confirm=confirm, deps=deps
            )
        except Refused as refusal:
            if refusal.code != ErrorCode.WEAK_PASSWORD:
                raise
            return pages.render(
                request,
                "set_password.html",
                status=422,
                csrf=csrf_token,
                partner=partner,
                error=refusal.message,
            )
        return RedirectResponse("/sign-in?password_set=1", 303)

    @routes.post("/space", include_in_schema=False)
    async def switch_space(request: Request) -> Response:
        back = local_path(request.query_params.get("back"))
        session, form = await posted(request, back=back)
        await handlers.switch_space(session, text(form, "space"), deps=deps)
        return RedirectResponse(local_path(text(form, "back") or back), 303)

    # --- balance ----------------------------------------------------------------------------

    @routes.get("/balance", include_in_schema=False)
    async def balance(request: Request) -> Response:
        session = await signed_in(request)
        statement = await handlers.ask(
            GetStatement(reseller_id=session.reseller_id), StatementResult, deps=deps
        )
        return pages.render(
            request,
            "balance.html",
            session=session,
            statement=statement,
            balance=statement.balance,
            lots=views.lot_rows(statement.balance, deps.clock.now()),
        )

    # --- quotes and placing an order --------------------------------------------------------

    def quote_form(
        request: Request, session: Session, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return pages.render(
            request,
            "quote_form.html",
            session=session,
            status=status,
            catalogue=deps.catalogue,
            editions=views.paid_editions(deps.catalogue),
            **context,
        )

    @routes.get("/quote", include_in_schema=False)
    async def quote_page(request: Request) -> Response:
        session = await signed_in(request)
        return quote_form(request, session)

    @routes.post("/quote", include_in_schema=False)
    async def get_quote(request: Request) -> Response:
        session, form = await posted(request, back="/quote")
        edition, _, billing = text(form, "choice").partition(":")
        if billing not in ("monthly", "annual") or not edition:
            return quote_form(request, session, status=422, error="choose an edition and a period")
        try:
            quote = await handlers.ask(
                RequestQuote(
                    reseller_id=session.reseller_id,
                    space=session.space,
                    edition=edition,
                    billing=billing,
                ),
                QuoteResult,
                deps=deps,
            )
        except Refused as refusal:
            return quote_form(
                request, session, status=STATUS_OF.get(refusal.code, 409), error=refusal.message
            )
        return pages.render(
            request, "quote.html", session=session, quote=quote, form_id=secrets.token_hex(16)
        )

    @routes.post("/orders", include_in_schema=False)
    async def place_order(request: Request) -> Response:
        session, form = await posted(request, back="/quote")
        try:
            placed = await handlers.ask(
                PlaceOrder(
                    reseller_id=session.reseller_id,
                    space=session.space,
                    quote_number=text(form, "quote_number")[:64] or None,
                    reseller_email=session.email if session.space == "personal" else None,
                ),
                OrderPlacedResult,
                deps=deps,
                message_id=form_id(form),
            )
        except Refused as refusal:
            return quote_form(
                request,
                session,
                status=STATUS_OF.get(refusal.code, 409),
                error=f"The order was not placed: {refusal.message}",
            )
        return RedirectResponse(f"/lines/{placed.order_id}?placed=1", 303)

    # --- lines ------------------------------------------------------------------------------

    @routes.get("/lines", include_in_schema=False)
    async def lines(
        request: Request,
        status: Annotated[str | None, Query(max_length=32)] = None,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        session = await signed_in(request)
        chosen = status if status in views.STATUS_LABELS else None
        listed = await handlers.ask(
            ListOrders(
                reseller_id=session.reseller_id,
                space=session.space,
                status=chosen,
                limit=views.PAGE_SIZE,
                offset=(page - 1) * views.PAGE_SIZE,
            ),
            OrderList,
            deps=deps,
        )
        listing = views.paged(
            listed.orders, total=listed.total or len(listed.orders), status=chosen, page=page
        )
        return pages.render(request, "lines.html", session=session, listing=listing)

    def line_page(
        request: Request, session: Session, line: OrderLineView, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        return pages.render(
            request,
            "line.html",
            session=session,
            status=status,
            line=line,
            unpaid=line.status in views.UNPAID,
            form_id=secrets.token_hex(16),
            **ctx,
        )

    @routes.get("/lines/{order_id}", include_in_schema=False)
    async def line(
        request: Request,
        order_id: str,
        placed: bool = False,
        bound: bool = False,
        cancelled: bool = False,
        uploaded: bool = False,
    ) -> Response:
        session = await signed_in(request)
        notice = None
        if placed:
            notice = "Your order is placed: upload the wire-transfer proof below."
        elif uploaded:
            notice = "Proof uploaded: it will be reviewed shortly."
        elif bound:
            notice = "The plan is bound to your customer, who receives the registration email."
        elif cancelled:
            notice = "The line is cancelled; any credit it held is back on your balance."
        return line_page(request, session, await ask_line(session, order_id), notice=notice)

    @routes.post(PROOF_PATH.replace("[^/]+", "{order_id}"), include_in_schema=False)
    async def upload(
        request: Request,
        order_id: str,
        file: Annotated[UploadFile | None, File()] = None,
        csrf_token: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        session = await signed_in(request, back=f"/lines/{order_id}")
        if not session.csrf_ok(csrf_token):
            raise FormExpired()
        try:
            if file is None or not file.filename:
                raise Refused(ErrorCode.EMPTY_PROOF, "choose a file to upload")
            content = await file.read(deps.proofs.max_bytes + 1)
            proof = await handlers.upload_proof(
                order_id=order_id,
                reseller_id=session.reseller_id,
                filename=file.filename,
                content=content,
                content_type=file.content_type or "",
                deps=deps,
            )
        except Refused as refusal:
            if refusal.code in HIDDEN_ORDER:
                raise NoSuchLine(order_id) from None
            status = STATUS_OF.get(refusal.code, 409)
            if wants_json:
                return JSONResponse({"ok": False, "message": refusal.message}, status)
            line = await ask_line(session, order_id)
            return line_page(request, session, line, status=status, upload_error=refusal.message)
        if wants_json:
            return JSONResponse({"ok": True, "proof": proof.model_dump(mode="json")}, 201)
        return RedirectResponse(f"/lines/{order_id}?uploaded=1", 303)

    @routes.post("/lines/{order_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, order_id: str) -> Response:
        session, form = await posted(request, back=f"/lines/{order_id}")
        try:
            await handlers.ask(
                CancelOrder(reseller_id=session.reseller_id, order_id=order_id),
                OrderStatusResult,
                deps=deps,
                message_id=form_id(form),
            )
        except Refused as refusal:
            if refusal.code in HIDDEN_ORDER:
                raise NoSuchLine(order_id) from None
            line = await ask_line(session, order_id)
            status = STATUS_OF.get(refusal.code, 409)
            return line_page(request, session, line, status=status, cancel_error=refusal.message)
        return RedirectResponse(f"/lines/{order_id}?cancelled=1", 303)

    @routes.post("/lines/{order_id}/bind", include_in_schema=False)
    async def bind(request: Request, order_id: str) -> Response:
        session, form = await posted(request, back=f"/lines/{order_id}")
        email = text(form, "customer_email")
        try:
            if not email:
                raise Refused(ErrorCode.INVALID_EMAIL, "enter your customer's email")
            if form.get("confirm") != "yes":
                raise Refused(
                    ErrorCode.INVALID_REQUEST,
                    "tick the box to confirm: a binding cannot be changed afterwards",
                )
            await handlers.ask(
                BindPlan(reseller_id=session.reseller_id, order_id=order_id, customer_email=email),
                PlanBoundResult,
                deps=deps,
                message_id=form_id(form),
            )
        except Refused as refusal:
            if refusal.code in HIDDEN_ORDER:
                raise NoSuchLine(order_id) from None
            line = await ask_line(session, order_id)
            status = STATUS_OF.get(refusal.code, 409)
            return line_page(
                request,
                session,
                line,
                status=status,
                bind_error=refusal.message,
                customer_email=email,
            )
        return RedirectResponse(f"/lines/{order_id}?bound=1", 303)

    # --- licence management -----------------------------------------------------------------

    @routes.get("/licences", include_in_schema=False)
    async def licences(request: Request) -> Response:
        session = await signed_in(request)
        grouped = views.licences(await all_lines(session), deps.clock.now())
        return pages.render(request, "licences.html", session=session, customers=grouped)

    async def upgrade_preview(
        session: Session, line: OrderLineView, edition: str | None, billing: str | None
    ) -> dict[str, Any]:
        targets = views.upgrade_targets(deps.catalogue, line.edition)
        preview: dict[str, Any] = {
            "targets": targets,
            "edition": edition,
            "billing": billing or line.billing,
            "estimate": views.credit_note_estimate(line, deps.clock.now()),
            "days_left": views.days_left(line, deps.clock.now()),
        }
        if edition in targets:
            preview["quote"] = quote = await handlers.ask(
                RequestQuote(
                    reseller_id=session.reseller_id,
                    space=line.space,
                    edition=edition,
                    billing=billing if billing in ("monthly", "annual") else line.billing,
                ),
                QuoteResult,
                deps=deps,
            )
            preview.update(views.upgrade_figures(quote, preview["estimate"]))
        return preview

    @routes.get("/licences/{order_id}/upgrade", include_in_schema=False)
    async def upgrade_page(
        request: Request,
        order_id: str,
        edition: Annotated[str | None, Query(max_length=64)] = None,
        billing: Annotated[str | None, Query(max_length=16)] = None,
    ) -> Response:
        session = await signed_in(request)
        line = await ask_line(session, order_id)
        preview = await upgrade_preview(session, line, edition, billing)
        return pages.render(
            request,
            "upgrade.html",
            session=session,
            line=line,
            form_id=secrets.token_hex(16),
            **preview,
        )

    @routes.post("/licences/{order_id}/upgrade", include_in_schema=False)
    async def upgrade(request: Request, order_id: str) -> Response:
        back = f"/licences/{order_id}/upgrade"
        session, form = await posted(request, back=back)
        edition, billing = text(form, "edition"), text(form, "billing")
        try:
            result = await handlers.ask(
                UpgradePlan(
                    reseller_id=session.reseller_id,
                    order_id=order_id,
                    edition=edition or "-",
                    billing=billing if billing in ("monthly", "annual") else None,
                ),
                UpgradeResult,
                deps=deps,
                message_id=form_id(form),
            )
        except Refused as refusal:
            if refusal.code in HIDDEN_ORDER:
                raise NoSuchLine(order_id) from None
            line = await ask_line(session, order_id)
            preview = await upgrade_preview(session, line, None, billing)
            return pages.render(
                request,
                "upgrade.html",
                session=session,
                status=STATUS_OF.get(refusal.code, 409),
                line=line,
                form_id=secrets.token_hex(16),
                error=refusal.message,
                **preview,
            )
        return pages.render(
            request, "upgraded.html", session=session, result=result, previous=order_id
        )

    return routes
