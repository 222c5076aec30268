// Switchboard web panel: the knowledge-base editor and QA scoring (web/pages_kbqa.py,
// crm_kb_edit.html, crm_qa_new.html, crm_evaluation.html).
//
// The plain forms (save an article, categories, start an evaluation) are crm.js's data-api
// forms; this module adds what they cannot do: upload an image into an article and insert
// its markdown, keep a task's scorecard chosen with the task, and send a scoring form's
// item scores, auto-fail marks and comment as one PATCH (then publish). Every request goes
// through crm.js's api() with the session's CSRF header; the API checks everything again.

import { api, showError, t } from "/static/crm.js";

const $ = (id) => document.getElementById(id);

async function failure(near, r) {
  const answer = await r.json().catch(() => ({}));
  showError(near, `${t("crm.failed")}: ${answer.error || answer.detail?.[0]?.msg || r.status}`);
}

// -- images in an article ----------------------------------------------------------------------

// Where the editor last put the cursor; at the end when they never did.
function insertAtCursor(area, text) {
  const placed = area.dataset.placed === "1";
  const start = placed ? area.selectionStart : area.value.length;
  const end = placed ? area.selectionEnd : start;
  const before = area.value.slice(0, start);
  // A paragraph of its own (after a list item it would join the item).
  const gap = !before || before.endsWith("\n\n") ? "" : before.endsWith("\n") ? "\n" : "\n\n";
  area.value = `${before}${gap}${text}\n${area.value.slice(end)}`;
  const at = before.length + gap.length + text.length + 1;
  area.setSelectionRange(at, at);
  area.focus();
}

$("kb-body-input")?.addEventListener("focus", (e) => {
  e.currentTarget.dataset.placed = "1";
});

$("kb-image-upload")?.addEventListener("click", async (e) => {
  const button = e.currentTarget;
  const file = $("kb-image-file").files?.[0];
  if (!file) {
    showError(button, t("kbqa.choose_image"));
    return;
  }
  const path = `/api/kb/articles/${button.dataset.article}/images?name=${encodeURIComponent(file.name)}`;
  button.disabled = true;
  try {
    const r = await api("POST", path, file);
    if (!r.ok) {
      await failure(button, r);
      return;
    }
    const image = await r.json();
    insertAtCursor($("kb-body-input"), image.markdown);
    showError(button, "");
    $("kb-image-file").value = "";
  } finally {
    button.disabled = false;
  }
});

// -- a new evaluation: a task brings its scorecard ------------------------------------------------

function followTask() {
  const task = $("qa-new-task");
  const card = $("qa-new-scorecard");
  if (!task || !card) return;
  const chosen = task.selectedOptions[0]?.dataset.scorecard;
  if (chosen) card.value = chosen;
  card.disabled = Boolean(chosen);
}

$("qa-new-task")?.addEventListener("change", followTask);
followTask();

// -- scoring a draft -----------------------------------------------------------------------------

function scoring(form) {
  const scores = {};
  for (const input of form.querySelectorAll("input[data-item]")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    const points = Number(raw);
    const max = Number(input.max);
    if (!Number.isFinite(points) || points < 0 || points > max) {
      input.setCustomValidity(t("kbqa.points_range").replace("{max}", input.max));
      input.reportValidity();
      return null;
    }
    input.setCustomValidity("");
    scores[input.dataset.item] = points;
  }
  const failed = [...form.querySelectorAll("input[name=failed]:checked")].map((x) => x.value);
  return { scores, failed, comment: form.querySelector("textarea[name=comment]")?.value ?? "" };
}

async function save(form) {
  if (!form.reportValidity()) return false;
  const body = scoring(form);
  if (body === null) return false;
  const r = await api("PATCH", form.dataset.path, body);
  if (!r.ok) {
    await failure(form, r);
    return false;
  }
  return true;
}

const scoreForm = $("qa-score-form");
if (scoreForm) {
  scoreForm.addEventListener("input", (e) => e.target.setCustomValidity?.(""));
  scoreForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await save(scoreForm)) location.reload();
  });
  $("qa-publish")?.addEventListener("click", async (e) => {
    const button = e.currentTarget;
    if (!(await save(scoreForm))) return;
    const r = await api("POST", button.dataset.path);
    if (!r.ok) {
      await failure(scoreForm, r);
      return;
    }
    location.reload();
  });
}
