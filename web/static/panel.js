// Switchboard web panel: the live parts of the server-rendered pages (web/pages.py).
//
// One WebSocket on /api/events/ws per page, reconnected with back-off; every event either
// patches the page (the agent's state, the offer card, the current call) or fetches the
// affected fragment again (a wallboard tile or agent row, the agent's figures of today).
// Changes go to the JSON API with the session's CSRF token from /api/me. Nothing here logs
// an agent out when the tab closes.

const i18n = JSON.parse(document.getElementById("sb-i18n")?.textContent || "{}");
const t = (key) => i18n[key] ?? key;
// A pause reason or call kind: the catalog's word for built-in ones, else the name itself.
const reasonText = (name) => (name ? (i18n[`reason.${name}`] ?? name) : "");
const $ = (id) => document.getElementById(id);

let me = null; // {user, role, agent, csrf_token}
const SUPERVISOR_EXT_KEY = "sb.supervisorExtension";
// Keys typed here are text, not shortcuts.
const typing = (el) =>
  el instanceof HTMLElement &&
  (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

async function loadMe() {
  const r = await fetch("/api/me", { credentials: "same-origin" });
  if (r.status === 401) {
    location.href = "/login";
    return null;
  }
  me = await r.json();
  return me;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (!me) await loadMe();
    if (me?.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  }
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

// -- clocks: every [data-since] (epoch ms) shows the time since then --------------------------

function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function tickClocks() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since]")) {
    const since = Number(el.dataset.since);
    el.textContent = since > 0 ? fmt((now - since) / 1000) : "";
  }
}

// -- the event stream ---------------------------------------------------------------------

function setConnected(up) {
  const el = $("conn");
  if (!el) return;
  el.textContent = t(up ? "conn.up" : "conn.down");
  el.className = `conn ${up ? "conn-up" : "conn-down"}`;
  el.dataset.state = up ? "up" : "down";
}

function connect(onEvent, onOpen) {
  let delay = 500;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(`${scheme}${location.host}/api/events/ws`);
    ws.onopen = () => {
      delay = 500;
      setConnected(true);
      onOpen();
    };
    ws.onmessage = (m) => {
      try {
        const ev = JSON.parse(m.data);
        // static/crm.js (notifications, the screen pop) listens on the same stream.
        document.dispatchEvent(new CustomEvent("sb-event", { detail: ev }));
        onEvent(ev);
      } catch (err) {
        console.error("event", err);
      }
    };
    ws.onclose = async () => {
      setConnected(false);
      // Logged out or expired: the login page; else try again, waiting longer each time.
      try {
        if (!(await loadMe())) return;
      } catch {
        /* the server is down: keep trying */
      }
      setTimeout(open, delay + Math.random() * 250);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
}

// -- login and logout -----------------------------------------------------------------------

function loginPage() {
  const form = $("login");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ name: data.get("name"), password: data.get("password") }),
    });
    if (r.ok) {
      location.href = "/";
      return;
    }
    const error = $("login-error");
    error.textContent = t(
      r.status === 401 ? "login.wrong" : r.status === 429 ? "login.throttled" : "login.failed",
    );
    error.hidden = false;
  });
}

async function logoutPage() {
  await loadMe();
  await api("POST", "/api/logout");
  location.href = "/login";
}

// -- the agent panel ------------------------------------------------------------------------

function agentPage() {
  const root = $("agent");
  const agentId = root.dataset.agent;
  const recording = root.dataset.recording === "on";
  let currentCall = null;
  let lastCall = null; // the queue call wrapped up after it ends
  let offerCall = null;
  let state = $("state").dataset.state;

  const showError = (text) => {
    const el = $("action-error");
    el.textContent = text || "";
    el.hidden = !text;
  };

  const refreshToday = () => window.htmx?.trigger(document.body, "sb-today");

  function hideOffer() {
    offerCall = null;
    $("offer").hidden = true;
    $("offer-waited").removeAttribute("data-since");
  }

  function showOffer(ev) {
    offerCall = ev.call_id;
    $("offer-caller").textContent = ev.caller;
    $("offer-queue").textContent = ev.queue;
    $("offer-keys").textContent = ev.ivr_keys || t("offer.none");
    $("offer-waited").dataset.since = String(Date.now() - ev.waited_seconds * 1000);
    $("offer").hidden = false;
    tickClocks();
  }

  function showNoCall() {
    currentCall = null;
    delete $("call").dataset.callId; // calls.js: the controls act on this call
    $("call").hidden = true;
    $("call-none").hidden = false;
    $("call-since").removeAttribute("data-since");
  }

  async function loadCall(callId) {
    if (!callId) {
      showNoCall();
      return;
    }
    const r = await api("GET", `/api/calls/${encodeURIComponent(callId)}`);
    if (!r.ok) {
      showNoCall();
      return;
    }
    const call = await r.json();
    currentCall = call.id;
    // A wrap-up is about a queue call (or callback): the server refuses any other call id.
    if (call.queue) lastCall = call.id;
    $("call").dataset.callId = call.id;
    $("call-caller").textContent = call.caller;
    $("call-callee").textContent = call.callee_ext || call.callee;
    $("call-queue").textContent = call.queue || "";
    const since = Date.parse(call.answered_at || call.started_at || "");
    if (since) $("call-since").dataset.since = String(since);
    if (recording) {
      $("call-recording").textContent = t(call.recording_id ? "call.recording_on" : "call.recording_off");
    }
    $("call-none").hidden = true;
    $("call").hidden = false;
    tickClocks();
  }

  // -- wrap-up: the card shows while the agent is in wrap-up ----------------------------------
  async function showWrapUp() {
    if (!$("wrapup").hidden) return;
    $("wrapup").hidden = false;
    const r = await api("GET", `/api/agents/${encodeURIComponent(agentId)}/wrap-up`);
    if (!r.ok) return;
    const { codes, labels = {} } = await r.json();
    const select = $("wrapup-code");
    select.replaceChildren(select.options[0]);
    // "Sale made (1)" when the queue labels the code; the value sent stays the code.
    const text = (code) =>
      labels[code] ? t("wrapup.label_code").replace("{label}", labels[code]).replace("{code}", code) : code;
    for (const code of codes) select.add(new Option(text(code), code));
  }

  function hideWrapUp() {
    if ($("wrapup").hidden) return;
    $("wrapup").hidden = true;
    $("wrapup-form").reset();
  }

  async function finishWrapUp() {
    if (state !== "WRAP_UP") return;
    const body = { notes: $("wrapup-notes").value };
    const code = $("wrapup-code").value;
    if (code) body.code = code;
    if (lastCall) body.call_id = lastCall;
    const r = await api("POST", `/api/agents/${encodeURIComponent(agentId)}/wrap-up`, body);
    if (r.ok) {
      showError("");
      hideWrapUp();
      refreshAgent();
    } else {
      const err = await r.json().catch(() => ({}));
      showError(`${t("agent.action_failed")}: ${err.error || r.status}`);
    }
  }

  $("wrapup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    finishWrapUp();
  });

  function renderAgent(item) {
    state = item.state;
    if (state === "WRAP_UP") showWrapUp();
    else hideWrapUp();
    const stateEl = $("state");
    stateEl.textContent = t(`state.${item.state}`);
    stateEl.className = `state state-${item.state}`;
    stateEl.dataset.state = item.state;
    $("reason").textContent = reasonText(item.reason);
    const since = Date.parse(item.since || "");
    $("since").dataset.since = since ? String(since) : "0";
    if (item.state !== "RINGING" && offerCall) hideOffer();
    if ((item.current_call || null) !== currentCall) loadCall(item.current_call);
    tickClocks();
  }

  async function refreshAgent() {
    const r = await api("GET", "/api/agents");
    if (!r.ok) return;
    const item = (await r.json()).items.find((a) => a.id === agentId);
    if (item) renderAgent(item);
  }

  async function agentAction(action) {
    const body = action === "pause" ? { reason: $("pause-reason").value } : undefined;
    const r = await api("POST", `/api/agents/${encodeURIComponent(agentId)}/${action}`, body);
    if (r.ok) {
      showError("");
      renderAgent(await r.json());
      refreshToday();
    } else {
      const err = await r.json().catch(() => ({}));
      showError(`${t("agent.action_failed")}: ${err.error || r.status}`);
    }
  }

  for (const button of document.querySelectorAll("[data-agent-action]")) {
    button.addEventListener("click", () => agentAction(button.dataset.agentAction));
  }

  async function hangUp() {
    if (!currentCall) return;
    const r = await api("POST", `/api/calls/${encodeURIComponent(currentCall)}/hangup`);
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      showError(`${t("agent.action_failed")}: ${err.error || r.status}`);
    }
  }

  $("btn-hangup").addEventListener("click", hangUp);

  // Keyboard shortcuts (listed on the page); never while typing in a field.
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || typing(e.target)) return;
    const key = e.key.toLowerCase();
    if (key === "a") agentAction(state === "LOGGED_OUT" ? "login" : "unpause");
    else if (key === "p") agentAction("pause");
    else if (key === "h") hangUp();
    else if (key === "w") finishWrapUp();
    else return;
    e.preventDefault();
  });

  for (const button of document.querySelectorAll("[data-recording-action]")) {
    button.addEventListener("click", async () => {
      if (!currentCall) return;
      const action = button.dataset.recordingAction;
      const r = await api("POST", `/api/calls/${encodeURIComponent(currentCall)}/recording`, {
        action,
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) {
        showError("");
        $("call-recording").textContent = t(
          answer.state === "paused" ? "call.recording_paused" : "call.recording_on",
        );
      } else {
        showError(`${t("agent.action_failed")}: ${answer.error || r.status}`);
      }
    });
  }

  const onEvent = (ev) => {
    switch (ev.type) {
      case "offer":
        if (ev.agent === agentId) showOffer(ev);
        break;
      case "offer_ended":
        if (ev.agent === agentId && ev.call_id === offerCall) hideOffer();
        if (ev.agent === agentId && ev.outcome === "answered") refreshAgent();
        break;
      case "agent_state":
        if (ev.agent === agentId) {
          refreshAgent();
          refreshToday();
        }
        break;
      case "call":
        if (ev.call_id === currentCall && (ev.event === "ended" || ev.event === "retired")) {
          showNoCall();
          refreshAgent();
          // The call's record is written just after it ends: count it once it is there.
          setTimeout(refreshToday, 1500);
        } else if (ev.event === "answered") {
          refreshAgent();
        }
        break;
      case "queue":
        if (ev.agent === agentId) refreshToday();
        break;
      default:
        break;
    }
  };
  // On every (re)connect: what happened while the stream was down is read afresh.
  connect(onEvent, () => {
    refreshAgent();
    refreshToday();
  });
}

// -- the wallboard ----------------------------------------------------------------------------

function wallboardPage() {
  const dirty = new Set();
  const running = new Set();
  let timer = null;

  const urlOf = (kind, key) =>
    kind === "queue"
      ? `/wallboard/queues/${encodeURIComponent(key)}`
      : `/wallboard/agents/${encodeURIComponent(key)}`;
  const elementOf = (kind, key) =>
    document.querySelector(
      kind === "queue" ? `[data-queue="${CSS.escape(key)}"]` : `tr[data-agent="${CSS.escape(key)}"]`,
    );

  // One fetch per tile or row at a time; an event meanwhile fetches it once more after.
  async function refresh(id) {
    if (running.has(id)) {
      dirty.add(id);
      return;
    }
    const [kind, key] = id.split("\u0000");
    running.add(id);
    try {
      const r = await fetch(urlOf(kind, key), { credentials: "same-origin" });
      if (r.status === 401) location.href = "/login";
      const el = elementOf(kind, key);
      if (r.ok && el) {
        const tpl = document.createElement("template");
        tpl.innerHTML = (await r.text()).trim();
        const fresh = tpl.content.firstElementChild;
        if (fresh) el.replaceWith(fresh);
        tickClocks();
      }
    } finally {
      running.delete(id);
    }
    if (dirty.has(id)) {
      dirty.delete(id);
      refresh(id);
    }
  }

  const pending = new Set();
  function schedule(kind, key) {
    if (!key) return;
    pending.add(`${kind}\u0000${key}`);
    if (timer === null) {
      timer = setTimeout(() => {
        timer = null;
        const ids = [...pending];
        pending.clear();
        for (const id of ids) refresh(id);
      }, 50);
    }
  }

  const rows = () => [...document.querySelectorAll("tr[data-agent]")];

  const onEvent = (ev) => {
    switch (ev.type) {
      case "queue":
        schedule("queue", ev.queue);
        schedule("agent", ev.agent);
        break;
      case "agent_state": {
        schedule("agent", ev.agent);
        const row = elementOf("agent", ev.agent);
        for (const q of (row?.dataset.queues || "").split(" ")) schedule("queue", q);
        break;
      }
      case "offer":
      case "offer_ended":
        schedule("agent", ev.agent);
        break;
      case "call":
        for (const row of rows()) {
          const exts = (row.dataset.exts || "").split(" ");
          if (
            row.dataset.call === ev.call_id ||
            exts.includes(ev.caller_ext) ||
            exts.includes(ev.callee_ext)
          ) {
            schedule("agent", row.dataset.agent);
          }
        }
        break;
      default:
        break;
    }
  };
  const all = () => {
    for (const el of document.querySelectorAll("[data-queue]")) schedule("queue", el.dataset.queue);
    for (const row of rows()) schedule("agent", row.dataset.agent);
  };
  connect(onEvent, all);

  // One-click supervision and force pause/logout (supervisors): the supervisor's phone is
  // chosen once and remembered in this browser.
  const extInput = $("sup-ext");
  const status = (text, failed = false) => {
    const el = $("wall-status");
    if (!el) return;
    el.textContent = text;
    el.className = failed ? "error" : "";
  };
  if (extInput) {
    extInput.value = localStorage.getItem(SUPERVISOR_EXT_KEY) || "";
    extInput.addEventListener("change", () => {
      localStorage.setItem(SUPERVISOR_EXT_KEY, extInput.value.trim());
    });
  }
  $("agent-rows")?.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-supervise], button[data-force]");
    const row = button?.closest("tr[data-agent]");
    if (!button || !row) return;
    const agent = encodeURIComponent(row.dataset.agent);
    let r;
    if (button.dataset.supervise) {
      const extension = (extInput?.value || "").trim();
      if (!/^[0-9]+$/.test(extension)) {
        status(t("wall.need_extension"), true);
        extInput?.focus();
        return;
      }
      localStorage.setItem(SUPERVISOR_EXT_KEY, extension);
      r = await api("POST", `/api/agents/${agent}/supervise`, {
        mode: button.dataset.supervise,
        extension,
      });
    } else {
      r = await api("POST", `/api/agents/${agent}/${button.dataset.force}`);
    }
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      status(`${t("wall.action_failed")}: ${answer.error || r.status}`, true);
    } else if (answer.originate_id) {
      status(`${t("wall.ringing_you")} (${t(`wall.${answer.mode}`)} · ${row.cells[0].textContent})`);
    } else if (answer.supervising_call_id) {
      status(`${t("wall.switched")}: ${t(`wall.${answer.mode}`)}`);
    } else {
      status(t("wall.done"));
      schedule("agent", row.dataset.agent);
    }
  });

  $("btn-fullscreen")?.addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen?.();
  });
}

// -- start ----------------------------------------------------------------------------------

const pages = {
  login: loginPage,
  logout: logoutPage,
  agent: () => loadMe().then(agentPage),
  wallboard: () => loadMe().then(wallboardPage),
};
tickClocks();
setInterval(tickClocks, 1000);
pages[document.body.dataset.page]?.();
