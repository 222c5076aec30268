// Switchboard web panel, CRM parts (web/pages_crm.py): the forms and buttons of the
// customer, ticket and knowledge-base pages, the notification badge, list and toasts of
// every page, and the screen pop on the agent panel.
//
// Pages only read; every change is a form or button with data-api (the method) and
// data-path (the JSON API route), posted here with the session's CSRF token. The events
// come from panel.js's WebSocket ("sb-event" on document) on the agent panel and the
// wallboard; other pages open their own.

const i18n = JSON.parse(document.getElementById("sb-i18n")?.textContent || "{}");
export const t = (key) => i18n[key] ?? key;
const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page || "";

let me = null;

async function loadMe() {
  const r = await fetch("/api/me", { credentials: "same-origin" });
  if (!r.ok) return null;
  me = await r.json();
  return me;
}

// A Blob (a file) is sent as it is, with its own type; anything else as JSON.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (!me) await loadMe();
    if (me?.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  }
  const raw = body instanceof Blob;
  if (raw) headers["Content-Type"] = body.type || "application/octet-stream";
  else if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined || raw ? body : JSON.stringify(body),
  });
  if (r.status === 401) location.href = "/login";
  return r;
}

export const el = (tag, text, attrs = {}) => {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

// -- forms and buttons: data-api + data-path -------------------------------------------------

function valueOf(input) {
  const kind = input.dataset.type || "";
  if (kind === "bool") return input.checked;
  if (kind === "raw") return input.value; // markdown: kept as typed, even empty
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (kind === "list") return raw.split(/[,，]/).map((x) => x.trim()).filter(Boolean);
  if (kind === "number") return Number(raw);
  if (kind === "datetime") return new Date(raw).toISOString();
  return raw;
}

export function bodyOf(form) {
  const body = {};
  const emptyAsNull = form.dataset.empty === "null";
  for (const input of form.querySelectorAll("input[name], select[name], textarea[name]")) {
    let value = valueOf(input);
    if (value === undefined) {
      if (!emptyAsNull || input.name.startsWith("custom.")) continue;
      const list = input.dataset.type === "list" && input.dataset.emptyList !== "null";
      value = list ? [] : null;
    }
    if (input.name.startsWith("custom.")) {
      body.custom = body.custom || {};
      body.custom[input.name.slice(7)] = value;
    } else {
      body[input.name] = value;
    }
  }
  return body;
}

export function showError(near, text) {
  const box = near.closest("form, section, article")?.querySelector(".error");
  if (!box) return;
  box.textContent = text || "";
  box.hidden = !text;
}

export async function send(source, body) {
  const r = await api(source.dataset.api, source.dataset.path, body);
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) {
    showError(source, `${t("crm.failed")}: ${answer.error || answer.detail?.[0]?.msg || r.status}`);
    return;
  }
  const then = source.dataset.then;
  if (then) location.href = then.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(answer[k]));
  else location.reload();
}

document.addEventListener("submit", (e) => {
  const form = e.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
  e.preventDefault();
  send(form, bodyOf(form));
});

document.addEventListener("click", (e) => {
  const button = e.target.closest?.("button[data-api]");
  if (!button || button.form) return;
  e.preventDefault();
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  send(button, button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
});

// -- notifications ------------------------------------------------------------------------------

function kindText(n) {
  return t(`notif.${n.kind}`);
}

function linkOf(n) {
  if (n.ticket_id) return `/tickets/${n.ticket_id}`;
  if (n.customer_id) return `/customers/${n.customer_id}`;
  return null;
}

async function markRead(id) {
  await api("POST", `/api/notifications/${id}/read`);
  loadNotifications();
}

async function loadNotifications() {
  const badge = $("notif-badge");
  if (!badge) return;
  const r = await api("GET", "/api/notifications?per_page=20");
  if (!r.ok) return;
  const { items, unread } = await r.json();
  $("notif-count").textContent = String(unread);
  badge.classList.toggle("notif-unread", unread > 0);
  const list = $("notif-items");
  list.replaceChildren();
  for (const n of items) {
    const li = el("li", null, { "data-notification": String(n.id) });
    li.className = n.read ? "notif-read" : "notif-new";
    li.append(el("strong", kindText(n)), " ");
    const href = linkOf(n);
    li.append(href ? el("a", n.message, { href }) : el("span", n.message));
    if (!n.read) {
      const b = el("button", t("notif.mark_read"), { type: "button" });
      b.className = "small";
      b.addEventListener("click", () => markRead(n.id));
      li.append(" ", b);
    }
    list.append(li);
  }
  $("notif-empty").hidden = items.length > 0;
}

function toast(n) {
  const box = $("toasts");
  if (!box) return;
  const item = el("div", null, { role: "status", "data-testid": "toast" });
  item.className = "toast";
  item.append(el("strong", kindText(n)), " ");
  const href = linkOf(n);
  item.append(href ? el("a", n.message, { href }) : el("span", n.message));
  box.append(item);
  setTimeout(() => item.remove(), 10000);
}

$("notif-badge")?.addEventListener("click", () => {
  const list = $("notif-list");
  list.hidden = !list.hidden;
  $("notif-badge").setAttribute("aria-expanded", String(!list.hidden));
});

// -- the screen pop (agent panel) -------------------------------------------------------------

async function showScreenPop(callId) {
  const card = $("screenpop");
  if (!card) return;
  const r = await api("GET", `/api/screenpop/${encodeURIComponent(callId)}`);
  if (!r.ok) return;
  const pop = await r.json();
  const who = $("pop-customer");
  who.replaceChildren();
  const customer = pop.customer || {};
  if (pop.known && customer.id && !customer.private) {
    who.append(el("a", customer.name, { href: `/customers/${customer.id}`, "data-testid": "pop-customer-link" }));
  } else if (pop.known) {
    who.append(el("span", customer.name));
  } else {
    who.append(
      el("span", `${pop.caller} · `),
      el("a", t("pop.new_customer"), {
        href: `/customers/new?number=${encodeURIComponent(pop.caller)}`,
        "data-testid": "pop-new-customer",
      }),
    );
  }
  $("pop-grade").textContent = customer.grade || "";
  $("pop-keys").textContent = pop.ivr_keys || t("offer.none");
  $("pop-blacklisted").hidden = !pop.blacklisted;
  const tickets = $("pop-tickets");
  tickets.replaceChildren();
  for (const tk of pop.tickets) {
    const li = el("li", null, { "data-testid": "pop-ticket" });
    li.append(el("a", tk.number, { href: `/tickets/${tk.number}` }), ` ${tk.title} · ${t(`tkstate.${tk.state}`)} · ${t(`prio.${tk.priority}`)}`);
    tickets.append(li);
  }
  if (!pop.tickets.length) tickets.append(el("li", t("crm.none")));
  const calls = $("pop-calls");
  calls.replaceChildren();
  for (const c of pop.calls) {
    calls.append(el("li", `${new Date(c.start).toLocaleString()} · ${c.disposition} · ${c.queue || ""} ${c.agent || ""}${c.ivr_keys ? ` · ${c.ivr_keys}` : ""}`));
  }
  if (!pop.calls.length) calls.append(el("li", t("crm.none")));
  const params = new URLSearchParams({ call_id: callId });
  if (pop.known && customer.id && !customer.private) params.set("customer_id", String(customer.id));
  $("pop-new-ticket").href = `/tickets/new?${params}`;
  card.hidden = false;
}

// -- events -----------------------------------------------------------------------------------

function onEvent(ev) {
  if (ev.type === "notification") {
    toast(ev.notification);
    loadNotifications();
  } else if (ev.type === "offer" && page === "agent") {
    const agent = $("agent")?.dataset.agent;
    if (ev.agent === agent) showScreenPop(ev.call_id);
  }
}

document.addEventListener("sb-event", (e) => onEvent(e.detail));

function setConnected(up) {
  const pill = $("conn");
  if (!pill) return;
  pill.textContent = t(up ? "conn.up" : "conn.down");
  pill.className = `conn ${up ? "conn-up" : "conn-down"}`;
  pill.dataset.state = up ? "up" : "down";
}

function ownStream() {
  let delay = 1000;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(`${scheme}${location.host}/api/events/ws`);
    ws.onopen = () => {
      delay = 1000;
      setConnected(true);
      loadNotifications();
    };
    ws.onmessage = (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch (err) {
        console.error("event", err);
      }
    };
    ws.onclose = () => {
      setConnected(false);
      setTimeout(open, delay + Math.random() * 250);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
}

if ($("notif-badge")) {
  loadNotifications();
  // The agent panel and the wallboard have panel.js's stream; the other pages their own.
  if (page !== "agent" && page !== "wallboard" && page !== "logout") ownStream();
}
