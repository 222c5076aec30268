"""The SIP server: wires the stack, authentication, the registrar and the B2BUA together.

Theory of operation
-------------------
:class:`SipServer` is the transaction user of :class:`~pbx.stack.SipStack`. For each new
request it decides, in this order (RFC 3261 §8.2 for a UAS, §10.3 for a registrar):

1. a throttled source gets 403 (repeated authentication failures, :mod:`pbx.throttle`);
2. requests inside a dialog (To tag present) go to the B2BUA, else 481;
3. CANCEL goes to the call whose INVITE it cancels (§9.2), else 481;
4. OPTIONS is answered 200 without authentication (used as a keep-alive and by monitors);
5. REGISTER and INVITE must carry valid Digest credentials (401 / 407 otherwise, RFC 7616);
   a missing extension is answered exactly like a wrong password;
6. REGISTER goes to the registrar; INVITE is routed to the callee's contacts (404 unknown
   extension, 480 not registered) and becomes a B2BUA call.

Persistence is not this package's business: bindings and call records leave through the
:class:`Persistence` protocol, which the service layer implements with the store. Writes are
fire-and-forget tasks so signalling never waits for the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from media import LegInactive, MediaInterface
from media.dtmf import DtmfReceived
from media.engine import MediaEvent
from media.player import Playlist, load_prompt
from media.tones import ToneSource

from .b2bua import ALLOW, B2bua, Call
from .control import CallControl
from .dialog import Dialog, Flow
from .dialplan import Destination, DestinationKind, Dialplan, RouteDecision
from .digest import AuthOutcome, DigestAuthenticator, DigestError, parse_credentials
from .events import CallArrived, RegistrationChanged
from .features import (
    ExtensionSettings,
    Feature,
    FeatureCodes,
    FeatureRequest,
    route,
)
from .location import Contact, LocationStore
from .message import (
    ParseError,
    Request,
    Response,
    make_response,
    unsupported_extensions,
    validate_for_uas,
)
from .mwi import CONTENT_TYPE as MWI_CONTENT_TYPE
from .mwi import EVENT_PACKAGE as MWI_EVENT
from .mwi import (
    MessageSummary,
    Subscription,
    SubscriptionEvent,
    Subscriptions,
    decide_subscribe,
)
from .persistence import CallDetail, Persistence, StoredBinding, WriteBehind
from .registrar import BindingChange, Registrar
from .stack import ListenSpec, SipStack, new_tag
from .throttle import FailureThrottle
from .tls import TlsSettings, secure_only, sips_refusal
from .transaction import AckNotReceived, RequestReceived, Timers
from .trunk_driver import TrunkDriver
from .trunk_inbound import InboundTrunk, TrunkMatcher
from .trunk_outbound import ExtensionLimits, OutboundPolicy, OutboundTrunk, OutsideRoute
from .trunks import Trunk, TrunkStatus

__all__ = ["Extension", "Persistence", "ServerSettings", "SipServer", "StoredBinding"]

log = structlog.get_logger("pbx.server")

DEFAULT_FEATURE_CODES: dict[str, str] = {
    "forward_all_on": "*72",
    "forward_all_off": "*73",
    "forward_busy_on": "*90",
    "forward_busy_off": "*91",
    "forward_no_answer_on": "*92",
    "forward_no_answer_off": "*93",
    "dnd_on": "*78",
    "dnd_off": "*79",
    "pickup": "*8",
    "directed_pickup": "**",
    "voicemail_own": "*97",
    "voicemail_any": "*98",
}

# The track that ships with the project (media/prompts/make_moh.py made it).
DEFAULT_MUSIC_ON_HOLD = Path(__file__).resolve().parent.parent / "media" / "prompts" / "moh.wav"


@dataclass(frozen=True, slots=True)
class Extension:
    number: str
    name: str
    password: str
    ring_timeout: float = 30.0
    pickup_group: str | None = None
    # How the phone sends DTMF: "auto" listens in-band when no telephone-event was
    # negotiated; "inband" always; "rfc4733"/"info" never run the audio detector.
    dtmf_mode: str = "auto"
    # Digest algorithms offered to and accepted from this extension, preferred first;
    # None = the realm's (``ServerSettings.algorithms``).
    auth_algorithms: tuple[str, ...] | None = None
    # Voicemail (the extension's ``voicemail:`` config): unanswered / busy calls roll to the
    # mailbox of the same number; how its phones get message-waiting NOTIFYs (RFC 3842).
    voicemail_on_busy: bool = False
    voicemail_on_no_answer: bool = False
    mwi: str = "subscribe"  # subscribe, unsolicited, off
    # Its phones answer queue offers by themselves (Call-Info answer-after=0, Alert-Info).
    auto_answer: bool = False


@dataclass(frozen=True, slots=True)
class Conference:
    number: str
    name: str
    max_members: int = 20


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: tuple[ListenSpec, ...]
    realm: str = "switchboard"
    advertise_host: str | None = None
    user_agent: str = "Switchboard"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    algorithms: tuple[str, ...] = ("MD5",)
    nonce_lifetime: float = 300.0
    max_failures: int = 5
    failure_window: float = 60.0
    block_seconds: float = 300.0
    rtp_host: str = "0.0.0.0"
    rtp_ports: tuple[int, int] = (10000, 20000)
    rtp_inactivity_timeout: float = 60.0
    timers: Timers | None = None
    music_on_hold: tuple[str, ...] = (str(DEFAULT_MUSIC_ON_HOLD),)
    tone_plan: str = "us"
    feature_codes: tuple[tuple[str, str], ...] = ()  # (feature name, code); () = defaults
    tls: TlsSettings | None = None  # certificate, key and carriers' contexts (pbx.tls)


class SipServer:
    def __init__(
        self,
        settings: ServerSettings,
        extensions: dict[str, Extension],
        persistence: Persistence | None = None,
        *,
        conferences: dict[str, Conference] | None = None,
        dialplan: Dialplan | None = None,
        media: MediaInterface,
        prompt_path: Callable[[str], str | None] | None = None,
        inbound_trunks: Sequence[InboundTrunk] = (),
        outbound_trunks: Sequence[OutboundTrunk] = (),
        outbound_policy: OutboundPolicy | None = None,
        trunks: dict[str, Trunk] | None = None,
    ) -> None:
        self.settings = settings
        # Toll-fraud guards checked before any trunk is used (None: every call allowed).
        self.outbound_policy = outbound_policy
        # Where calls to outside numbers go, by trunk name (config order kept).
        self.outbound_trunks: dict[str, OutboundTrunk] = {t.name: t for t in outbound_trunks}
        # Carriers trusted by source address and port (or acl network) for their calls.
        self.trunk_matcher = TrunkMatcher(inbound_trunks)
        self.extensions = extensions
        self.conferences = conferences or {}
        self.dialplan = dialplan
        # Resolves a prompt name (or file) of the dialplan to a file (the config folder's).
        self.prompt_path: Callable[[str], str | None] = prompt_path or (lambda name: None)
        self.feature_codes = FeatureCodes(dict(settings.feature_codes) or DEFAULT_FEATURE_CODES)
        self.ext_settings: dict[str, ExtensionSettings] = {}
        self.persistence = persistence
        self.stack = SipStack(
            timers=settings.timers,
            advertise_host=settings.advertise_host,
            user_agent=settings.user_agent,
            tls=settings.tls,
        )
        # The nonce key is derived from the credentials so it survives restarts (phones
        # holding a nonce keep working) and changes when passwords change.
        secret = hashlib.sha256(
            (
                "switchboard-nonce\x00"
                + settings.realm
                + "\x00"
                + "\x00".join(f"{k}:{e.password}" for k, e in sorted(extensions.items()))
            ).encode()
        ).digest()
        self.auth = DigestAuthenticator(
            settings.realm, secret, settings.algorithms, settings.nonce_lifetime
        )
        # block_seconds 0 means "never block" (documented in the example config).
        self.throttle: FailureThrottle | None = (
            FailureThrottle(
                max_failures=settings.max_failures,
                window=settings.failure_window,
                block_seconds=settings.block_seconds,
            )
            if settings.block_seconds > 0
            else None
        )
        self.location = LocationStore()
        self.registrar = Registrar(
            self.location,
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            default_expires=settings.default_expires,
        )
        # The media implementation comes from outside (app.media.build_media): in process or
        # worker processes, the SIP core does not choose.
        self.media: MediaInterface = media
        self.media.subscribe(self._on_media_event)
        media_host = settings.advertise_host
        if media_host is None and settings.rtp_host not in ("0.0.0.0", "::"):
            media_host = settings.rtp_host
        self.b2bua = B2bua(
            self.stack,
            self.media,
            media_host=media_host,
            on_call_ended=self._on_call_ended,
            contacts_of=self._contacts_of,
            ring_timeout_of=lambda ext: self.extensions[ext].ring_timeout,
            music_on_hold=self._start_music_on_hold,
            stop_music=self._stop_music_on_hold,
            forward_of=self._forward_of,
            divert=self._divert,
            outside=lambda number, ext: self.outside_route(number, ext),
            dtmf_mode_of=lambda ext: e.dtmf_mode if (e := self.extensions.get(ext)) else "auto",
        )
        # The call-control seam: services (ACD, IVR, ...) drive calls only through this.
        self.control = CallControl(
            self.b2bua,
            is_extension=lambda number: number in self.extensions,
            tone_plan=lambda: self.settings.tone_plan,
            message_waiting=self.message_waiting,
            set_class_of_service=self._set_class_of_service,
            resolve=self._destination,
            auto_answer_of=lambda ext: e.auto_answer if (e := self.extensions.get(ext)) else False,
            refusal_of=self._refusal_of,
        )
        # Message-waiting indication (RFC 3842): subscriptions and their dialogs.
        self.mwi = Subscriptions()
        self._mwi_dialogs: dict[tuple[str, str, str], Dialog] = {}
        self.stack.on_request = self._on_request
        self.stack.on_ack_not_received = self._on_ack_not_received
        self.writes = WriteBehind(persistence) if persistence is not None else None
        self._expiry_handle: asyncio.TimerHandle | None = None
        self.call_details: list[CallDetail] = []  # recent CDRs, for tests and the CLI
        # Trunk registration and qualify (issue 16); trunks are read at start only.
        self.trunks: dict[str, Trunk] = dict(trunks or {})
        self.trunk_driver = TrunkDriver(self.stack, self.trunks.values())

    def registrations(self) -> list[tuple[str, Contact, int]]:
        """Every live binding: (AOR, contact, seconds until it expires), by AOR."""
        now = asyncio.get_running_loop().time()
        return sorted(
            ((aor, c, c.remaining(now)) for aor, c in self.location.all()),
            key=lambda r: (r[0], r[1].uri),
        )

    def trunk_states(self) -> dict[str, TrunkStatus]:
        """Registration and qualify state of every trunk, by name (a snapshot)."""
        return self.trunk_driver.states()

    # -- figures for metrics and the API (read-only; call them on the event loop) ----------

    def sip_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Requests received by method (unknown methods as ``OTHER``; retransmissions
        included) and responses sent by status code as text (each once), since start.
        Copies: the counting itself is a dict increment per message in the transaction
        layer (:attr:`pbx.transaction.TransactionLayer.requests_received`)."""
        layer = self.stack.layer
        responses = {str(code): n for code, n in layer.responses_sent.items()}
        return dict(layer.requests_received), responses

    def registration_count(self) -> int:
        """Registered contacts now (every unexpired binding of every extension)."""
        return self.location.active_count(asyncio.get_running_loop().time())

    def call_count(self) -> int:
        """Calls in progress: being set up, ringing or up."""
        return self.b2bua.call_count()

    # -- reconfiguration ---------------------------------------------------------------

    def reconfigure(
        self,
        extensions: dict[str, Extension],
        conferences: dict[str, Conference],
        feature_codes: tuple[tuple[str, str], ...] = (),
        dialplan: Dialplan | None = None,
        inbound_trunks: Sequence[InboundTrunk] | None = None,
        outbound_policy: OutboundPolicy | None = None,
    ) -> None:
        """Swap the routing configuration atomically (``config reload`` / SIGHUP).

        Calls in progress keep what they started with; the next request sees the new
        tables. Sockets, the RTP range and the store are not reloadable (restart for those).
        The nonce key stays the one computed at start, so phones keep their nonces.
        """
        self.extensions = extensions
        self.conferences = conferences
        self.feature_codes = FeatureCodes(dict(feature_codes) or DEFAULT_FEATURE_CODES)
        self.dialplan = dialplan
        if inbound_trunks is not None:
            self.trunk_matcher = TrunkMatcher(inbound_trunks)
        if outbound_policy is not None:
            old = self.outbound_policy
            self.outbound_policy = (
                old.reconfigured(
                    outbound_policy.classes, outbound_policy.limits, outbound_policy.system
                )
                if old is not None
                else outbound_policy
            )
        self.ext_settings = {k: v for k, v in self.ext_settings.items() if k in extensions}
        log.info("config_reloaded", extensions=len(extensions), conferences=len(conferences))

    def configure_auth(self, settings: ServerSettings) -> None:
        """Apply ``settings``' digest and registration values live (``config reload``).

        Nonces already issued stay valid with their nonce-counts; the throttle keeps the
        failures it has counted and the sources it blocks, under the new limits. The other
        fields of ``settings`` (sockets, realm, RTP) are taken at start only.
        """
        self.auth.configure(settings.algorithms, settings.nonce_lifetime)
        if settings.block_seconds <= 0:
            self.throttle = None
        elif self.throttle is None:
            self.throttle = FailureThrottle(
                max_failures=settings.max_failures,
                window=settings.failure_window,
                block_seconds=settings.block_seconds,
            )
        else:
            self.throttle.max_failures = settings.max_failures
            self.throttle.window = settings.failure_window
            self.throttle.block_seconds = settings.block_seconds
        self.registrar.min_expires = settings.min_expires
        self.registrar.max_expires = settings.max_expires
        self.registrar.default_expires = settings.default_expires

    # -- media helpers -----------------------------------------------------------------

    def _set_class_of_service(self, ext: str, class_of_service: str | None) -> None:
        if self.outbound_policy is not None:
            self.outbound_policy.set_class_of_service(ext, class_of_service)
            log.info("class_of_service_set", ext=ext, class_of_service=class_of_service)

    def _contacts_of(self, ext: str) -> list[Contact] | None:
        """Registered contacts of ``ext``; None when the extension does not exist."""
        if ext not in self.extensions:
            return None
        return self.location.lookup(ext, asyncio.get_running_loop().time())

    def _forward_of(self, ext: str, reason: str) -> str | None:
        settings = self.ext_settings.get(ext)
        return None if settings is None else settings.forward_for(reason)

    def _start_music_on_hold(self, leg_id: str) -> object:
        """Loop the music-on-hold playlist to ``leg_id`` (files are cached after first use)."""
        source = Playlist(self.settings.music_on_hold, rate=8000, loop=True)
        return self.media.play(leg_id, source)

    def _stop_music_on_hold(self, player: object) -> None:
        self.media.stop_play(player)  # type: ignore[arg-type]

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.media.start()  # media worker processes, when configured, spawn here
        # Decode and resample the hold music once, off the loop, before the first hold.
        for path in self.settings.music_on_hold:
            await asyncio.to_thread(load_prompt, path, 8000)
        if self.persistence is not None:
            await self._restore_bindings()
            self.ext_settings = {
                ext: v
                for ext, v in (await self.persistence.load_settings()).items()
                if ext in self.extensions
            }
        await self.stack.listen(list(self.settings.listen))
        self._schedule_expiry()
        self.trunk_driver.start()

    async def stop(self) -> None:
        self.b2bua.hangup_all()
        await asyncio.sleep(0.05)  # let the BYEs leave
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
        await self.trunk_driver.stop()  # unregisters from the carriers
        await self.stack.close()
        await self.media.close()
        if self.writes is not None:
            await self.writes.close()

    async def _restore_bindings(self) -> None:
        assert self.persistence is not None
        loop_now = asyncio.get_running_loop().time()
        wall = time.time()
        restored = 0
        for b in await self.persistence.load_bindings():
            remaining = b.expires_at_epoch - wall
            if remaining <= 0 or b.aor not in self.extensions:
                continue
            self.location.put(
                b.aor,
                Contact(
                    uri=b.contact_uri,
                    source=b.source,
                    transport=b.transport,
                    expires_at=loop_now + remaining,
                    call_id=b.call_id,
                    cseq=b.cseq,
                    user_agent=b.user_agent,
                ),
            )
            restored += 1
        log.info("bindings_restored", count=restored)

    # -- background writes -----------------------------------------------------------

    def _publish_bindings(
        self, changes: list[BindingChange], before: set[str], *, expired: bool = False
    ) -> None:
        for ch in changes:
            c = ch.contact
            if ch.removed:
                event = "expired" if expired else "removed"
            else:
                event = "refreshed" if c.uri in before else "added"
            self.b2bua.events.publish(
                RegistrationChanged(
                    ch.aor, c.uri, event, f"{c.source[0]}:{c.source[1]}", c.user_agent
                )
            )

    def _persist_changes(self, changes: list[BindingChange]) -> None:
        if self.writes is None or not changes:
            return
        loop_now = asyncio.get_running_loop().time()
        wall = time.time()
        for ch in changes:
            c = ch.contact
            if ch.removed:
                self.writes.binding_removed(ch.aor, c.uri)
            else:
                self.writes.binding_saved(
                    StoredBinding(
                        aor=ch.aor,
                        contact_uri=c.uri,
                        source=c.source,
                        transport=c.transport,
                        call_id=c.call_id,
                        cseq=c.cseq,
                        expires_at_epoch=wall + (c.expires_at - loop_now),
                        user_agent=c.user_agent,
                    )
                )

    def _on_call_ended(self, detail: CallDetail) -> asyncio.Future[None] | None:
        """Keep the record; the returned future resolves once it is committed."""
        self.call_details.append(detail)
        del self.call_details[:-1000]
        if self.writes is None:
            return None
        return self.writes.call_ended(detail)

    # -- binding expiry ----------------------------------------------------------------

    def _schedule_expiry(self) -> None:
        loop = asyncio.get_running_loop()
        self._expiry_handle = loop.call_later(1.0, self._expire_bindings)

    def _expire_bindings(self) -> None:
        now = asyncio.get_running_loop().time()
        self._expire_subscriptions(now)
        gone = self.location.expire(now)
        if gone:
            log.info("bindings_expired", count=len(gone))
            changes = [BindingChange(aor, c, removed=True) for aor, c in gone]
            self._publish_bindings(changes, set(), expired=True)
            self._persist_changes(changes)
        self._schedule_expiry()

    # -- request dispatch --------------------------------------------------------------

    def _on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        source = ev.source
        src = f"{source[0]}:{source[1]}"
        now = time.time()
        if req.method == "ACK":
            if req.to.tag:
                self.b2bua.handle_in_dialog(req, source, ev.transport)
            return
        try:
            to_tag = req.to.tag
        except ParseError:
            self.stack.send_response(make_response(req, 400, to_tag=new_tag()))
            return
        if to_tag:
            if req.method == "SUBSCRIBE" and self._on_subscribe_in_dialog(req):
                return
            if not self.b2bua.handle_in_dialog(req, source, ev.transport):
                self.stack.send_response(make_response(req, 481))
            return
        method = req.method
        if method == "CANCEL":
            self._on_cancel(req)
            return
        if method not in ("REGISTER", "INVITE", "OPTIONS", "SUBSCRIBE"):
            status = (
                405
                if method
                in (
                    "SUBSCRIBE",
                    "NOTIFY",
                    "MESSAGE",
                    "PUBLISH",
                    "REFER",
                    "INFO",
                    "UPDATE",
                    "PRACK",
                    "BYE",
                )
                else 501
            )
            if method == "BYE":
                status = 481
            self.stack.send_response(
                make_response(req, status, to_tag=new_tag(), headers=[("Allow", SERVER_ALLOW)])
            )
            return
        if method == "INVITE" and self.b2bua.is_retransmitted_invite(req):
            return  # the transaction layer already answers retransmissions
        # RFC 3261 §8.2.1–§8.2.3: check what we are about to act on (URI scheme, header
        # grammar, Require) before authenticating it.
        try:
            validate_for_uas(req)
        except ParseError as exc:
            self.stack.send_response(
                make_response(
                    req,
                    exc.status,
                    to_tag=new_tag(),
                    headers=[("Warning", f'399 switchboard "{_warning_text(exc)}"')],
                )
            )
            return
        unsupported = unsupported_extensions(req, SUPPORTED_EXTENSIONS)
        if unsupported:
            self.stack.send_response(
                make_response(
                    req, 420, to_tag=new_tag(), headers=[("Unsupported", ", ".join(unsupported))]
                )
            )
            return
        if method == "OPTIONS":  # RFC 3261 §11.2: no authentication needed to ask
            self.stack.send_response(
                make_response(
                    req,
                    200,
                    to_tag=new_tag(),
                    headers=[("Allow", SERVER_ALLOW), ("Accept", "application/sdp")],
                )
            )
            return
        if method == "INVITE" and req.body and req.content_type != "application/sdp":
            self.stack.send_response(
                make_response(  # RFC 3261 §21.4.13
                    req, 415, to_tag=new_tag(), headers=[("Accept", "application/sdp")]
                )
            )
            return
        if method == "INVITE" and (req.get("Max-Forwards") or "70").strip().lstrip("0") == "":
            # RFC 3261 §16.3 step 2 in spirit: we would forward this call, and it has no hops
            # left, so it is probably looping.
            self.stack.send_response(make_response(req, 483, to_tag=new_tag()))
            return
        if method == "SUBSCRIBE":
            # RFC 6665 §4.2.1.1: the event package and interval are checked first (489, 423).
            decision = decide_subscribe(req.get("Event"), req.get("Expires"))
            if decision.status != 200:
                self.stack.send_response(
                    make_response(
                        req,
                        decision.status,
                        decision.reason,
                        to_tag=new_tag(),
                        headers=list(decision.headers),
                    )
                )
                return
        if method == "INVITE":
            refusal = sips_refusal(req.request_uri.scheme, ev.transport)
            if refusal is not None:  # RFC 5630: a sips request must arrive over TLS
                self.stack.send_response(make_response(req, refusal, to_tag=new_tag()))
                return
            trunk = self.trunk_matcher.match(source)
            if trunk is not None:  # a carrier: trusted by its address and port, no digest
                self._on_trunk_invite(req, trunk, source, ev.transport)
                return
        if self.throttle is not None and self.throttle.is_blocked(source[0], now):
            # Only new REGISTERs and calls are refused: calls already up from the same
            # address (another phone behind the same NAT) keep working.
            self.stack.send_response(
                make_response(req, 403, "Too Many Failed Attempts", to_tag=new_tag())
            )
            return
        user = self._authenticate(req, src, now)
        if user is None:
            return
        if method == "REGISTER":
            self._on_register(req, user, ev.source, ev.transport)
        elif method == "SUBSCRIBE":
            self._on_subscribe(req, user, ev.source, ev.transport)
        else:
            self._on_invite(req, user, ev.source, ev.transport)

    def _authenticate(self, req: Request, src: str, now: float) -> str | None:
        """Check Digest credentials; send the challenge or refusal and return None if not OK."""
        is_register = req.method == "REGISTER"
        header = "Authorization" if is_register else "Proxy-Authorization"
        status = 401 if is_register else 407
        challenge_header = "WWW-Authenticate" if is_register else "Proxy-Authenticate"
        values = req.get_all(header)
        cred = _credentials_for_realm(values, self.auth.realm)
        stale = False
        refused_nonce: str | None = None
        if cred is not None:
            result = self.auth.verify(
                req.method, cred, now, self._password_of, algorithms_of=self._algorithms_of
            )
            if result.ok:
                assert result.username is not None
                if self.throttle is not None:
                    self.throttle.record_success(src.rsplit(":", 1)[0], now)
                return result.username
            if result.outcome is AuthOutcome.STALE:
                stale = True
            elif result.outcome is AuthOutcome.MALFORMED:
                self.stack.send_response(
                    make_response(req, 400, "Malformed Credentials", to_tag=new_tag())
                )
                return None
            else:
                # One wrong credential counts once (the same answer resent is no new guess),
                # and the challenge repeats its nonce so that the phone stops there.
                refused_nonce = result.nonce
                blocked = self.throttle is not None and self.throttle.record_failure(
                    src.rsplit(":", 1)[0], now, result.fingerprint
                )
                log.info(
                    "auth_failed",
                    source=src,
                    user=result.username,
                    reason=result.reason,
                    method=req.method,
                    blocked=blocked,
                )
                if blocked:
                    self.stack.send_response(
                        make_response(req, 403, "Too Many Failed Attempts", to_tag=new_tag())
                    )
                    return None
        # The user the challenge is for: the AOR of a REGISTER (RFC 3261 §10.2), the caller
        # of anything else. An unknown one gets the realm's algorithms like everybody.
        try:
            user = (req.to if is_register else req.from_).uri.user_unescaped() or ""
        except ParseError:
            user = ""
        challenges = self.auth.challenge(
            now, stale=stale, nonce=refused_nonce, algorithms=self._algorithms_of(user)
        )
        headers = [(challenge_header, v) for v in challenges]
        self.stack.send_response(make_response(req, status, to_tag=new_tag(), headers=headers))
        return None

    def _algorithms_of(self, username: str) -> tuple[str, ...] | None:
        ext = self.extensions.get(username)
        return None if ext is None else ext.auth_algorithms

    def _password_of(self, username: str, realm: str) -> str | None:
        ext = self.extensions.get(username)
        return None if ext is None else ext.password

    def _on_register(
        self, req: Request, user: str, source: tuple[str, int], transport: str
    ) -> None:
        to_user = req.to.uri.user_unescaped()
        if to_user != user:
            # RFC 3261 §10.3 step 3: the authenticated user may only register its own AOR.
            self.stack.send_response(make_response(req, 403, "Not Your AOR", to_tag=new_tag()))
            return
        now = asyncio.get_running_loop().time()
        before = {c.uri for c in self.location.lookup(user, now)}
        outcome = self.registrar.handle(
            req, user, source, transport, now, new_tag(), wall_time=time.time()
        )
        self.stack.send_response(outcome.response)
        if outcome.changes:
            # A refresh of the same contacts is routine: debug. New or removed contacts: info.
            changed = any(ch.removed or ch.contact.uri not in before for ch in outcome.changes)
            (log.info if changed else log.debug)(
                "registered",
                aor=user,
                source=f"{source[0]}:{source[1]}",
                contacts=self.location.count(user),
                status=outcome.response.status,
                algorithm=_auth_algorithm(req, self.auth.realm),
            )
        self._publish_bindings(outcome.changes, before)
        self._persist_changes(outcome.changes)
        ext = self.extensions.get(user)
        if (
            ext is not None
            and ext.mwi == "unsolicited"
            and any(not ch.removed and ch.contact.uri not in before for ch in outcome.changes)
        ):
            self._notify_unsolicited(user)

    def _on_invite(self, req: Request, user: str, source: tuple[str, int], transport: str) -> None:
        from_user = req.from_.uri.user_unescaped()
        if from_user != user:
            self.stack.send_response(make_response(req, 403, "Identity Mismatch", to_tag=new_tag()))
            return
        callee = req.request_uri.user_unescaped() or ""
        feature = self.feature_codes.parse(callee)
        if feature is not None:
            self._on_feature(req, user, feature, source, transport)
            return
        code = self.control.claimed_code(callee)
        if code is not None:  # a service's code (the ACD's agent and supervisor codes)
            self.control.feature_dialled(req, source, transport, user, callee, code)
            return
        decision = self._route(callee, user) if self.dialplan is not None else None
        self._place(req, user, callee, source, transport, decision)

    def trunk_load(self, name: str) -> int:
        """Calls up or being set up through trunk ``name``, both directions."""
        return self.b2bua.trunk_load(name)

    def _on_trunk_invite(
        self, req: Request, trunk: InboundTrunk, source: tuple[str, int], transport: str
    ) -> None:
        """A call a carrier delivers: the DID (Request-URI or To user, normalised per trunk)
        goes through the dialplan's inbound routes only. It never reaches an outbound rule
        or a feature code (toll fraud, issue 16); it leaves through a trunk again only where
        the admin or the callee chose so — a ``number`` destination, a queue's ``number:``
        overflow, an IVR flow's ``number:`` transfer, a phone's forward to a mobile — each
        under its class of service and caps."""
        uri = req.to.uri if trunk.did_from == "to" else req.request_uri
        did = trunk.normalise(uri.user_unescaped() or "")
        caller = trunk.normalise(req.from_.uri.user_unescaped() or "") or "anonymous"
        if self.dialplan is None:
            self._reject_call(req, caller, did, 404, "not_found")
            return
        if trunk.max_channels and self.trunk_load(trunk.name) >= trunk.max_channels:
            # The trunk's channels are shared by both directions (max_channels).
            log.warning("trunk_full", trunk=trunk.name, channels=trunk.max_channels, did=did)
            self._reject_call(req, caller, did, 503, "trunk_full")
            return
        decision = self.dialplan.route_inbound(did, caller, datetime.now(UTC))
        log.info(
            "trunk_call",
            trunk=trunk.name,
            caller=caller,
            did=did,
            kind=decision.destination.kind.value,
            target=decision.destination.target or decision.number,
        )
        if decision.destination.kind is DestinationKind.OUTBOUND:
            self._reject_call(req, caller, did, 403, "trunk_to_trunk_refused")
            return
        with self.b2bua.arriving_through(req, trunk.name, trunk.credentials):
            self._place(req, caller, did, source, transport, decision, trunk)

    def _place(
        self,
        req: Request,
        user: str,
        callee: str,
        source: tuple[str, int],
        transport: str,
        decision: RouteDecision | None,
        trunk: InboundTrunk | None = None,
    ) -> None:
        """Connect a call from ``user`` (an extension, or the caller of a ``trunk`` call) to
        ``callee`` as the routing ``decision`` says (None: no dialplan, ``callee`` is an
        extension or a conference room number)."""
        dialled = callee
        if decision is not None:
            dest = decision.destination
            number = dest.target or decision.number
            log.debug(
                "call_routed",
                caller=user,
                dialled=callee,
                kind=dest.kind.value,
                target=number,
                trail=list(decision.trail),
            )
            if dest.kind is DestinationKind.HANGUP:
                # No rule knows the number: the same "not found" as without a dialplan.
                unknown = decision.trail[-1:] in (("internal default",), ("inbound default",))
                cause = "not_found" if unknown else "dialplan_hangup"
                self._reject_call(req, user, callee, dest.status or 480, cause)
                return
            if dest.kind in (DestinationKind.IVR, DestinationKind.VOICEMAIL, DestinationKind.QUEUE):
                kind = dest.kind.value
                if not self.control.serves(kind):
                    self._reject_call(req, user, callee, 480, f"{kind}_unavailable")
                    return

                def arrived(call_id: str, kind: str = kind, target: str = number) -> CallArrived:
                    return CallArrived(
                        call_id,
                        kind,
                        target,
                        user,
                        callee,
                        priority=dest.priority,
                        skills=tuple(dest.skills),
                    )

                self.control.arrive(
                    req,
                    source,
                    transport,
                    user,
                    callee,
                    arrived,
                    trunk=trunk.name if trunk else None,
                )
                return
            if dest.kind is DestinationKind.PLAY_HANGUP:
                self._announce_and_hang_up(req, source, transport, user, callee, dest.prompt)
                return
            if dest.kind is DestinationKind.OUTBOUND and trunk is None:
                self._to_trunks(req, source, transport, user, decision.number, dest)
                return
            if dest.kind is DestinationKind.NUMBER:
                # The admin's forward to an outside number (after hours, to a mobile):
                # Switchboard's own call, so the system class of service applies.
                out = self.outside_route(dest.target, "")
                if isinstance(out, str):
                    self._reject_call(req, user, callee, _refusal_status(out), out)
                    return
                self._start_outside(req, source, transport, user, out, callee, trunk)
                return
            if dest.kind not in (DestinationKind.EXTENSION, DestinationKind.CONFERENCE):
                # An outbound rule reached by a carrier's call (refused above) or a kind
                # no service serves.
                self._reject_call(req, user, callee, 480, f"{dest.kind.value}_unavailable")
                return
            callee = number
        room = self.conferences.get(callee)
        if room is not None:
            self.b2bua.join_conference(
                req, source, transport, user, callee, room.name, room.max_members
            )
            return
        if callee not in self.extensions:
            self._reject_call(req, user, callee, 404, "not_found")
            return
        # Unconditional forwarding and do-not-disturb decide before any phone rings.
        where = route(callee, self.ext_settings)
        if where.loop:
            self._reject_call(req, user, callee, 482, "forwarding_loop")
            return
        if where.hops:
            log.info("call_forwarded", reason="unconditional", frm=callee, to=where.target)
        target = where.target
        if where.busy:
            busy_to = self._forward_of(target, "busy")
            if busy_to is not None and self._forward_out(
                req, source, transport, user, dialled, target, busy_to, "busy", trunk
            ):
                return
            if busy_to is None or busy_to not in self.extensions:
                mailbox = self._mailbox_for(target, "busy")
                if mailbox is not None:
                    self._to_mailbox(req, source, transport, user, target, mailbox, trunk)
                    return
                self._reject_call(req, user, target, 486, "do_not_disturb", "BUSY")
                return
            target = busy_to
        ext = self.extensions.get(target)
        if ext is None:
            mailbox = self._mailbox_number(target, user) if where.hops else None
            if mailbox is not None:  # forwarded (*72) to a mailbox number
                self._to_mailbox(req, source, transport, user, target, mailbox, trunk)
                return
            if where.hops and self._forward_out(
                req,
                source,
                transport,
                user,
                dialled,
                where.hops[-1],
                target,
                "unconditional",
                trunk,
            ):
                return
            self._reject_call(req, user, target, 404, "not_found")
            return
        # RFC 5630: a sips call rings only the phones reached over TLS.
        scheme = req.request_uri.scheme
        contacts = secure_only(
            scheme, self.location.lookup(target, asyncio.get_running_loop().time())
        )
        if not contacts:
            unavailable_to = self._forward_of(target, "no_answer")
            if (
                unavailable_to is not None
                and unavailable_to not in self.extensions
                and self._forward_out(
                    req,
                    source,
                    transport,
                    user,
                    dialled,
                    target,
                    unavailable_to,
                    "unavailable",
                    trunk,
                )
            ):
                return
            contacts = (
                secure_only(
                    scheme, self.location.lookup(unavailable_to, asyncio.get_running_loop().time())
                )
                if unavailable_to in self.extensions
                else []
            )
            if not contacts:
                # No phone registered: the mailbox takes it as unanswered (if configured).
                mailbox = self._mailbox_for(target, "no_answer")
                if mailbox is not None:
                    self._to_mailbox(req, source, transport, user, target, mailbox, trunk)
                    return
                self._reject_call(req, user, target, 480, "unavailable")
                return
            assert unavailable_to is not None
            target = unavailable_to
            ext = self.extensions[target]
        callee = target
        # A body that is not SDP got 415 on arrival; no body is a late offer (we offer in
        # the 200, Call._open_caller_media).
        call = self.b2bua.start_call(
            req, source, transport, user, callee, contacts, ext.ring_timeout
        )
        call.notes.dialled = dialled  # before routing and forwarding (docs/records.md)
        if trunk is not None:
            call.notes.direction, call.notes.trunk = "inbound", trunk.name

    def _forward_out(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        forwarder: str,
        number: str,
        reason: str,
        trunk: InboundTrunk | None,
    ) -> bool:
        """``forwarder`` forwards its calls to an outside ``number`` (a mobile): the call
        leaves through the trunks, with the forwarder's class of service and caller ID. A
        customer's call (from ``trunk``) stays ``inbound`` in the record; its ``trunk`` is
        the one it left through. False when ``number`` is an extension, has no route or
        is refused (logged)."""
        if number in self.extensions or self.conferences.get(number) is not None:
            return False
        route = self.outside_route(number, forwarder)
        if isinstance(route, str):
            return False
        log.info("call_forwarded", reason=reason, frm=forwarder, to=number, outside=True)
        call = self._start_outside(req, source, transport, caller, route, dialled, trunk)
        call.tried.add(forwarder)
        return True

    def _start_outside(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        route: OutsideRoute,
        dialled: str,
        trunk: InboundTrunk | None,
    ) -> Call:
        """The call leaves through ``route``'s trunks; a customer's call (from ``trunk``)
        stays ``inbound`` in the record, a phone's is ``outbound``."""
        call = self.b2bua.start_trunk_call(req, source, transport, caller, route)
        call.notes.dialled = dialled
        if trunk is not None:
            call.notes.direction = "inbound"
        return call

    def outside_route(self, dialled: str, ext: str, *, count: bool = True) -> OutsideRoute | str:
        """Where ``dialled`` leaves when ``ext`` dials it ("" = Switchboard itself: an IVR
        transfer, a queue overflow or callback without an agent): the outbound rule that
        matches it, after the toll-fraud guards; else the cause it is refused. ``count``
        False checks without counting the call against the per-minute cap."""
        if self.dialplan is None:
            return "no_route"
        decision = self.dialplan.route_internal(dialled, ext, datetime.now(UTC))
        if decision.destination.kind is not DestinationKind.OUTBOUND:
            return "no_route"
        return self._checked_route(ext, decision.number, decision.destination, count=count)

    def _checked_route(
        self, ext: str, number: str, dest: Destination, *, count: bool = True
    ) -> OutsideRoute | str:
        """The outside route of ``number`` by the outbound rule ``dest`` for ``ext``, if the
        policy allows it (one warning line when it does not)."""
        policy = self.outbound_policy
        kind = "local"
        limits = ExtensionLimits()
        if policy is not None:
            # Outside parties dialled for ``ext`` (its own calls, its forwards, callbacks
            # its agent places), ringing or up.
            kind, refused = policy.check(
                ext,
                number,
                lambda: self.b2bua.outside_calls_for(ext),
                asyncio.get_running_loop().time(),
                count=count,
            )
            if refused is not None:
                log.warning(
                    "outbound_refused",
                    caller=ext or "switchboard",
                    number=number,
                    kind=kind,
                    cause=refused,
                )
                return refused
            limits = policy.limits_of(ext)
        names = dest.trunks or ((dest.target,) if dest.target else tuple(self.outbound_trunks))
        trunks = tuple(self.outbound_trunks[n] for n in names if n in self.outbound_trunks)
        if not trunks:
            log.warning("no_trunk_for_call", caller=ext, number=number, trunks=list(names))
            return "no_trunk"
        wanted = tuple(n for n in (limits.caller_id, dest.caller_id) if n)
        return OutsideRoute(
            number,
            trunks,
            on_behalf_of=ext,
            number_class=kind,
            wanted_caller_ids=wanted,
            private=limits.hide_caller_id or dest.privacy,
        )

    def _to_trunks(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        number: str,
        dest: Destination,
    ) -> None:
        """An extension's call to an outside ``number``: through the rule's trunks, in
        order (a rule naming none: every trunk, in the order of the config)."""
        route = self._checked_route(caller, number, dest)
        if isinstance(route, str):
            self._reject_call(req, caller, number, _refusal_status(route), route)
            return
        dialled = req.request_uri.user_unescaped() or number
        self._start_outside(req, source, transport, caller, route, dialled, None)

    def _announce_and_hang_up(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        prompt: str | None,
    ) -> None:
        """Answer, play ``prompt`` once and hang up (blacklist announcements, closed lines)."""
        path = self.prompt_path(prompt) if prompt else None
        if path is None:
            self._reject_call(req, caller, dialled, 480, "announcement_missing")
            return
        audio = load_prompt(path, 8000)  # cached after the first use
        seconds = len(audio) / 8000 + 0.5
        self.b2bua.answer_with_tone(
            req,
            source,
            transport,
            caller,
            dialled,
            Playlist([path], 8000),
            seconds,
            cause="announcement",
        )

    def _refusal_of(self, number: str, ext: str) -> str | None:
        """Why ``ext`` may not dial the outside ``number`` now (checked, not counted)."""
        route = self.outside_route(number, ext, count=False)
        return route if isinstance(route, str) else None

    def _destination(self, dialled: str, caller: str) -> tuple[str, str] | None:
        """Where the dialplan sends ``dialled`` from ``caller`` as (kind, target) for the
        seam (a transfer from the agent panel): queue, ivr, voicemail, extension or number;
        None without a dialplan or when no rule knows it."""
        if self.dialplan is None:
            return None
        decision = self._route(dialled, caller)
        dest = decision.destination
        number = dest.target or decision.number
        if dest.kind in (DestinationKind.QUEUE, DestinationKind.IVR, DestinationKind.VOICEMAIL):
            return dest.kind.value, number
        if dest.kind is DestinationKind.EXTENSION:
            return "extension", number
        if dest.kind in (DestinationKind.OUTBOUND, DestinationKind.NUMBER):
            return "number", dest.target if dest.kind is DestinationKind.NUMBER else dialled
        return None

    def _route(self, dialled: str, caller: str) -> RouteDecision:
        """Internal routing first; a number no internal rule knows is tried as a DID (so
        phones can dial the numbers the outside world dials)."""
        assert self.dialplan is not None
        now = datetime.now(UTC)
        decision = self.dialplan.route_internal(dialled, caller, now)
        if decision.trail[:1] == ("internal default",):
            inbound = self.dialplan.route_inbound(dialled, caller, now)
            if not inbound.trail or inbound.trail[0] != "inbound default":
                return inbound
        return decision

    def _on_feature(
        self,
        req: Request,
        user: str,
        feature: FeatureRequest,
        source: tuple[str, int],
        transport: str,
    ) -> None:
        """A feature code dialled from ``user``'s phone."""
        dialled = req.request_uri.user_unescaped() or ""
        if feature.feature in (Feature.VOICEMAIL_OWN, Feature.VOICEMAIL_ANY):
            # The mailbox menu: the service serving "mailbox" answers (target: the mailbox,
            # or "" when it must ask for one).
            box = user if feature.feature is Feature.VOICEMAIL_OWN else feature.argument
            if not self.control.serves("mailbox"):
                self._reject_call(req, user, dialled, 480, "mailbox_unavailable")
                return

            def arrived(call_id: str) -> CallArrived:
                return CallArrived(call_id, "mailbox", box, user, dialled)

            self.control.arrive(req, source, transport, user, dialled, arrived, "internal")
            return
        if feature.feature in (Feature.PICKUP, Feature.DIRECTED_PICKUP):
            group = self.extensions[user].pickup_group
            if feature.feature is Feature.DIRECTED_PICKUP:
                wanted = feature.argument

                def accepts(ext: str) -> bool:
                    return ext == wanted
            else:

                def accepts(ext: str) -> bool:
                    e = self.extensions.get(ext)
                    return (
                        group is not None
                        and e is not None
                        and e.pickup_group == group
                        and ext != user
                    )

            ringing = self.b2bua.ringing_call(accepts)
            if ringing is None:
                self.stack.send_response(
                    make_response(req, 480, "Nothing To Pick Up", to_tag=new_tag())
                )
                return
            self.b2bua.pickup(req, source, transport, user, ringing)
            return
        needs_target = feature.feature in (
            Feature.FORWARD_ALL_ON,
            Feature.FORWARD_BUSY_ON,
            Feature.FORWARD_NO_ANSWER_ON,
        )
        if needs_target and not feature.argument:
            self.stack.send_response(make_response(req, 484, to_tag=new_tag()))
            return
        if needs_target and (
            (feature.argument not in self.extensions or feature.argument == user)
            and self._mailbox_number(feature.argument, user) is None  # forward to voicemail
            # A mobile: an outside number the extension's class of service may call.
            and isinstance(self.outside_route(feature.argument, user, count=False), str)
        ):
            self.stack.send_response(
                make_response(req, 404, "No Such Forward Target", to_tag=new_tag())
            )
            return
        before = self.ext_settings.get(user, ExtensionSettings())
        after = before.apply(feature)
        self.ext_settings[user] = after
        if self.writes is not None:
            self.writes.settings_changed(user, after)
        log.info(
            "extension_settings_changed",
            ext=user,
            feature=feature.feature.value,
            argument=feature.argument or None,
        )
        beep = ToneSource("beep", self.settings.tone_plan, rate=8000)
        self.b2bua.answer_with_tone(req, source, transport, user, dialled, beep)

    def _reject_call(
        self,
        req: Request,
        caller: str,
        callee: str,
        status: int,
        cause: str,
        disposition: str = "FAILED",
    ) -> None:
        self.stack.send_response(make_response(req, status, to_tag=new_tag()))
        # One line per call that never rang anyone, with why (an operator's first question).
        log.info("call_failed", caller=caller, callee=callee, status=status, cause=cause)
        t = datetime.now(UTC)
        self._on_call_ended(
            CallDetail(
                call_id=req.call_id,
                caller=caller,
                callee=callee,
                start=t,
                answer=None,
                end=t,
                hangup_cause=cause,
                disposition=disposition,
                hangup_side="system",
                sip_status=status,
            )
        )

    # -- voicemail: where busy and unanswered calls go -----------------------------------

    def _mailbox_number(self, number: str, caller: str) -> str | None:
        """The mailbox ``number`` reaches when the dialplan sends it to voicemail (``7001``
        with the shipped rules), else None."""
        if self.dialplan is None or number in self.extensions:
            return None
        decision = self._route(number, caller)
        dest = decision.destination
        if dest.kind is not DestinationKind.VOICEMAIL:
            return None
        box = dest.target or decision.number
        return box if box in self.extensions else None  # mailboxes are extensions

    def _mailbox_for(self, ext: str, reason: str) -> str | None:
        """Where a call to ``ext`` that failed for ``reason`` (``busy``, ``no_answer``) is
        left as a message: a forward target set from the phone that is a mailbox number,
        else the extension's own mailbox when its ``voicemail`` settings say so."""
        if not self.control.serves("voicemail"):
            return None
        forward = self._forward_of(ext, reason)
        box = self._mailbox_number(forward, ext) if forward is not None else None
        if box is not None:
            return box
        e = self.extensions.get(ext)
        if e is None:
            return None
        wanted = e.voicemail_on_busy if reason == "busy" else e.voicemail_on_no_answer
        return ext if wanted else None

    def _divert(self, call: Call, reason: str) -> bool:
        """The B2BUA's last resort for a busy / unanswered call: the callee's mailbox."""
        mailbox = self._mailbox_for(call.callee, reason)
        if mailbox is None:
            return False
        log.info("call_to_voicemail", caller=call.caller, callee=call.callee, reason=reason)
        return self.control.divert(call.id, "voicemail", mailbox)

    def _to_mailbox(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        caller: str,
        dialled: str,
        mailbox: str,
        trunk: InboundTrunk | None = None,
    ) -> None:
        """Answer a call that cannot ring anyone (do-not-disturb, no phone, forwarded to a
        mailbox) with the mailbox."""
        log.info("call_to_voicemail", caller=caller, callee=dialled, mailbox=mailbox)

        def arrived(call_id: str) -> CallArrived:
            return CallArrived(call_id, "voicemail", mailbox, caller, dialled)

        # An extension's mailbox standing in for it: still a call between extensions, unless
        # a carrier delivered it.
        direction = "inbound" if trunk is not None else "internal"
        self.control.arrive(
            req,
            source,
            transport,
            caller,
            dialled,
            arrived,
            direction,
            trunk.name if trunk else None,
        )

    # -- message-waiting indication (RFC 3842 over RFC 6665; sans-IO part in pbx.mwi) ----

    def message_waiting(self, mailbox: str, new: int, old: int) -> None:
        """A mailbox now holds ``new`` unheard and ``old`` heard messages (services say so
        through :meth:`CallControl.message_waiting`): phones are told when that changed
        (RFC 3842 §3.5 for subscribers; unsolicited NOTIFY where configured)."""
        if not self.mwi.set_counts(mailbox, new, old):
            return
        log.info("message_waiting", mailbox=mailbox, new=new, old=old)
        now = asyncio.get_running_loop().time()
        for sub in self.mwi.of_mailbox(mailbox):
            self._send_mwi_notify(sub, now)
        ext = self.extensions.get(mailbox)
        if ext is not None and ext.mwi == "unsolicited":
            self._notify_unsolicited(mailbox)

    def _summary(self, mailbox: str, dest_host: str) -> MessageSummary:
        new, old = self.mwi.counts(mailbox)
        return MessageSummary(f"sip:{mailbox}@{self.stack.host_for(dest_host)}", new, old)

    def _on_subscribe(
        self, req: Request, user: str, source: tuple[str, int], transport: str
    ) -> None:
        """An authenticated SUBSCRIBE outside a dialog (its Event and Expires were checked):
        a phone may watch only its own extension's mailbox."""
        mailbox = req.request_uri.user_unescaped() or req.to.uri.user_unescaped() or ""
        ext = self.extensions.get(mailbox)
        if mailbox != user or ext is None or ext.mwi == "off":
            self.stack.send_response(make_response(req, 403, "Not Your Mailbox", to_tag=new_tag()))
            return
        expires = decide_subscribe(req.get("Event"), req.get("Expires")).expires
        dialog = Dialog.as_uas(req, new_tag(), Flow(transport, source))
        self._answer_subscribe(req, dialog, expires)
        now = asyncio.get_running_loop().time()
        sub = self.mwi.add(dialog.key, mailbox, expires, now)
        if expires == 0:
            # A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then terminated.
            sub = self.mwi.end(dialog.key, SubscriptionEvent.UNSUBSCRIBED) or sub
        else:
            self._mwi_dialogs[dialog.key] = dialog
        log.info("mwi_subscribed", mailbox=mailbox, expires=expires)
        self._send_mwi_notify(sub, now, dialog)

    def _answer_subscribe(self, req: Request, dialog: Dialog, expires: int) -> None:
        flow = dialog.flow
        self.stack.send_response(
            make_response(
                req,
                200,
                to_tag=dialog.local_tag,
                headers=[
                    ("Expires", str(expires)),
                    ("Contact", self.stack.contact_for(flow.transport, flow.address[0])),
                    ("Allow-Events", MWI_EVENT),
                ],
            )
        )

    def _on_subscribe_in_dialog(self, req: Request) -> bool:
        """A refresh or an unsubscribe (RFC 6665 §4.1.2.2, §4.1.2.3); False: not ours."""
        key = (req.call_id, req.to.tag or "", req.from_.tag or "")
        dialog = self._mwi_dialogs.get(key)
        if dialog is None:
            return False
        if not dialog.check_remote_cseq(req):
            self.stack.send_response(make_response(req, 500, "CSeq Out Of Order"))
            return True
        decision = decide_subscribe(req.get("Event"), req.get("Expires"))
        if decision.status != 200:
            self.stack.send_response(
                make_response(req, decision.status, decision.reason, headers=list(decision.headers))
            )
            return True
        self._answer_subscribe(req, dialog, decision.expires)
        now = asyncio.get_running_loop().time()
        sub = self.mwi.refresh(key, decision.expires, now)
        if sub is not None:
            if decision.expires == 0:
                self._mwi_dialogs.pop(key, None)
                log.info("mwi_unsubscribed", mailbox=sub.mailbox)
            self._send_mwi_notify(sub, now, dialog)
        return True

    def _expire_subscriptions(self, now: float) -> None:
        for sub in self.mwi.expire(now):
            dialog = self._mwi_dialogs.pop(sub.key, None)
            log.info("mwi_subscription_expired", mailbox=sub.mailbox)
            if dialog is not None:
                self._send_mwi_notify(sub, now, dialog)

    def _send_mwi_notify(self, sub: Subscription, now: float, dialog: Dialog | None = None) -> None:
        """NOTIFY in the subscription's dialog (RFC 6665 §4.2.2) with the mailbox's state."""
        dialog = dialog or self._mwi_dialogs.get(sub.key)
        if dialog is None:
            return
        flow = dialog.flow
        notify = dialog.create_request(
            "NOTIFY",
            self.stack.via_for(flow.transport, flow.address[0]),
            self.stack.contact_for(flow.transport, flow.address[0]),
            body=self._summary(sub.mailbox, flow.address[0]).body(),
            content_type=MWI_CONTENT_TYPE,
            extra=[("Event", MWI_EVENT), ("Subscription-State", sub.state_header(now))],
        )
        key = sub.key

        def answered(resp: Response) -> None:
            # RFC 6665 §4.1.3: 481 (or no answer) means the subscriber is gone.
            if resp.status == 481 or resp.status >= 500:
                failed()

        def failed() -> None:
            if self.mwi.end(key, SubscriptionEvent.NOTIFY_FAILED) is not None:
                self._mwi_dialogs.pop(key, None)
                log.info("mwi_subscription_dropped", mailbox=sub.mailbox)

        self.stack.send_request(
            notify, flow.address, flow.transport, on_response=answered, on_timeout=failed
        )

    def _notify_unsolicited(self, ext: str) -> None:
        """NOTIFY outside any dialog to every registered phone of ``ext`` (no RFC; what
        phones without subscriptions understand, like Asterisk's unsolicited MWI)."""
        now = asyncio.get_running_loop().time()
        for contact in self.location.lookup(ext, now):
            transport, address = self.stack.flow_to(contact.transport, contact.source, contact.uri)
            host = self.stack.host_for(address[0])
            headers = [
                ("Via", self.stack.via_for(transport, address[0])),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{ext}@{host}>;tag={new_tag()}"),
                ("To", f"<sip:{ext}@{host}>"),
                ("Call-ID", f"mwi-{new_tag()}@{host}"),
                ("CSeq", "1 NOTIFY"),
                ("Contact", self.stack.contact_for(transport, address[0])),
                ("Event", MWI_EVENT),
                ("Content-Type", MWI_CONTENT_TYPE),
            ]
            body = self._summary(ext, address[0]).body()
            notify = Request("NOTIFY", contact.uri, headers, body)
            self.stack.send_request(notify, address, transport, on_response=lambda r: None)

    def _on_cancel(self, req: Request) -> None:
        call = self.b2bua.find_by_invite(req.call_id, req.from_.tag or "")
        if call is None:
            self.stack.send_response(make_response(req, 481))
            return
        self.stack.send_response(make_response(req, 200, to_tag=call.a_tag))
        call.on_cancel()

    def _on_ack_not_received(self, ev: AckNotReceived) -> None:
        resp = ev.response
        self.b2bua.on_ack_timeout(resp.call_id, resp.from_.tag or "")

    def _on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, DtmfReceived):
            self.b2bua.on_dtmf(event)
        elif isinstance(event, LegInactive):
            self._on_media_inactive(event.leg_id)

    def _on_media_inactive(self, leg_id: str) -> None:
        self.b2bua.on_media_inactive(leg_id)


# Out of dialogs the server also takes REGISTER and SUBSCRIBE (RFC 3261 §20.5: Allow lists
# what we accept).
SERVER_ALLOW = f"{ALLOW}, REGISTER, SUBSCRIBE"

# Option tags we implement (RFC 3261 §19.2); a Require naming anything else gets 420.
# None yet: 100rel, timer and replaces come with the features that need them.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()


def _warning_text(exc: Exception) -> str:
    return str(exc)[:120].replace('"', "'").replace("\r", " ").replace("\n", " ")


def _auth_algorithm(req: Request, realm: str) -> str | None:
    """The digest algorithm the (already verified) REGISTER answered with, for the log."""
    value = _credentials_for_realm(req.get_all("Authorization"), realm)
    try:
        return None if value is None else parse_credentials(value).algorithm
    except DigestError:
        return None


def _credentials_for_realm(values: list[str], realm: str) -> str | None:
    """The Authorization value meant for our realm (RFC 3261 §22.4: one per realm)."""
    digest = [v for v in values if v.split(None, 1)[:1] and v.split(None, 1)[0].lower() == "digest"]
    for v in digest:
        try:
            if parse_credentials(v).realm == realm:
                return v
        except DigestError:
            continue
    # Credentials in a scheme we do not know are ignored: the client gets a fresh challenge
    # (RFC 4475 §3.3.7); a malformed Digest value is still looked at (and answered 400).
    return digest[0] if digest else None


def _refusal_status(cause: str) -> int:
    """The SIP status of an outside call refused with ``cause``: no route or no trunk is
    480 (temporarily unavailable), a toll-fraud guard's refusal 403."""
    return 480 if cause in ("no_trunk", "no_route") else 403
