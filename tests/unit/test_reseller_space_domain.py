"""The reseller space's own rules, pure: links, passwords, sign-in limits, sessions, and
what the pages derive from the services' answers (issue 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from services.reseller_space.domain import (
    LinkPolicy,
    Partner,
    Session,
    admit_sign_in,
    check_password_rules,
    session_fields,
)
from services.reseller_space.views import (
    PAGE_SIZE,
    credit_note_estimate,
    licences,
    lines_page,
    lot_rows,
    money,
    upgrade_targets,
)
from shared.basics.attempts import wait_if_over
from shared.basics.catalogue import load_catalogue
from shared.basics.errors import ErrorCode, RateLimited, Refused
from shared.basics.money import Money
from shared.contracts.credits import BalanceResult, LotView
from shared.contracts.orders import OrderLineView, OrderPrice
from shared.contracts.partners import PartnerNotification
from shared.runtime.web import SessionPolicy, digest

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
POLICY = LinkPolicy(base_url="https://partners.example/")
EMAIL = "sales@acme.example"


def partner() -> Partner:
    return Partner.create("r-1", company=" ACME ", email=EMAIL, now=NOW)


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


# --- links -------------------------------------------------------------------------------


def test_an_invitation_link_reaches_the_mailer_and_only_its_digest_is_kept() -> None:
    account = partner()
    link = account.issue_link("invitation", secret="s3cret-1", policy=POLICY, now=NOW)
    assert link == "https://partners.example/set-password/s3cret-1"
    assert account.link_digest == digest("s3cret-1") != "s3cret-1"
    kinds = [event.ROUTING_KEY for event in account.recorded()]
    assert kinds == ["partner.created", "partner.invited", "partner.notification"]
    [notification] = [e for e in account.recorded() if isinstance(e, PartnerNotification)]
    assert (notification.email, notification.kind, notification.link) == (EMAIL, "invitation", link)
    assert notification.expires_at == NOW + timedelta(hours=72)
    assert account.company == "ACME"


def test_a_link_sets_the_password_once() -> None:
    account = partner()
    account.issue_link("invitation", secret="once", policy=POLICY, now=NOW)
    account.set_password("once", password_hash="h1", now=NOW)
    assert (account.status, account.password_hash) == ("active", "h1")
    with pytest.raises(Refused) as refused:
        account.set_password("once", password_hash="h2", now=NOW)
    assert refused.value.code == ErrorCode.INVALID_LINK
    assert account.password_hash == "h1"


def test_a_new_link_kills_the_previous_one_and_links_expire() -> None:
    account = partner()
    account.issue_link("invitation", secret="first", policy=POLICY, now=NOW)
    account.issue_link("password_reset", secret="second", policy=POLICY, now=NOW)
    assert not account.link_usable("first", NOW)
    assert account.link_usable("second", NOW)
    assert not account.link_usable("second", NOW + timedelta(hours=1))  # reset: one hour
    assert account.link_usable("second", NOW + timedelta(minutes=59))


def test_a_disabled_partner_gets_no_link_and_cannot_use_one() -> None:
    account = partner()
    account.issue_link("invitation", secret="s", policy=POLICY, now=NOW)
    account.disable("contract ended", NOW)
    assert not account.link_usable("s", NOW)
    with pytest.raises(Refused) as refused:
        account.issue_link("password_reset", secret="t", policy=POLICY, now=NOW)
    assert refused.value.code == ErrorCode.PARTNER_DISABLED


@pytest.mark.parametrize(
    "password",
    ["short", "aaaaaaaaaaaaaaaa", "my sales@acme.example pw", "sales-is-my-password", "x" * 257],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(Refused) as refused:
        check_password_rules(password, email=EMAIL)
    assert refused.value.code == ErrorCode.WEAK_PASSWORD


def test_a_long_passphrase_is_accepted() -> None:
    check_password_rules("correct horse battery staple", email=EMAIL)


# --- sign-in limits ------------------------------------------------------------------------


def test_the_nth_attempt_of_a_window_passes_up_to_the_limit_then_waits_for_the_next() -> None:
    window = timedelta(minutes=15)
    start = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)  # a window boundary (epoch-aligned)
    assert wait_if_over(10, limit=10, now=start, window=window) is None
    assert wait_if_over(11, limit=10, now=start, window=window) == 900
    late = start + timedelta(minutes=14, seconds=59, milliseconds=1)
    assert wait_if_over(11, limit=10, now=late, window=window) == 1


def test_past_the_account_limit_the_right_password_still_signs_in() -> None:
    """Guesses sent from many sources cannot lock the real reseller out."""
    account = partner()
    assert admit_sign_in(password_ok=True, account_wait=600, partner=account) is account
    with pytest.raises(RateLimited) as limited:
        admit_sign_in(password_ok=False, account_wait=600, partner=account)
    assert limited.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert limited.value.retry_after == 600


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer() -> None:
    answers = []
    for who in (partner(), None):
        with pytest.raises(Refused) as refused:
            admit_sign_in(password_ok=False, account_wait=None, partner=who)
        answers.append((refused.value.code, refused.value.message))
    assert answers[0] == answers[1] == (ErrorCode.INVALID_CREDENTIALS, "wrong email or password")


def test_a_disabled_partner_learns_it_only_with_its_right_password() -> None:
    account = partner()
    account.disable("unpaid invoices", NOW)
    with pytest.raises(Refused) as refused:
        admit_sign_in(password_ok=True, account_wait=None, partner=account)
    assert refused.value.code == ErrorCode.PARTNER_DISABLED
    with pytest.raises(Refused) as wrong:
        admit_sign_in(password_ok=False, account_wait=None, partner=account)
    assert wrong.value.code == ErrorCode.INVALID_CREDENTIALS


# --- sessions ------------------------------------------------------------------------------


def test_a_session_ends_when_idle_or_too_old_and_stores_no_id() -> None:
    policy = SessionPolicy(idle=timedelta(hours=1), longest=timedelta(hours=12))
    session = Session.start(
        session_id="cookie-id", csrf_token="t", now=NOW, policy=policy, **session_fields(partner())
    )
    assert session.id_digest == digest("cookie-id")
    assert "cookie-id" not in session.model_dump_json()
    assert session.alive(NOW + timedelta(minutes=59))
    assert not session.alive(NOW + timedelta(hours=1))
    moved = session.touched(NOW + timedelta(minutes=30), policy)
    assert moved == NOW + timedelta(minutes=90)
    assert session.touched(NOW + timedelta(seconds=30), policy) is None  # not worth a write
    late = session.model_copy(update={"idle_until": NOW + timedelta(hours=13)})
    assert not late.alive(NOW + timedelta(hours=12))


def test_the_csrf_token_must_be_the_sessions_own() -> None:
    session = Session.start(
        session_id="x",
        csrf_token="tok",
        now=NOW,
        policy=SessionPolicy(),
        **session_fields(partner()),
    )
    assert session.csrf_ok("tok")
    assert not session.csrf_ok(None)
    assert not session.csrf_ok("")
    assert not session.csrf_ok("other")


# --- what the pages derive ------------------------------------------------------------------


def line(number: int, *, status: str = "awaiting_proof", **fields: object) -> OrderLineView:
    price = OrderPrice(
        list_price=eur(199_900),
        discount=eur(39_980),
        credit_applied=eur(0),
        amount_due=eur(159_920),
        first_sale_credit=eur(0),
    )
    values: dict[str, object] = {
        "order_id": f"ol_{number:04d}",
        "reseller_id": "r-1",
        "space": "reseller",
        "edition": "enterprise",
        "billing": "annual",
        "quote_number": f"Q-{number}",
        "status": status,
        "price": price,
        "proofs": [],
        "history": [],
        "placed_at": NOW + timedelta(minutes=number),
        **fields,
    }
    return OrderLineView.model_validate(values)


def test_lines_are_newest_first_fifty_a_page_filtered_by_status_and_space() -> None:
    lines = [line(n, status="paid" if n % 3 == 0 else "awaiting_proof") for n in range(120)]
    lines.append(line(500, space="personal"))
    first = lines_page(lines, space="reseller", status=None, page=1)
    assert [x.order_id for x in first.lines[:2]] == ["ol_0119", "ol_0118"]
    assert (len(first.lines), first.pages, first.total) == (PAGE_SIZE, 3, 120)
    last = lines_page(lines, space="reseller", status=None, page=99)
    assert (last.page, len(last.lines), last.lines[-1].order_id) == (3, 20, "ol_0000")
    paid = lines_page(lines, space="reseller", status="paid", page=1)
    assert paid.total == 40 and all(x.status == "paid" for x in paid.lines)
    assert first.counts == {"paid": 40, "awaiting_proof": 80}


def test_lots_expiring_within_sixty_days_are_marked() -> None:
    def lot(lot_id: str, expires_in: timedelta, remaining: int = 100) -> LotView:
        return LotView(
            lot_id=lot_id,
            amount=eur(100),
            remaining=eur(remaining),
            granted_at=NOW - timedelta(days=300),
            expires_at=NOW + expires_in,
            source="first_sale",
            order_id="ol_1",
        )

    balance = BalanceResult(
        reseller_id="r-1",
        available=eur(300),
        reserved=eur(0),
        lots=[
            lot("late", timedelta(days=61)),
            lot("soon", timedelta(days=60)),
            lot("spent", timedelta(days=3), remaining=0),
        ],
        first_sale_available=False,
    )
    rows = lot_rows(balance, NOW)
    assert [(r.lot.lot_id, r.expiring_soon) for r in rows] == [
        ("spent", False),
        ("soon", True),
        ("late", False),
    ]


def test_o7_no_downgrade_is_offered() -> None:
    catalogue = load_catalogue()
    assert upgrade_targets(catalogue, "starter") == ["enterprise", "premium"]
    assert upgrade_targets(catalogue, "enterprise") == ["premium"]
    assert upgrade_targets(catalogue, "premium") == []


def test_o7_the_credit_note_estimate_is_the_remaining_share_of_what_was_paid() -> None:
    start = NOW
    bound = line(
        1,
        status="bound",
        customer_email="it@customer.example",
        period_start=start,
        period_end=start + timedelta(days=365),
    )
    now = start + timedelta(days=100, hours=7)
    estimate = credit_note_estimate(bound, now)
    remaining = Decimal((timedelta(days=265, hours=-7)) // timedelta(milliseconds=1))
    whole = Decimal(timedelta(days=365) // timedelta(milliseconds=1))
    expected = (Decimal(159_920) * remaining / whole).quantize(Decimal(1), ROUND_HALF_UP)
    assert estimate == eur(int(expected))
    assert credit_note_estimate(bound, start + timedelta(days=365)) is None


def test_licences_group_bound_plans_by_customer() -> None:
    period = {"period_start": NOW, "period_end": NOW + timedelta(days=30)}
    plans = [
        line(1, status="bound", customer_email="b@x.example", **period),
        line(2, status="bound", customer_email="a@x.example", **period, upgraded_by="ol_9"),
        line(3, status="superseded", customer_email="a@x.example", **period),
        line(4, status="paid"),
    ]
    grouped = licences(plans, NOW + timedelta(days=1))
    assert list(grouped) == ["a@x.example", "b@x.example"]
    assert [(x.line.order_id, x.state, x.upgrade_pending) for x in grouped["a@x.example"]] == [
        ("ol_0003", "superseded", False),
        ("ol_0002", "active", True),
    ]
    assert grouped["b@x.example"][0].state == "active"
    assert licences(plans, NOW + timedelta(days=31))["b@x.example"][0].state == "ended"


@pytest.mark.parametrize(
    ("cents", "shown"),
    [(0, "€0.00"), (5, "€0.05"), (199_900, "€1,999.00"), (123_456_789, "€1,234,567.89")],
)
def test_money_is_shown_from_minor_units(cents: int, shown: str) -> None:
    assert money(eur(cents)) == shown
