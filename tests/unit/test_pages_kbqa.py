"""The knowledge-base editor and QA scoring pages (web/pages_kbqa.py and the editing parts
of /kb/{id}, /kb, /qa, /qa/{id}, /recordings) through httpx's ASGI transport with real
sessions: each form shows exactly when the service would let the user do it, refusals
are the usual 403/404 pages, forms are prefilled, and the pages stay inside the CSP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from crm import Actor, RecordingData
from crm.kb import Category, KnowledgeBase
from crm.qa import EvaluationTask, QualityService, Scorecard, ScoreItem, Section
from tests.unit.test_pages_crm import NOW, SUE, Web, web  # noqa: F401  (fixture)
from tests.unit.test_web_records_pages import Pages, pages  # noqa: F401  (fixture)
from web.i18n import CATALOGS
from web.i18n_kbqa import EN_KBQA, ZH_KBQA
from web.pages_kbqa import category_paths

QUINN = Actor("quinn", "qa")


def _options(html: str, name: str) -> list[tuple[str, str]]:
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S)
    assert select is not None, name
    return re.findall(r"<option value=\"(\d*)\"[^>]*>([^<]*)<", select.group(0))


def _no_inline_script(html: str) -> None:
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers


@pytest.mark.parametrize("path", ["/kb/new", "/kb/1/edit", "/kb/categories", "/qa/new"])
async def test_without_a_session_the_editors_go_to_the_login(web: Web, path: str) -> None:  # noqa: F811
    r = await web.get(None, path)
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_kb_new_and_edit_follow_the_categories_rights(web: Web) -> None:  # noqa: F811
    kb = KnowledgeBase(web.store)
    general = await kb.add_category(SUE, "General")  # agents read, supervisors edit
    article = await kb.add_article(
        SUE, general.id, "Refunds", "Refunds take *5* days.", now=NOW, keywords=["refund"]
    )
    # An agent who may edit no category: no "new" link, and /kb/new is refused.
    assert 'data-testid="kb-new"' not in (await web.get("alice", "/kb")).text
    assert (await web.get("alice", "/kb/new")).status_code == 403
    # ... nor edit or delete buttons on an article they may only read.
    page = await web.get("alice", f"/kb/{article.id}")
    assert page.status_code == 200
    assert 'data-testid="kb-edit"' not in page.text and 'data-testid="kb-delete"' not in page.text
    assert (await web.get("alice", f"/kb/{article.id}/edit")).status_code == 403
    assert (await web.get("alice", "/kb/999999/edit")).status_code == 404
    assert (await web.get("alice", "/kb/x/edit")).status_code == 404
    # A supervisor edits it: buttons, the prefilled form, the history.
    boss = await web.get("sue", f"/kb/{article.id}")
    assert 'data-testid="kb-edit"' in boss.text and 'data-testid="kb-delete"' in boss.text
    assert 'data-confirm="' in boss.text
    await kb.edit_article(SUE, article.id, now=NOW + timedelta(hours=1), title="Refunds (new)")
    history = (await web.get("sue", f"/kb/{article.id}")).text
    rows = re.search(r'data-testid="kb-history">(.*?)</table>', history, re.S)
    assert rows is not None and rows.group(1).count("<tr>") == 3  # header + 2 versions
    assert "2026-12-07 11:00 UTC" in rows.group(1) and ">sue<" in rows.group(1)
    form = await web.get("sue", f"/kb/{article.id}/edit")
    assert form.status_code == 200
    assert f'data-path="/api/kb/articles/{article.id}"' in form.text
    assert 'data-api="PATCH"' in form.text and 'data-then="/kb/{id}"' in form.text
    assert 'data-empty="null"' in form.text  # emptied keywords are saved as none
    assert 'value="Refunds (new)"' in form.text and 'value="refund"' in form.text
    assert "Refunds take *5* days.</textarea>" in form.text
    assert 'data-testid="kb-image-upload"' in form.text
    _no_inline_script(form.text)
    assert 'src="/static/kbqa.js"' in form.text
    # An agent-editable category: now the agent gets the form, with only that category.
    notes = await kb.add_category(SUE, "Agents' notes", edit_roles=["agent", "supervisor"])
    kb_page = (await web.get("alice", "/kb")).text
    assert 'data-testid="kb-new"' in kb_page
    assert 'data-testid="kb-manage-categories"' not in kb_page
    new = await web.get("alice", "/kb/new")
    assert new.status_code == 200 and 'data-api="POST"' in new.text
    assert _options(new.text, "category_id") == [(str(notes.id), "Agents&#39; notes")]
    assert 'data-testid="kb-image-upload"' not in new.text  # images once it is saved
    # qa may read but not edit either category's articles... except none: 403.
    assert (await web.get("quinn", "/kb/new")).status_code == 403
    sue_new = (await web.get("sue", "/kb/new", category=str(notes.id))).text
    # By name: "Agents' notes" before "General".
    assert [x[0] for x in _options(sue_new, "category_id")] == [str(notes.id), str(general.id)]
    assert f'<option value="{notes.id}" selected>' in sue_new


async def test_categories_page_is_for_those_who_manage_them(web: Web) -> None:  # noqa: F811
    kb = KnowledgeBase(web.store)
    top = await kb.add_category(SUE, "Billing")
    await kb.add_category(SUE, "Refunds", parent_id=top.id, read_roles=["qa", "supervisor"])
    assert (await web.get("alice", "/kb/categories")).status_code == 403
    assert (await web.get("quinn", "/kb/categories")).status_code == 403
    r = await web.get("sue", "/kb/categories")
    assert r.status_code == 200
    assert "Billing / Refunds" in r.text
    assert 'data-path="/api/kb/categories"' in r.text  # create
    assert f'data-path="/api/kb/categories/{top.id}"' in r.text  # rename, roles, delete
    assert 'value="qa, supervisor"' in r.text  # its own read roles
    assert 'data-empty-list="null"' in r.text  # empty roles: inherit again
    assert 'data-testid="kb-manage-categories"' in (await web.get("sue", "/kb")).text
    zh = (await web.get("sue", "/kb/categories", lang="zh")).text
    assert "分类管理" in zh and "可编辑角色" in zh


def test_category_paths_name_the_ancestors() -> None:
    cats = [Category(1, "A"), Category(2, "B", 1), Category(3, "C", 2), Category(4, "D", 99)]
    assert category_paths(cats) == {1: "A", 2: "A / B", 3: "A / B / C", 4: "D"}
    assert category_paths([Category(5, "Loop", 6), Category(6, "Back", 5)]) == {
        5: "Back / Loop",
        6: "Loop / Back",
    }


async def _card(qa: QualityService) -> Scorecard:
    return await qa.add_scorecard(
        QUINN,
        Scorecard(
            "Calls",
            (
                Section(
                    "Opening",
                    (
                        ScoreItem("greeting", "Greets", 10),
                        ScoreItem("privacy", "Checks identity", 5, auto_fail=True),
                    ),
                ),
                Section(
                    "System",
                    (
                        ScoreItem(
                            "speed",
                            "Answers fast",
                            4,
                            computed="answer_timeliness",
                            target=5,
                            limit=25,
                        ),
                    ),
                ),
            ),
        ),
        now=NOW,
    )


async def test_qa_new_is_for_evaluators_and_prefilled(web: Web) -> None:  # noqa: F811
    qa = QualityService(web.store)
    card = await _card(qa)
    assert card.id is not None
    task = await qa.add_task(
        QUINN,
        EvaluationTask("December", card.id, "quinn", ("a1", "a2"), NOW - timedelta(days=7), NOW),
        now=NOW,
    )
    assert (await web.get("alice", "/qa/new")).status_code == 403
    assert 'data-testid="qa-new"' not in (await web.get("alice", "/qa")).text
    listing = (await web.get("quinn", "/qa")).text
    assert 'href="/qa/new"' in listing and "December" in listing
    assert f'href="/qa/new?task_id={task.id}&amp;agent=a2"' in listing
    form = await web.get(
        "quinn", "/qa/new", call_id="rec-call-1", recording_id="rec-0001", agent="a1"
    )
    assert form.status_code == 200
    assert 'data-path="/api/qa/evaluations"' in form.text and 'data-then="/qa/{id}"' in form.text
    assert 'value="rec-call-1"' in form.text and 'value="rec-0001"' in form.text
    assert 'value="a1"' in form.text
    assert _options(form.text, "scorecard_id") == [(str(card.id), "Calls")]
    assert f'data-scorecard="{card.id}"' in form.text
    assert '<option value="a1">' in form.text  # the ACD's agents to pick from
    _no_inline_script(form.text)
    chosen = (await web.get("quinn", "/qa/new", task_id=str(task.id))).text
    assert f'<option value="{task.id}" data-scorecard="{card.id}" selected>' in chosen
    assert (await web.get("sue", "/qa/new")).status_code == 200


async def test_a_draft_is_scored_on_its_page_and_a_published_one_is_read_only(web: Web) -> None:  # noqa: F811
    qa = QualityService(web.store)
    card = await _card(qa)
    rid = "rec-" + "0" * 23 + "1"
    await web.store.add_recording(
        RecordingData(rid, "call-1", NOW, "2026/12/07/x.wav", "wav", 8000, agent="a1")
    )
    ev = await qa.evaluate(
        QUINN, agent="a1", now=NOW, scorecard_id=card.id, recording_id=rid, scores={"greeting": 7}
    )
    assert ev.id is not None
    draft = await web.get("quinn", f"/qa/{ev.id}")
    assert draft.status_code == 200
    html = draft.text
    assert 'data-testid="qa-score-form"' in html
    assert f'data-path="/api/qa/evaluations/{ev.id}"' in html
    assert re.search(r'name="score.greeting"[^>]*max="10.0"[^>]*value="7.0"', html)
    assert 'name="score.privacy"' in html and 'data-testid="qa-fail-privacy"' in html
    assert 'name="score.speed"' not in html  # computed: shown, never typed
    assert "answer timeliness" in html and 'data-testid="qa-value-speed"' in html
    assert f'src="/api/recordings/{rid}/audio"' in html and "<audio" in html
    assert 'data-testid="qa-publish"' in html
    _no_inline_script(html)
    # A supervisor may change it too; the agent sees nothing of a draft.
    assert 'data-testid="qa-score-form"' in (await web.get("sue", f"/qa/{ev.id}")).text
    assert (await web.get("alice", f"/qa/{ev.id}")).status_code == 404
    await qa.update_evaluation(QUINN, ev.id, now=NOW, scores={"privacy": 5})
    await qa.publish(QUINN, ev.id, now=NOW)
    done = (await web.get("quinn", f"/qa/{ev.id}")).text
    assert 'data-testid="qa-score-form"' not in done and "<input" not in done.split("<main>")[1]
    own = (await web.get("alice", f"/qa/{ev.id}")).text
    assert 'data-testid="qa-score-form"' not in own and 'data-testid="qa-total"' in own


async def test_recordings_rows_link_to_a_new_evaluation_for_qa(pages: Pages) -> None:  # noqa: F811
    rid = f"rec-{1:024x}"  # agent a1's call "call1"
    link = f'href="/qa/new?recording_id={rid}&amp;call_id=call1&amp;agent=a1"'
    assert link in (await pages.get("/recordings", "quinn")).text
    agent_page = (await pages.get("/recordings", "alice")).text
    assert rid in agent_page and 'data-testid="rec-score"' not in agent_page


def test_every_kbqa_word_is_in_both_languages() -> None:
    assert set(EN_KBQA) == set(ZH_KBQA)
    for key in EN_KBQA:
        assert CATALOGS["en"][key] == EN_KBQA[key] and CATALOGS["zh"][key] == ZH_KBQA[key]


async def test_the_services_say_who_may_edit(web: Web) -> None:  # noqa: F811
    kb, qa = KnowledgeBase(web.store), QualityService(web.store)
    alice, ada = Actor("alice", "agent"), Actor("ada", "admin")
    general = await kb.add_category(SUE, "General")
    notes = await kb.add_category(SUE, "Notes", parent_id=general.id, edit_roles=["agent"])
    secret = await kb.add_category(SUE, "Secret", read_roles=["admin"], edit_roles=["agent"])
    assert [c.id for c in await kb.editable_categories(alice)] == [notes.id]  # not Secret
    assert [c.id for c in await kb.editable_categories(QUINN)] == []
    assert {c.id for c in await kb.editable_categories(ada)} == {general.id, notes.id, secret.id}
    assert await kb.may_edit(alice, notes.id) and not await kb.may_edit(alice, general.id)
    assert not await kb.may_edit(SUE, 999)
    assert kb.manages_categories(SUE) and not kb.manages_categories(QUINN)
    card = await _card(qa)
    ev = await qa.evaluate(QUINN, agent="a1", now=NOW, scorecard_id=card.id)
    assert qa.may_change(QUINN, ev) and qa.may_change(SUE, ev)
    assert not qa.may_change(Actor("quinn2", "qa"), ev) and not qa.may_change(alice, ev)
    assert qa.may_evaluate(QUINN) and not qa.may_evaluate(alice)
