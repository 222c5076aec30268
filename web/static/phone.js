// Switchboard browser phone (web/phone.py): WebRTC to the server, where aiortc hands the
// audio to a SIP phone Switchboard hosts for the agent's extension.
//
// One WebSocket on /api/phone/ws carries the SDP offer/answer (ICE gathered before the
// offer is sent: no trickle), the calls' signalling and our commands. The phone lives while
// this page is open; closing the tab unregisters it and never logs the agent out.

const i18n = JSON.parse(document.getElementById("sb-i18n")?.textContent || "{}");
const t = (key) => i18n[key] ?? key;
const $ = (id) => document.getElementById(id);

let ws = null;
let pc = null;
let stream = null;
let call = null; // {id, state: "ringing" | "dialling" | "up"}
let micTimer = null;
let wantOn = false;
let retry = 1000;

function setStatus(state) {
  const el = $("phone-status");
  el.dataset.state = state;
  el.textContent = t(`phone.state.${state}`);
  const on = state !== "off";
  $("phone-on").hidden = on;
  $("phone-off").hidden = !on;
  refreshButtons();
}

function setMic(state) {
  const el = $("phone-mic");
  el.dataset.state = state;
  el.textContent = t(`phone.mic.${state}`);
}

function showError(text) {
  const el = $("phone-error");
  el.textContent = text || "";
  el.hidden = !text;
}

function refreshButtons() {
  const ready = $("phone-status").dataset.state === "ready";
  $("phone-dial").disabled = !ready || call !== null;
  $("phone-hangup").disabled = call === null;
  $("phone-ringing").hidden = !(call && call.state === "ringing");
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function iceGathered(conn) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (conn.iceGatheringState === "complete") {
        conn.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // enough candidates by then; send what we have
  });
}

async function negotiate(iceServers) {
  pc = new RTCPeerConnection({ iceServers });
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  pc.ontrack = (ev) => {
    $("phone-audio").srcObject = ev.streams[0] || new MediaStream([ev.track]);
  };
  pc.onconnectionstatechange = () => {
    if (pc && pc.connectionState === "failed") showError(t("phone.media_failed"));
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  send({ type: "offer", sdp: pc.localDescription.sdp });
}

async function onMessage(m) {
  switch (m.type) {
    case "ready":
      retry = 1000;
      await negotiate(m.ice_servers || []);
      break;
    case "answer":
      await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      break;
    case "registered":
      setStatus(m.ok ? "ready" : "failed");
      if (!m.ok) showError(m.reason);
      break;
    case "incoming":
      call = { id: m.call_id, state: "ringing" };
      $("phone-caller").textContent = m.display ? `${m.display} (${m.caller})` : m.caller;
      refreshButtons();
      break;
    case "dialling":
      call = { id: m.call_id, state: "dialling" };
      setStatus("dialling");
      break;
    case "up":
      call = { id: m.call_id, state: "up" };
      setStatus("in_call");
      break;
    case "ended":
      if (call && call.id === m.call_id) call = null;
      setStatus("ready");
      break;
    case "error":
      showError(m.message);
      break;
    default:
      break;
  }
}

function watchMicrophone() {
  clearInterval(micTimer);
  micTimer = setInterval(async () => {
    if (!pc) return;
    const stats = await pc.getStats();
    let level = null;
    stats.forEach((r) => {
      if (r.type === "media-source" && r.kind === "audio") level = r.audioLevel ?? null;
    });
    const live = stream && stream.getAudioTracks().some((tr) => tr.readyState === "live");
    if (!live) setMic("lost");
    else if (level !== null && level < 0.0005) setMic("silent");
    else setMic("ok");
  }, 2000);
}

function open() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(`${scheme}${location.host}/api/phone/ws`);
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data)).catch((e) => showError(String(e)));
  ws.onclose = (ev) => {
    teardown();
    if (ev.code >= 4000) {
      wantOn = false;
      showError(ev.reason || t("phone.refused"));
      setStatus("off");
    } else if (wantOn) {
      setStatus("connecting");
      setTimeout(open, retry); // the server restarted or the network blinked
      retry = Math.min(retry * 2, 15000);
    } else {
      setStatus("off");
    }
  };
}

async function turnOn() {
  showError("");
  setStatus("connecting");
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    setMic("ok");
  } catch (e) {
    setMic("denied");
    setStatus("off");
    showError(t("phone.mic_denied"));
    return;
  }
  wantOn = true;
  open();
  watchMicrophone();
}

function teardown() {
  if (pc) pc.close();
  pc = null;
  call = null;
}

function turnOff() {
  wantOn = false;
  if (ws) ws.close();
  teardown();
  clearInterval(micTimer);
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  stream = null;
  setMic("unknown");
  setStatus("off");
}

function press(digit) {
  if (call && call.state === "up") send({ type: "dtmf", digit });
  else $("phone-number").value += digit;
}

// What tests (and the offer card) use: the call state and WebRTC's receive figures.
window.sbPhone = {
  answer: () => send({ type: "answer_call" }),
  ringing: () => Boolean(call && call.state === "ringing"),
  async stats() {
    if (!pc) return null;
    const out = { bytesReceived: 0, packetsReceived: 0, audioLevel: 0, totalAudioEnergy: 0 };
    (await pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        out.bytesReceived += r.bytesReceived || 0;
        out.packetsReceived += r.packetsReceived || 0;
        out.audioLevel = Math.max(out.audioLevel, r.audioLevel || 0);
        out.totalAudioEnergy += r.totalAudioEnergy || 0;
      }
    });
    return out;
  },
};

function init() {
  if (!$("phone")) return;
  $("phone-on").addEventListener("click", turnOn);
  $("phone-off").addEventListener("click", turnOff);
  $("phone-answer").addEventListener("click", () => send({ type: "answer_call" }));
  $("phone-reject").addEventListener("click", () => send({ type: "reject" }));
  $("phone-hangup").addEventListener("click", () => send({ type: "hangup" }));
  $("phone-dial").addEventListener("click", () => {
    const number = $("phone-number").value.trim();
    if (/^[0-9*#]{1,32}$/.test(number)) send({ type: "dial", number });
    else showError(t("phone.bad_number"));
  });
  for (const b of document.querySelectorAll("#phone [data-digit]")) {
    b.addEventListener("click", () => press(b.dataset.digit));
  }
  window.addEventListener("beforeunload", () => {
    wantOn = false;
    if (ws) ws.close();
  });
}

init();
