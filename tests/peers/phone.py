"""A PJSUA2 softphone driven by JSON lines over stdin/stdout (one phone per process).

Theory of operation
-------------------
The pjsua2 wheel caps a process at 4 calls and its SWIG objects are not thread-safe, so the
test suite runs each phone in its own process (``python -m tests.peers.phone``) and talks
to it over a pipe:

* parent -> phone: one JSON object per line, ``{"id": 7, "cmd": "call", "uri": "sip:..."}``;
* phone -> parent: one reply per command, ``{"id": 7, "ok": true, "result": ...}`` or
  ``{"id": 7, "ok": false, "error": "..."}``, plus unsolicited events
  ``{"event": "call_state", "call": 0, "state": "CONFIRMED", ...}``.

pjlib writes straight to fd 1 (``libCreate()`` prints before any log config applies), so
the protocol uses a *duplicate* of the original stdout taken before pjsua2 is imported, and
fd 1 is then pointed at stderr (the parent sends stderr to a log file).

Everything runs on the main thread: ``threadCnt = 0`` + ``mainThreadOnly = True``; the loop
alternates ``libHandleEvents(10)`` with a short ``select`` on stdin. Media runs on pjmedia's
own clock thread (null audio device), which pjsua2 manages itself.

Call ids in the protocol are this program's own counter (pjsua recycles its call slots).
Python keeps references to every Call, player and recorder: SWIG frees what Python drops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import time
import traceback
from typing import Any

# Protocol channel: a private copy of the original stdout, taken before pjlib can write to
# fd 1. Then fd 1 goes to stderr so pjlib's chatter never corrupts the protocol.
_PROTO_FD = os.dup(1)
os.dup2(2, 1)
_proto = os.fdopen(_PROTO_FD, "w", buffering=1, encoding="utf-8")

import pjsua2 as pj  # noqa: E402  (must come after the fd shuffle)


def emit(obj: dict[str, Any]) -> None:
    _proto.write(json.dumps(obj, separators=(",", ":")) + "\n")
    _proto.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"[phone {time.monotonic():.3f}] {msg}\n")
    sys.stderr.flush()


STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_STATUS_NAMES = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}


def wait_wav_finalised(path: str, ep: pj.Endpoint, timeout: float = 2.0) -> None:
    """Poll until the RIFF/data sizes in a pjmedia WAV header agree with the file size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                head = f.read(44)
            size = os.path.getsize(path)
        except OSError:
            return
        if len(head) == 44 and int.from_bytes(head[40:44], "little") == size - 44:
            return
        ep.libHandleEvents(10)
    log(f"recorder {path}: header not finalised after {timeout}s")


class PhoneError(Exception):
    """A command that cannot be carried out; sent back as ``{"ok": false}``."""


class PhoneCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, acc: pj.Account, call_id: int, pj_call_id: int) -> None:
        super().__init__(acc, pj_call_id)
        self.phone = phone
        self.cid = call_id
        self.state = "NULL"
        self.last_status = 0
        self.aud: pj.AudioMedia | None = None
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.pending_play: tuple[str, bool] | None = None
        self.pending_record: str | None = None
        self.recorder_path = ""
        self.dtmf_received: list[str] = []
        self.info_digits: list[str] = []
        self.next_info_at = 0.0

    # -- pjsua2 callbacks (exceptions must not escape into SWIG) --
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            ci = self.getInfo()
            self.state = STATE_NAMES.get(ci.state, str(ci.state))
            self.last_status = int(ci.lastStatusCode)
            emit(
                {
                    "event": "call_state",
                    "call": self.cid,
                    "state": self.state,
                    "code": self.last_status,
                    "reason": ci.lastReason,
                    "remote_uri": ci.remoteUri,
                    "remote_contact": ci.remoteContact,
                }
            )
            if self.state == "DISCONNECTED":
                self.phone.on_call_disconnected(self)
        except Exception:
            log("onCallState failed\n" + traceback.format_exc())

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            ci = self.getInfo()
            statuses = []
            media = ci.media  # keep the vector alive while indexing (PEERS.md)
            for i in range(len(media)):
                mi = media[i]
                if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                statuses.append(MEDIA_STATUS_NAMES.get(mi.status, str(mi.status)))
                if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                    self.aud = self.getAudioMedia(i)
            emit({"event": "media_state", "call": self.cid, "status": statuses})
            if self.aud is not None:
                if self.pending_play is not None:
                    path, loop = self.pending_play
                    self.pending_play = None
                    self.start_play(path, loop)
                elif self.player is not None:
                    # A re-INVITE may have rebuilt the stream: reconnect.
                    self.player.startTransmit(self.aud)
                if self.pending_record is not None:
                    path = self.pending_record
                    self.pending_record = None
                    self.start_record(path)
                elif self.recorder is not None:
                    self.aud.startTransmit(self.recorder)
        except Exception:
            log("onCallMediaState failed\n" + traceback.format_exc())

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # NOTIFY sipfrag progress of a transfer this phone asked for (RFC 3515 §2.4.5).
        emit(
            {
                "event": "xfer_status",
                "call": self.cid,
                "code": int(prm.statusCode),
                "reason": str(prm.reason),
                "final": bool(prm.finalNotify),
            }
        )
        prm.cont = True

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        try:
            method = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
            self.dtmf_received.append(prm.digit)
            emit({"event": "dtmf", "call": self.cid, "digit": prm.digit, "method": method})
        except Exception:
            log("onDtmfDigit failed\n" + traceback.format_exc())

    # -- media helpers --
    def start_play(self, path: str, loop: bool) -> None:
        self.stop_play()
        player = pj.AudioMediaPlayer()
        player.createPlayer(path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        assert self.aud is not None
        player.startTransmit(self.aud)
        self.player = player

    def stop_play(self) -> None:
        if self.player is not None:
            if self.aud is not None:
                with contextlib.suppress(pj.Error):
                    self.player.stopTransmit(self.aud)
            self.player = None  # drops the last reference: SWIG destroys the port

    def start_record(self, path: str) -> None:
        self.stop_record()
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(path)
        assert self.aud is not None
        self.aud.startTransmit(rec)
        self.recorder = rec
        self.recorder_path = path

    def stop_record(self) -> None:
        if self.recorder is not None:
            if self.aud is not None:
                with contextlib.suppress(pj.Error):
                    self.aud.stopTransmit(self.recorder)
            # Destroying the recorder is what writes the WAV header (PEERS.md). pjmedia
            # 2.15 queues the port removal to the bridge's clock thread, so wait until
            # the header's data size matches the file before replying.
            path = self.recorder_path
            self.recorder = None
            wait_wav_finalised(path, self.phone.ep)


class PhoneAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self.phone.on_incoming_call(self, prm)
        except Exception:
            log("onIncomingCall failed\n" + traceback.format_exc())

    def onMwiInfo(self, prm: pj.OnMwiInfoParam) -> None:
        """A message-summary NOTIFY (RFC 3842), subscribed or unsolicited."""
        try:
            whole = prm.rdata.wholeMsg
            head, _, body = whole.partition("\r\n\r\n")
            waiting = None
            for line in body.splitlines():
                name, sep, value = line.partition(":")
                if sep and name.strip().lower() == "messages-waiting":
                    waiting = value.strip().lower() == "yes"
            state = ""
            for line in head.split("\r\n"):
                name, sep, value = line.partition(":")
                if sep and name.strip().lower() == "subscription-state":
                    state = value.strip()
            emit({"event": "mwi", "waiting": waiting, "body": body, "subscription_state": state})
        except Exception:
            log("onMwiInfo failed\n" + traceback.format_exc())

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.phone.reg_answers += 1
        try:
            ai = self.getInfo()
            emit(
                {
                    "event": "reg_state",
                    "code": int(prm.code),
                    "reason": prm.reason,
                    "expiration": int(prm.expiration),
                    "active": bool(ai.regIsActive),
                }
            )
        except Exception:
            log("onRegState failed\n" + traceback.format_exc())


class Phone:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = "switchboard-test-phone (pjsua2)"
        cfg.logConfig.level = args.log_level
        cfg.logConfig.consoleLevel = args.log_level
        cfg.medConfig.noVad = True  # keep sending RTP during silence
        cfg.medConfig.ecTailLen = 0
        if args.clock_rate:
            cfg.medConfig.clockRate = args.clock_rate
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = "127.0.0.1"
        tcfg.publicAddress = "127.0.0.1"
        tcfg.port = args.port
        self.tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        # A TCP transport too, so a test can register and call over TCP (RFC 3261 §18).
        tcp_cfg = pj.TransportConfig()
        tcp_cfg.boundAddress = "127.0.0.1"
        tcp_cfg.publicAddress = "127.0.0.1"
        self.tcp_tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp_cfg)
        self.ep.libStart()
        self.port = int(self.ep.transportGetInfo(self.tid).localName.rsplit(":", 1)[1])
        # SIP over TLS (RFC 3261 §26), made when a test registers over it.
        self.tls_tid: int | None = None

        self.calls: dict[int, PhoneCall] = {}
        self.accounts: list[PhoneAccount] = []
        self.next_call_id = 0
        self.auto_answer: int | None = args.auto_answer or None
        self.user = args.user
        # A local account (no registrar) for direct peer-to-peer calls.
        self.local_acc = self._make_account(
            f"sip:{self.user}@127.0.0.1:{self.port}", registrar=None
        )
        self.acc: PhoneAccount = self.local_acc
        self.reg_acc: PhoneAccount | None = None
        self.reg_answers = 0  # final answers to our REGISTERs (onRegState calls)
        self.running = True

    # -- accounts --
    def _make_account(
        self,
        id_uri: str,
        registrar: str | None,
        user: str = "",
        password: str = "",
        realm: str = "*",
        expires: int = 300,
        proxy: str | None = None,
        tcp: bool = False,
        mwi: bool = False,
        tls: bool = False,
    ) -> PhoneAccount:
        ac = pj.AccountConfig()
        ac.idUri = id_uri
        if registrar:
            ac.regConfig.registrarUri = registrar
            ac.regConfig.timeoutSec = expires
            ac.regConfig.retryIntervalSec = 0  # no silent retries: tests want each failure
            cred = pj.AuthCredInfo("digest", realm, user, 0, password)
            ac.sipConfig.authCreds.append(cred)
        else:
            ac.regConfig.registerOnAdd = False
        if proxy:
            ac.sipConfig.proxies.append(proxy)
        if mwi:  # SUBSCRIBE to message-summary for the account's own mailbox
            ac.mwiConfig.enabled = True
            ac.mwiConfig.expirationSec = 600
        # Pin the contact and SDP to loopback; no NAT tricks, no ICE.
        ac.sipConfig.transportId = self.tcp_tid if tcp else self.tid
        if tls:
            ac.sipConfig.transportId = self._tls_transport()
        ac.natConfig.iceEnabled = False
        ac.natConfig.sdpNatRewriteUse = 0
        ac.natConfig.viaRewriteUse = 0
        ac.natConfig.contactRewriteUse = 0
        ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        ac.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
        ac.mediaConfig.transportConfig.port = self.args.rtp_port
        ac.mediaConfig.transportConfig.randomizePort = self.args.rtp_port == 0
        ac.mediaConfig.lockCodecEnabled = not self.args.no_lock_codec
        acc = PhoneAccount(self)
        acc.create(ac, True)
        self.accounts.append(acc)
        return acc

    def _tls_transport(self) -> int:
        """A TLS transport on loopback; the server's certificate is not verified (a PBX's
        self-signed one, as a desk phone set to trust it)."""
        if self.tls_tid is None:
            tls_cfg = pj.TransportConfig()
            tls_cfg.boundAddress = "127.0.0.1"
            tls_cfg.publicAddress = "127.0.0.1"
            tls_cfg.tlsConfig.verifyServer = False
            tls_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            self.tls_tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls_cfg)
        return self.tls_tid

    # -- events from pjsua2 --
    def on_incoming_call(self, acc: PhoneAccount, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self, acc, self.next_call_id, prm.callId)
        self.next_call_id += 1
        self.calls[call.cid] = call
        ci = call.getInfo()
        # Extension headers (X-...) of the INVITE, e.g. the IVR key trail Switchboard adds.
        x_headers = {}
        # Call-Info / Alert-Info: the auto-answer headers a queue offer may carry.
        info_headers = {}
        for line in prm.rdata.wholeMsg.split("\r\n\r\n", 1)[0].split("\r\n"):
            name, sep, value = line.partition(":")
            if sep and name.lower().startswith("x-"):
                x_headers[name.strip()] = value.strip()
            elif sep and name.strip().lower() in ("call-info", "alert-info"):
                info_headers[name.strip().lower()] = value.strip()
        emit(
            {
                "event": "incoming_call",
                "call": call.cid,
                "remote_uri": ci.remoteUri,
                "remote_contact": ci.remoteContact,
                "local_uri": ci.localUri,
                "call_id": ci.callIdString,
                "x_headers": x_headers,
                "info_headers": info_headers,
            }
        )
        if self.auto_answer:
            op = pj.CallOpParam()
            op.statusCode = self.auto_answer
            call.answer(op)

    def on_call_disconnected(self, call: PhoneCall) -> None:
        call.stop_play()
        call.stop_record()
        call.info_digits.clear()
        call.aud = None

    # -- command helpers --
    def _call(self, msg: dict[str, Any]) -> PhoneCall:
        if not self.calls:
            raise PhoneError("no calls")
        cid = msg.get("call")
        if cid is None:
            cid = max(self.calls)
        call = self.calls.get(int(cid))
        if call is None:
            raise PhoneError(f"unknown call {cid}")
        return call

    def handle(self, msg: dict[str, Any]) -> Any:
        cmd = msg.get("cmd")
        fn = getattr(self, f"cmd_{cmd}", None)
        if fn is None:
            raise PhoneError(f"unknown command {cmd!r}")
        return fn(msg)

    # -- commands --
    def cmd_ping(self, msg: dict[str, Any]) -> Any:
        return {"port": self.port}

    def cmd_register(self, msg: dict[str, Any]) -> Any:
        registrar = msg["registrar"]  # "127.0.0.1:5070"
        user = msg["user"]
        domain = msg.get("domain", registrar)
        reg_uri = registrar if registrar.startswith("sip:") else f"sip:{registrar}"
        transport = msg.get("transport", "udp").lower()
        if transport in ("tcp", "tls"):
            reg_uri += f";transport={transport}"
        if self.reg_acc is not None:
            self.reg_acc.shutdown()
            self.reg_acc = None
        self.reg_acc = self._make_account(
            f"sip:{user}@{domain}",
            registrar=reg_uri,
            user=msg.get("auth_user", user),
            password=msg.get("password", ""),
            realm=msg.get("realm", "*"),
            expires=int(msg.get("expires", 300)),
            proxy=msg.get("proxy", f"{reg_uri};lr" if msg.get("use_proxy", True) else None),
            tcp=transport == "tcp",
            mwi=bool(msg.get("mwi", False)),
            tls=transport == "tls",
        )
        self.acc = self.reg_acc
        return {"aor": f"sip:{user}@{domain}"}

    def cmd_unregister(self, msg: dict[str, Any]) -> Any:
        if self.reg_acc is None:
            raise PhoneError("not registered")
        self.reg_acc.setRegistration(False)
        return None

    def cmd_call(self, msg: dict[str, Any]) -> Any:
        call = PhoneCall(self, self.acc, self.next_call_id, pj.PJSUA_INVALID_ID)
        self.next_call_id += 1
        self.calls[call.cid] = call
        op = pj.CallOpParam(True)
        call.makeCall(msg["uri"], op)
        return {"call": call.cid}

    def cmd_answer(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        op = pj.CallOpParam()
        op.statusCode = int(msg.get("code", 200))
        call.answer(op)
        return {"call": call.cid}

    def cmd_ringing(self, msg: dict[str, Any]) -> Any:
        return self.cmd_answer({**msg, "code": 180})

    def cmd_reject(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        op = pj.CallOpParam()
        op.statusCode = int(msg.get("code", 486))
        call.hangup(op)
        return {"call": call.cid}

    def cmd_hangup(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        op = pj.CallOpParam()
        if "code" in msg:
            op.statusCode = int(msg["code"])
        call.hangup(op)
        return {"call": call.cid}

    def cmd_reinvite(self, msg: dict[str, Any]) -> Any:
        """Send a re-INVITE with a fresh offer (a session refresh), or UPDATE with
        ``method="update"`` (RFC 3311)."""
        call = self._call(msg)
        op = pj.CallOpParam(True)
        if msg.get("method") == "update":
            call.update(op)
        else:
            op.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(op)
        return {"call": call.cid}

    def cmd_hold(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        call.setHold(pj.CallOpParam(True))
        return {"call": call.cid}

    def cmd_xfer(self, msg: dict[str, Any]) -> Any:
        """Blind transfer: REFER the far end of ``call`` to ``uri`` (RFC 3515)."""
        call = self._call(msg)
        call.xfer(str(msg["uri"]), pj.CallOpParam(True))
        return {"call": call.cid}

    def cmd_xfer_replaces(self, msg: dict[str, Any]) -> Any:
        """Attended transfer: REFER the far end of ``call`` to the far end of ``dest``,
        replacing ``dest`` (RFC 3891)."""
        call = self._call(msg)
        dest = self.calls[int(msg["dest"])]
        call.xferReplaces(dest, pj.CallOpParam(True))
        return {"call": call.cid}

    def cmd_conference(self, msg: dict[str, Any]) -> Any:
        """Three-way conference on this phone: the far ends of ``call`` and ``other`` hear
        each other (the phone mixes, as desk phones' conference key does)."""
        one = self._call(msg)
        two = self.calls[int(msg["other"])]
        if one.aud is None or two.aud is None:
            raise PhoneError("both calls need active media")
        one.aud.startTransmit(two.aud)
        two.aud.startTransmit(one.aud)
        return {"call": one.cid, "other": two.cid}

    def cmd_hangup_all(self, msg: dict[str, Any]) -> Any:
        self.ep.hangupAllCalls()
        return None

    def cmd_play(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        path, loop = str(msg["path"]), bool(msg.get("loop", True))
        if call.aud is None:
            call.pending_play = (path, loop)
            return {"call": call.cid, "deferred": True}
        call.start_play(path, loop)
        return {"call": call.cid, "deferred": False}

    def cmd_stop_play(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        call.pending_play = None
        call.stop_play()
        return None

    def cmd_record(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        path = str(msg["path"])
        if call.aud is None:
            call.pending_record = path
            return {"call": call.cid, "deferred": True}
        call.start_record(path)
        return {"call": call.cid, "deferred": False}

    def cmd_stop_record(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        call.pending_record = None
        call.stop_record()
        return None

    def cmd_send_dtmf(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        digits = str(msg["digits"])
        method = msg.get("method", "rfc4733")
        if method == "rfc4733":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.digits = digits
            call.sendDtmf(prm)
        elif method == "info":
            # INFO digits are paced by the main loop: back-to-back INFOs get reordered by
            # anything in between and the far side answers 500 Invalid CSeq (PEERS.md).
            call.info_digits.extend(digits)
        else:
            raise PhoneError(f"unknown dtmf method {method!r}")
        return None

    def cmd_codecs(self, msg: dict[str, Any]) -> Any:
        wanted = [str(c).upper() for c in msg["codecs"]]
        enabled = []
        for ci in self.ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            if name in wanted or ci.codecId.upper() in wanted:
                key = name if name in wanted else ci.codecId.upper()
                prio = 255 - wanted.index(key)
                enabled.append(ci.codecId)
            else:
                prio = 0
            self.ep.codecSetPriority(ci.codecId, prio)
        if not enabled:
            raise PhoneError(f"no codec matches {wanted}")
        return {"enabled": enabled}

    def cmd_auto_answer(self, msg: dict[str, Any]) -> Any:
        code = msg.get("code", 200)
        self.auto_answer = int(code) if code else None
        return None

    def cmd_get_info(self, msg: dict[str, Any]) -> Any:
        call = self._call(msg)
        ci = call.getInfo()
        media = ci.media
        statuses = []
        for i in range(len(media)):
            mi = media[i]
            if mi.type == pj.PJMEDIA_TYPE_AUDIO:
                statuses.append(MEDIA_STATUS_NAMES.get(mi.status, str(mi.status)))
        return {
            "call": call.cid,
            "state": STATE_NAMES.get(ci.state, str(ci.state)),
            "code": int(ci.lastStatusCode),
            "reason": ci.lastReason,
            "remote_uri": ci.remoteUri,
            "remote_contact": ci.remoteContact,
            "local_contact": ci.localContact,
            "call_id": ci.callIdString,
            "media": statuses,
            "dtmf": "".join(call.dtmf_received),
            "last_status": call.last_status,
        }

    def cmd_calls(self, msg: dict[str, Any]) -> Any:
        return [
            {"call": c.cid, "state": c.state, "code": c.last_status} for c in self.calls.values()
        ]

    def cmd_quit(self, msg: dict[str, Any]) -> Any:
        self.running = False
        return None

    # -- main loop --
    def pump_info_dtmf(self, now: float) -> None:
        for call in self.calls.values():
            if call.info_digits and now >= call.next_info_at and call.state == "CONFIRMED":
                prm = pj.CallSendDtmfParam()
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                prm.digits = call.info_digits.pop(0)
                prm.duration = 160
                try:
                    call.sendDtmf(prm)
                except pj.Error as e:
                    log(f"INFO dtmf failed: {e.info()}")
                call.next_info_at = now + self.args.info_gap

    def shutdown(self) -> None:
        for call in self.calls.values():
            call.stop_play()
            call.stop_record()
        try:
            self.ep.hangupAllCalls()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and any(
                c.state not in ("DISCONNECTED", "NULL") for c in self.calls.values()
            ):
                self.ep.libHandleEvents(20)
            if self.reg_acc is not None and self.reg_acc.getInfo().regIsActive:
                # Un-REGISTER and wait for its final answer (a challenge and the retry
                # included), at most a second.
                before = self.reg_answers
                self.reg_acc.setRegistration(False)
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and self.reg_answers == before:
                    self.ep.libHandleEvents(10)
            if self.reg_acc is not None:
                self.reg_acc.shutdown()
            for _ in range(3):
                self.ep.libHandleEvents(10)
        except pj.Error as e:
            log(f"shutdown: {e.info()}")
        # Everything was said above: without NO_NETWORK, pjsua_destroy sleeps about a
        # second "for unregistrations" on every exit, which adds up over the suite.
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


def serve(phone: Phone) -> None:
    emit({"event": "ready", "port": phone.port, "pid": os.getpid(), "user": phone.user})
    stdin_fd = sys.stdin.fileno()
    buf = b""
    while phone.running:
        phone.ep.libHandleEvents(10)
        phone.pump_info_dtmf(time.monotonic())
        r, _, _ = select.select([stdin_fd], [], [], 0.005)
        if not r:
            continue
        chunk = os.read(stdin_fd, 65536)
        if not chunk:  # parent went away
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                emit({"event": "protocol_error", "line": line.decode(errors="replace")})
                continue
            mid = msg.get("id")
            try:
                result = phone.handle(msg)
                emit({"id": mid, "ok": True, "result": result})
            except pj.Error as e:
                emit({"id": mid, "ok": False, "error": f"pjsua2: {e.info()}"})
            except Exception as e:  # a bad command must not kill the phone
                log("command failed\n" + traceback.format_exc())
                emit({"id": mid, "ok": False, "error": f"{type(e).__name__}: {e}"})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="SIP UDP port on 127.0.0.1 (0: any)")
    ap.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0: random)")
    ap.add_argument("--user", default="phone")
    ap.add_argument("--auto-answer", type=int, default=0, help="answer incoming calls with code")
    ap.add_argument("--log-level", type=int, default=3)
    ap.add_argument("--clock-rate", type=int, default=0, help="conference bridge rate (0: 16k)")
    ap.add_argument("--info-gap", type=float, default=0.25, help="seconds between INFO digits")
    ap.add_argument("--no-lock-codec", action="store_true", help="no re-INVITE to lock codec")
    args = ap.parse_args(argv)
    phone = Phone(args)
    try:
        serve(phone)
    finally:
        phone.shutdown()
        emit({"event": "exited"})
        _proto.close()
        # Skip SWIG destructors after libDestroy: they can touch freed pjsua state.
        os._exit(0)


if __name__ == "__main__":
    main()
