// Switchboard agent panel: the controls of the current call and the offer card's buttons
// (web/templates/_call_controls.html; routes in web/api_calls.py, docs/api.md "Call controls").
//
// panel.js keeps the current call's id in #call[data-call-id]; this module acts on it:
// hold/resume, mute/unmute, keypad digits, blind/consult transfer, conference, complete or
// cancel a consultation, and reject (or accept) a ringing offer. Every change goes to the
// JSON API with the session's CSRF token; the answer's state is what the buttons show.

const i18n = JSON.parse(document.getElementById("sb-i18n")?.textContent || "{}");
const t = (key) => i18n[key] ?? key;
const $ = (id) => document.getElementById(id);
const typing = (el) =>
  el instanceof HTMLElement &&
  (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

let csrf = null;

async function api(path, body, method = "POST") {
  if (csrf === null) {
    const me = await fetch("/api/me", { credentials: "same-origin" });
    if (me.status === 401) {
      location.href = "/login";
      return null;
    }
    csrf = (await me.json()).csrf_token || "";
  }
  const headers = { Accept: "application/json", "X-CSRF-Token": csrf };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) location.href = "/login";
  return r;
}

function callControls() {
  const root = $("agent");
  const box = $("call-controls");
  if (!root || !box) return;
  const agentId = root.dataset.agent;
  const callId = () => $("call")?.dataset.callId || null;
  let state = { on_hold: false, muted: false, third_party: null };

  const showError = (text) => {
    const el = $("action-error");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  };

  function render() {
    $("call-controls").querySelector("[data-call-action=hold]").hidden = state.on_hold;
    $("call-controls").querySelector("[data-call-action=resume]").hidden = !state.on_hold;
    $("call-controls").querySelector("[data-call-action=mute]").hidden = state.muted;
    $("call-controls").querySelector("[data-call-action=unmute]").hidden = !state.muted;
    const third = state.third_party;
    $("consult-actions").hidden = !third;
    const complete = box.querySelector("[data-consult=complete]");
    complete.hidden = !third || third.mode !== "consult";
    const words = [];
    if (state.on_hold) words.push(t("calls.on_hold"));
    if (state.muted) words.push(t("calls.muted"));
    if (third) {
      const mode = third.mode === "consult" ? "calls.consulting" : "calls.conferencing";
      const how = third.answered ? "calls.talking" : "calls.ringing";
      words.push(`${t(mode)} ${third.target} (${t(how)})`);
    }
    const status = $("calls-status");
    status.textContent = words.join(" · ");
    status.dataset.onHold = String(state.on_hold);
    status.dataset.muted = String(state.muted);
    status.dataset.third = third ? `${third.mode}:${third.answered ? "answered" : "ringing"}` : "";
    pollThirdParty();
  }

  // While a consulted or conferenced party rings, its answer is read every second.
  let polling = null;
  function pollThirdParty() {
    const third = state.third_party;
    if (polling !== null || !third || third.answered) return;
    polling = setTimeout(async () => {
      polling = null;
      const id = callId();
      if (!id || !state.third_party) return;
      const r = await api(`/api/calls/${encodeURIComponent(id)}/controls`, undefined, "GET");
      if (r?.ok) {
        const answer = await r.json();
        if (callId() === id) {
          state = { on_hold: answer.on_hold, muted: answer.muted, third_party: answer.third_party };
          render();
        }
      }
    }, 1000);
  }

  // A new call (or a reloaded page) reads the controls' state from the server.
  async function reset() {
    state = { on_hold: false, muted: false, third_party: null };
    render();
    const id = callId();
    if (!id) return;
    const r = await api(`/api/calls/${encodeURIComponent(id)}/controls`, undefined, "GET");
    if (r?.ok && callId() === id) {
      const answer = await r.json();
      state = { on_hold: answer.on_hold, muted: answer.muted, third_party: answer.third_party };
      render();
    }
  }

  async function act(path, body, onOk) {
    const id = callId();
    if (!id) return;
    const r = await api(`/api/calls/${encodeURIComponent(id)}/${path}`, body);
    if (!r) return;
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      showError(`${t("agent.action_failed")}: ${answer.error || r.status}`);
      return;
    }
    showError("");
    if ("on_hold" in answer) {
      state = {
        on_hold: answer.on_hold,
        muted: answer.muted,
        third_party: answer.third_party,
      };
      render();
    }
    onOk?.(answer);
  }

  box.addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (!button) return;
    if (button.dataset.callAction) {
      act(button.dataset.callAction);
    } else if (button.dataset.dtmf) {
      act("dtmf", { digits: button.dataset.dtmf });
    } else if (button.dataset.xfer) {
      const target = $("xfer-target").value.trim();
      if (!target) {
        showError(t("calls.need_target"));
        $("xfer-target").focus();
        return;
      }
      const mode = button.dataset.xfer;
      if (mode === "conference") act("conference", { target });
      else
        act("transfer", { target, mode }, (answer) => {
          if (answer.new_call_id) $("calls-status").textContent = t("calls.transferred");
        });
    } else if (button.dataset.consult === "complete") {
      act("transfer/complete", undefined, () => {
        $("calls-status").textContent = t("calls.transferred");
      });
    } else if (button.dataset.consult === "cancel") {
      act("transfer/cancel");
    }
  });

  // -- the offer card ----------------------------------------------------------------------
  async function offer(action) {
    if ($("offer")?.hidden) return;
    // With the browser phone ringing, accepting is answering in the browser (phone.js).
    if (action === "accept" && window.sbPhone?.ringing()) {
      window.sbPhone.answer();
      showError("");
      return;
    }
    const r = await api(`/api/agents/${encodeURIComponent(agentId)}/offer/${action}`);
    if (!r) return;
    const answer = await r.json().catch(() => ({}));
    if (r.ok) showError("");
    else if (action === "accept" && r.status === 409) showError(t("offer.answer_on_phone"));
    else showError(`${t("agent.action_failed")}: ${answer.error || r.status}`);
  }
  for (const button of document.querySelectorAll("[data-offer]")) {
    button.addEventListener("click", () => offer(button.dataset.offer));
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || typing(e.target)) return;
    const key = e.key.toLowerCase();
    if (key === "o" && callId()) act(state.on_hold ? "resume" : "hold");
    else if (key === "m" && callId()) act(state.muted ? "unmute" : "mute");
    else if (key === "r") offer("reject");
    else return;
    e.preventDefault();
  });

  // A new call (or none) starts with fresh controls.
  new MutationObserver(reset).observe($("call"), {
    attributes: true,
    attributeFilter: ["data-call-id"],
  });
  reset();
}

callControls();
