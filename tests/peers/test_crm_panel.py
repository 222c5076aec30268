"""The CRM pages in a real browser (Playwright driving Debian's chromium, headless) against
a running Switchboard with PJSUA2 phones: a known customer's phone calls the queue and the
agent's screen pop on the offer card shows the customer's name and open ticket (not the
closed one); a ticket urged meanwhile reaches the agent as a toast and on the badge; the
agent opens the customer's page from the pop; a knowledge-base search in Chinese finds the
Chinese article; an unknown caller's pop offers a new customer with the number filled in.
The editing half: an admin writes a KB article with an image, a qa user scores and publishes
an evaluation. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.peers.browser import ARTIFACTS, add_user, chromium, login_page
from tests.peers.calls import registered
from tests.peers.phones import Phone
from tests.peers.switchboard import Switchboard

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.peers

PEOPLE = {
    "1001": {"name": "Caller", "password": "pw-1001-secret"},
    "1002": {"name": "Bob", "password": "pw-1002-secret"},
    "1003": {"name": "Stranger", "password": "pw-1003-secret"},
}
CONFIG = """agents:
  bob: {name: Bob, extensions: ["1002"]}
queues:
  support: {members: [bob], ring_timeout: 20}
dialplan:
  inbound:
    - {did: "5000", destination: {kind: queue, target: support}}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_screen_pop_customer_page_and_chinese_kb_search(
    server_factory: Callable[..., Switchboard],
    phone_factory: Callable[..., Phone],
    browser: Any,
) -> None:
    expect = sync_api.expect
    sb = server_factory(extensions=PEOPLE, extra_yaml=CONFIG)
    password = "bob-password-1"

    def post(path: str, body: dict[str, Any], status: int = 201) -> Any:
        return _ok(sb.api("POST", path, json=body), status)

    post("/api/users", {"name": "bob", "role": "agent", "password": password, "agent": "bob"})
    anna = post("/api/customers", {"name": "Anna Müller", "phone": "1001", "owner": "bob"})
    ticket = {"type": "general", "customer_id": anna["id"], "assignee": "bob"}
    open_ticket = post("/api/tickets", {**ticket, "title": "Router keeps rebooting"})
    closed = post("/api/tickets", {**ticket, "title": "Old invoice question"})
    for action in ("start", "close"):
        post(f"/api/tickets/{closed['id']}/{action}", {}, 200)
    category = post("/api/kb/categories", {"name": "常见问题"})
    for title, body in (
        ("退款流程", "客户申请**退款**时，请先核实订单号，再提交退款工单。"),
        ("Router resets", "Hold the reset button for ten seconds."),
    ):
        post("/api/kb/articles", {"category_id": category["id"], "title": title, "body": body})

    caller, bob_phone = (registered(phone_factory, sb, ext) for ext in ("1001", "1002"))
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{sb.api_url}/login?lang=en")
    page.fill("input[name=name]", "bob")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.endswith("/agent"), timeout=10_000)
    expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "up")
    # Two assignments waited for bob while he was away: listed and counted.
    expect(page.get_by_test_id("notif-count")).to_have_text("2", timeout=5_000)
    page.get_by_test_id("btn-login").click()
    expect(page.get_by_test_id("state")).to_have_attribute("data-state", "AVAILABLE")

    cid = caller.call(sb.uri("5000"))
    caller.wait_call_state("CONFIRMED", call=cid, timeout=10)
    expect(page.get_by_test_id("offer")).to_be_visible(timeout=3_000)
    pop = page.get_by_test_id("screenpop")
    expect(pop).to_be_visible(timeout=3_000)
    expect(page.get_by_test_id("pop-customer")).to_have_text("Anna Müller")
    tickets = page.get_by_test_id("pop-tickets")
    expect(tickets).to_contain_text(open_ticket["number"])
    expect(tickets).to_contain_text("Router keeps rebooting")
    expect(tickets).not_to_contain_text("Old invoice question")
    bob_phone.wait_incoming(timeout=5)

    # Meanwhile the admin urges the open ticket: a toast on bob's panel within a second or two.
    urged_at = time.monotonic()
    post(f"/api/tickets/{open_ticket['id']}/urge", {"note": "customer on the line"}, 200)
    expect(page.get_by_test_id("toast")).to_contain_text("Urged", timeout=5_000)
    latency = time.monotonic() - urged_at
    print(f"urge to toast: {latency:.2f} s")
    assert latency < 3.0  # the delivery loop runs every second
    expect(page.get_by_test_id("notif-count")).to_have_text("3", timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / "crm-screenpop.png"), full_page=True)

    # The customer's page, from the pop (in a tab of its own: the panel stays open).
    href = page.get_by_test_id("pop-customer-link").get_attribute("href")
    assert href == f"/customers/{anna['id']}"
    card = context.new_page()
    card.goto(sb.api_url + href)
    expect(card.get_by_test_id("conn")).to_have_attribute("data-state", "up")
    expect(card.get_by_test_id("cust-name")).to_have_text("Anna Müller")
    expect(card.get_by_test_id("cust-tickets")).to_contain_text(open_ticket["number"])
    # The page's forms go through the API: a follow-up.
    card.locator("form[data-path$='/followups'] textarea[name=note]").fill(
        "Called about the router"
    )
    card.locator("form[data-path$='/followups'] button[type=submit]").click()
    expect(card.get_by_test_id("cust-followups")).to_contain_text("Called about the router")
    card.screenshot(path=str(ARTIFACTS / "crm-customer.png"), full_page=True)

    # A new ticket from the ringing call, then started from its page.
    new_ticket = page.get_by_test_id("pop-new-ticket").get_attribute("href")
    assert new_ticket is not None and f"customer_id={anna['id']}" in new_ticket
    card.goto(sb.api_url + new_ticket)
    expect(card.get_by_test_id("tk-call-live")).to_be_visible()
    card.get_by_test_id("tk-form-title").fill("Wants a technician")
    card.get_by_test_id("tk-create").click()
    card.wait_for_url(lambda url: "/tickets/T-" in url, timeout=5_000)
    expect(card.get_by_test_id("tk-state")).to_have_attribute("data-state", "assigned")
    card.get_by_test_id("op-start").locator("button[type=submit]").click()
    expect(card.get_by_test_id("tk-state")).to_have_attribute("data-state", "in_progress")
    expect(card.get_by_test_id("op-start")).to_have_count(0)  # not legal any more
    expect(card.get_by_test_id("tk-trail")).to_contain_text("Start")

    # A knowledge-base search in Chinese.
    card.goto(f"{sb.api_url}/kb?lang=zh")
    card.get_by_test_id("kb-q").fill("退款")
    card.get_by_test_id("kb-search").click()
    results = card.get_by_test_id("kb-results")
    expect(results).to_contain_text("退款流程", timeout=5_000)
    expect(results).not_to_contain_text("Router resets")
    card.get_by_test_id("kb-hit").first.click()
    expect(card.get_by_test_id("kb-title")).to_have_text("退款流程")
    expect(card.get_by_test_id("kb-body").locator("strong")).to_have_text("退款")
    card.screenshot(path=str(ARTIFACTS / "crm-kb-zh.png"), full_page=True)

    caller.hangup(call=cid)
    caller.wait_disconnected(call=cid, timeout=10)

    # An unknown caller: the pop offers a new customer with the number filled in.
    stranger = registered(phone_factory, sb, "1003")
    expect(page.get_by_test_id("state")).to_have_attribute("data-state", "AVAILABLE", timeout=5_000)
    sid = stranger.call(sb.uri("5000"))
    stranger.wait_call_state("CONFIRMED", call=sid, timeout=10)
    expect(page.get_by_test_id("offer")).to_be_visible(timeout=3_000)
    link = page.get_by_test_id("pop-new-customer")
    expect(link).to_be_visible(timeout=3_000)
    expect(page.get_by_test_id("pop-customer")).to_contain_text("1003")
    expect(page.get_by_test_id("pop-ticket")).to_have_count(0)
    href = link.get_attribute("href")
    assert href == "/customers/new?number=1003"
    card.goto(sb.api_url + href)
    expect(card.get_by_test_id("cust-form-phone")).to_have_value("1003")
    stranger.hangup(call=sid)
    stranger.wait_disconnected(call=sid, timeout=10)
    context.close()


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def test_admin_writes_an_article_and_qa_scores_an_evaluation_in_the_browser(
    server_factory: Callable[..., Switchboard], browser: Any
) -> None:
    """The editing half of the KB and QA pages: an admin makes a category, writes an
    article with an image (form → saved → found by the search), renames the category and
    deletes the article (after a confirm); a qa user starts an
    evaluation, types the item scores, saves and publishes, and the page's total is the
    API's."""
    expect = sync_api.expect
    sb = server_factory(extra_yaml="agents:\n  bob: {name: Bob, extensions: ['1002']}\n")
    ada = add_user(sb, "ada", "admin")
    quinn = add_user(sb, "quinn", "qa")

    # -- the admin: a category, then an article in it, then an image ------------------------
    page = login_page(browser, sb, "ada", ada)
    page.goto(f"{sb.api_url}/kb")
    page.get_by_test_id("kb-manage-categories").click()
    page.get_by_test_id("kb-cat-new-name").fill("Routers")
    page.get_by_test_id("kb-cat-create").click()
    expect(page.get_by_test_id("kb-cat-name")).to_have_value("Routers", timeout=5_000)
    page.goto(f"{sb.api_url}/kb/new")
    page.get_by_test_id("kb-form-category").select_option(label="Routers")
    page.get_by_test_id("kb-form-title").fill("Factory reset of the X200 router")
    page.get_by_test_id("kb-form-keywords").fill("reset, x200")
    page.get_by_test_id("kb-form-body").fill("Hold **reset** for ten seconds.\n\n- then wait")
    page.get_by_test_id("kb-save").click()
    page.wait_for_url(lambda url: "/kb/" in url and url.rstrip("/").split("/")[-1].isdigit())
    article_id = int(page.url.rstrip("/").split("/")[-1])
    expect(page.get_by_test_id("kb-title")).to_have_text("Factory reset of the X200 router")
    expect(page.get_by_test_id("kb-body").locator("strong")).to_have_text("reset")
    expect(page.get_by_test_id("kb-history")).to_contain_text("ada")
    page.get_by_test_id("kb-edit").click()
    page.wait_for_url(lambda url: url.endswith(f"/kb/{article_id}/edit"))
    page.get_by_test_id("kb-image-file").set_input_files(
        {"name": "front.png", "mimeType": "image/png", "buffer": PNG}
    )
    page.get_by_test_id("kb-image-upload").click()
    # Never placed the cursor in the text: the image goes at the end.
    expect(page.get_by_test_id("kb-form-body")).to_have_value(
        re.compile(r"then wait\n\n!\[front\.png\]\(/api/kb/images/\d+\)\n$"), timeout=5_000
    )
    page.screenshot(path=str(ARTIFACTS / "kb-article-editor.png"), full_page=True)
    page.get_by_test_id("kb-save").click()
    page.wait_for_url(lambda url: url.endswith(f"/kb/{article_id}"))
    image = page.get_by_test_id("kb-body").locator("img")
    expect(image).to_have_attribute("alt", "front.png")
    assert page.evaluate("() => document.querySelector('.article-body img').naturalWidth") == 1
    expect(page.get_by_test_id("kb-history").locator("tbody tr")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "kb-article-written.png"), full_page=True)
    page.goto(f"{sb.api_url}/kb")
    page.get_by_test_id("kb-q").fill("x200 reset")
    page.get_by_test_id("kb-search").click()
    expect(page.get_by_test_id("kb-results")).to_contain_text("Factory reset of the X200 router")
    stored = _ok(sb.api("GET", f"/api/kb/articles/{article_id}?count=false"))
    assert stored["keywords"] == ["reset", "x200"] and stored["version"] == 2
    # The category renamed and given edit roles in the browser.
    page.goto(f"{sb.api_url}/kb/categories")
    row = page.locator("tr[data-category]")
    row.get_by_test_id("kb-cat-name").fill("Routers and modems")
    row.locator("input[name=edit_roles]").fill("agent, supervisor")
    with page.expect_navigation():  # saved: the page reloads
        row.get_by_test_id("kb-cat-save").click()
    expect(row.get_by_test_id("kb-cat-name")).to_have_value("Routers and modems")
    (category,) = _ok(sb.api("GET", "/api/kb/categories"))["items"]
    assert category["name"] == "Routers and modems"
    assert category["edit_roles"] == ["agent", "supervisor"] and category["read_roles"] is None
    # Delete asks first: dismissed, nothing happens; accepted, the article is gone.
    page.goto(f"{sb.api_url}/kb/{article_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("kb-delete").click()
    page.wait_for_timeout(500)
    assert sb.api("GET", f"/api/kb/articles/{article_id}?count=false").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("kb-delete").click()
    page.wait_for_url(lambda url: url.endswith("/kb"), timeout=5_000)
    assert sb.api("GET", f"/api/kb/articles/{article_id}?count=false").status_code == 404
    page.context.close()

    # -- the qa user: a new evaluation, scored, saved, published ------------------------------
    card = _ok(
        sb.api(
            "POST",
            "/api/qa/scorecards",
            json={
                "name": "Inbound calls",
                "sections": [
                    {
                        "name": "Opening",
                        "items": [
                            {"key": "greeting", "label": "Greets by name", "max_points": 10},
                            {"key": "identity", "label": "Checks identity", "max_points": 5,
                             "auto_fail": True},
                        ],
                    },
                    {"name": "Closing", "items": [
                        {"key": "summary", "label": "Sums up", "max_points": 5}]},
                ],
            },
        ),
        201,
    )  # fmt: skip
    page = login_page(browser, sb, "quinn", quinn)
    page.goto(f"{sb.api_url}/qa")
    page.get_by_test_id("qa-new").click()
    page.get_by_test_id("qa-new-scorecard").select_option(str(card["id"]))
    page.get_by_test_id("qa-new-agent").fill("bob")
    page.get_by_test_id("qa-new-create").click()
    page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit(), timeout=5_000)
    evaluation_id = int(page.url.rstrip("/").split("/")[-1])
    expect(page.get_by_test_id("qa-state")).to_have_attribute("data-published", "false")
    # Beyond the item's maximum: refused in the page, nothing sent.
    page.get_by_test_id("qa-score-greeting").fill("12")
    page.get_by_test_id("qa-save").click()
    assert page.get_by_test_id("qa-score-greeting").evaluate("x => !x.validity.valid")
    assert _ok(sb.api("GET", f"/api/qa/evaluations/{evaluation_id}"))["scores"] == {}
    page.get_by_test_id("qa-score-greeting").fill("8")
    page.get_by_test_id("qa-score-identity").fill("5")
    page.get_by_test_id("qa-score-summary").fill("3.5")
    page.get_by_test_id("qa-comment").fill("Good opening, short summary.")
    page.get_by_test_id("qa-save").click()
    expect(page.get_by_test_id("qa-total")).to_have_text("82.5", timeout=5_000)  # 16.5 / 20
    saved = _ok(sb.api("GET", f"/api/qa/evaluations/{evaluation_id}"))
    assert saved["scores"] == {"greeting": 8, "identity": 5, "summary": 3.5}
    assert not saved["published"]
    page.screenshot(path=str(ARTIFACTS / "qa-evaluation-draft.png"), full_page=True)
    page.get_by_test_id("qa-publish").click()
    expect(page.get_by_test_id("qa-state")).to_have_attribute("data-published", "true")
    published = _ok(sb.api("GET", f"/api/qa/evaluations/{evaluation_id}"))
    assert published["published"] and published["comment"] == "Good opening, short summary."
    expect(page.get_by_test_id("qa-total")).to_have_text(f"{published['total']:.1f}")
    expect(page.get_by_test_id("qa-score-form")).to_have_count(0)  # read-only now
    page.screenshot(path=str(ARTIFACTS / "qa-evaluation-published.png"), full_page=True)
    page.context.close()
