"""Ringing one extension: an INVITE forked to each of its registered contacts.

Theory of operation
-------------------
An :class:`Outbound` is the UAC half of a call attempt towards one extension. It binds the
callee's RTP leg first (its port goes into the offer), then sends one INVITE per contact
(RFC 3261 §16.7 in spirit: parallel forking by a UAC rather than a proxy) with the same
Call-ID and From tag and its own branch. Provisional responses are passed up once (early
media from the first SDP seen, RFC 3960); the first 2xx wins, is ACKed (RFC 3261
§13.2.2.4) and becomes a :class:`~pbx.side.Side`; every other branch is CANCELled, and a
2xx from a losing branch (a CANCEL/200 race) is ACKed and hung up with BYE. A CANCEL is
held back until its branch has sent a provisional (§9.1). When every branch failed, the
best failure is reported (:func:`best_failure`, §16.7 step 6 simplified); the ring timeout
reports 480.

Through a trunk, a carrier that sends no response at all to an INVITE (not even 100 Trying)
within the trunk's ``invite_timeout`` counts as 408 at once, so the next trunk is tried
without waiting for Timer B (RFC 3261 §17.1.1.2: 64·T1 = 32 s; like Kamailio's fr_timer).
The branch is abandoned, not forgotten: its transaction runs on to Timer B, a late
provisional is CANCELled (§9.1) and a late 2xx is ACKed and hung up. A carrier that answers
100 and then rings forever is bounded by the ring timeout. The answered side's dialog keeps
the trunk's credentials, so a BYE or re-INVITE the carrier challenges is answered too.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from media import Codec, MediaError

from . import sdp
from .dialog import Dialog, Flow
from .digest import DigestError, build_authorization, choose_challenge
from .location import Contact
from .message import Request, Response
from .side import ALLOW, SUPPORTED_CODECS, Side
from .stack import new_tag

if TYPE_CHECKING:
    from .b2bua import B2bua
    from .trunk_outbound import OutboundTrunk

__all__ = ["Outbound", "best_failure", "spawn"]

log = structlog.get_logger("pbx.b2bua")


@dataclass(slots=True)
class _Branch:
    """One forked INVITE to one contact of the callee."""

    contact: Contact
    flow: Flow
    request: Request
    key: str = ""
    provisional: bool = False
    final: int | None = None
    cancel_wanted: bool = False
    cancel_sent: bool = False
    dialog: Dialog | None = None
    challenges: int = 0  # 401/407 answered with credentials on this branch
    # Fires when the INVITE got no response at all within the trunk's invite_timeout.
    silence_timer: asyncio.TimerHandle | None = None


class Outbound:
    """An INVITE forked to every contact of one extension, until one branch answers.

    The caller of this class gets ``on_ringing(status, early_media)`` for provisionals,
    ``on_answered(side)`` once, and ``on_failed(status, ring_timeout)`` when every branch
    failed or the ring timeout expired (status 480 and ``ring_timeout`` True then). The
    media leg is created here and belongs to the side on answer; on failure or
    :meth:`cancel` it is released.
    """

    def __init__(
        self,
        b2b: B2bua,
        *,
        leg_id: str,
        caller_ext: str,
        caller_display: str | None,
        callee: str,
        contacts: list[Contact],
        first_codec: Codec | None,
        ring_timeout: float,
        on_ringing: Callable[[int, bool], None],
        on_answered: Callable[[Side], None],
        on_failed: Callable[[int, bool], None],
        extra_headers: list[tuple[str, str]] | None = None,
        near: str | None = None,
        credentials: tuple[str, str] | None = None,
        to_uri: str | None = None,
        from_uri: str | None = None,
        trunk: OutboundTrunk | None = None,
    ) -> None:
        self.b2b = b2b
        # The From URI instead of ``sip:<caller_ext>@<us>`` (an anonymous caller, RFC 3323).
        self.from_uri = from_uri
        # The trunk this attempt goes through: its invite_timeout, its name on the side.
        self.trunk = trunk
        # A trunk's digest account: a 401/407 to the INVITE is answered once with it.
        self.credentials = credentials
        # The To of the INVITE: a trunk's ``sip:number@carrier`` (default: ours).
        self.to_uri = to_uri
        # Placement hint for media workers: the leg this one will be bridged to, so both
        # land in one worker (a bridge across workers costs about twice as much).
        self.near = near
        self.extra_headers = extra_headers or []
        self.leg_id = leg_id
        self.caller_ext = caller_ext
        self.caller_display = caller_display
        self.callee = callee
        self.contacts = contacts
        self.first_codec = first_codec
        self.ring_timeout = ring_timeout
        self.on_ringing = on_ringing
        self.on_answered = on_answered
        self.on_failed = on_failed
        self.call_id = f"{secrets.token_hex(10)}@switchboard"
        self.from_tag = new_tag()
        self.branches: list[_Branch] = []
        self.winner: _Branch | None = None
        self.done = False  # answered, failed or cancelled
        self.early_media = False
        self.side: Side | None = None
        self._ring_timer: asyncio.TimerHandle | None = None
        self._sdp_session_id = secrets.randbelow(2**31)
        self._answer: sdp.RemoteAnswer | None = None  # the callee's SDP answer, once seen

    async def start(self) -> bool:
        """Create the media leg and send the INVITEs; False if media is unavailable."""
        media = self.b2b.media
        try:
            leg = await media.create_leg(self.leg_id, near=self.near)
        except (MediaError, OSError) as exc:
            log.warning("media_allocation_failed", error=str(exc))
            self.done = True
            return False
        if self.done:  # cancelled while binding
            media.close_leg(self.leg_id)
            return False
        stack = self.b2b.stack
        first = self.first_codec
        codecs = ([first] if first else []) + [
            c for c in SUPPORTED_CODECS if first is None or not c.same_format(first)
        ]
        for contact in self.contacts:
            flow = Flow(*stack.flow_to(contact.transport, contact.source, contact.uri))
            local_host = self.b2b.media_host or stack.host_for(flow.address[0])
            offer = sdp.build_offer(
                local_host,
                leg.local_port,
                codecs,
                dtmf_pt=101,
                session_id=self._sdp_session_id,
                version=0,
            ).serialize()
            self.branches.append(
                _Branch(contact=contact, flow=flow, request=self._invite(contact, flow, offer))
            )
        for branch in self.branches:
            branch.key = stack.send_request(
                branch.request,
                branch.flow.address,
                branch.flow.transport,
                on_response=functools.partial(self._on_response, branch),
                on_timeout=functools.partial(self._on_timeout, branch),
            )
            self._arm_silence_timer(branch)
        self._ring_timer = asyncio.get_running_loop().call_later(
            self.ring_timeout, self._on_ring_timeout
        )
        return True

    def _invite(self, contact: Contact, flow: Flow, offer: bytes) -> Request:
        stack = self.b2b.stack
        host = stack.host_for(flow.address[0])
        display = f'"{self.caller_display}" ' if self.caller_display else ""
        from_uri = self.from_uri or f"sip:{self.caller_ext}@{host}"
        headers = [
            ("Via", stack.via_for(flow.transport, flow.address[0])),
            ("Max-Forwards", "70"),
            ("From", f"{display}<{from_uri}>;tag={self.from_tag}"),
            ("To", f"<{self.to_uri or f'sip:{self.callee}@{host}'}>"),
            ("Call-ID", self.call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", stack.contact_for(flow.transport, flow.address[0], self.caller_ext)),
            ("Allow", ALLOW),
            *self.extra_headers,
            ("Content-Type", "application/sdp"),
        ]
        return Request("INVITE", contact.uri, headers, offer)

    def _arm_silence_timer(self, branch: _Branch) -> None:
        timeout = self.trunk.invite_timeout if self.trunk is not None else 0.0
        if timeout > 0:
            branch.silence_timer = asyncio.get_running_loop().call_later(
                timeout, self._on_silence, branch
            )

    def _stop_silence_timer(self, branch: _Branch) -> None:
        if branch.silence_timer is not None:
            branch.silence_timer.cancel()
            branch.silence_timer = None

    def _on_silence(self, branch: _Branch) -> None:
        """No response at all to the INVITE within the trunk's invite_timeout: the carrier
        is not there; a timeout (408) without waiting for Timer B (§17.1.1.2)."""
        branch.silence_timer = None
        if branch.final is not None or branch.provisional or self.done:
            return
        log.info(
            "trunk_no_response",
            callee=self.callee,
            trunk=self.trunk.name if self.trunk else None,
            seconds=self.trunk.invite_timeout if self.trunk else None,
        )
        # Abandon the branch: a late provisional gets its CANCEL (§9.1), a late 2xx a BYE.
        branch.cancel_wanted = True
        branch.final = 408
        self._check_all_failed()

    def _on_response(self, branch: _Branch, resp: Response) -> None:
        self._stop_silence_timer(branch)
        status = resp.status
        if status < 200:
            # Any provisional, 100 included, allows a CANCEL (RFC 3261 §9.1).
            branch.provisional = True
            if branch.cancel_wanted and not branch.cancel_sent:
                self._send_cancel(branch)
                return
            if status == 100 or self.done:
                return
            early = False
            if resp.body and resp.content_type == "application/sdp" and not self.early_media:
                early = self.early_media = self._apply_answer(resp.body)
            self.on_ringing(status, early)
            return
        if status < 300:
            self._on_answered(branch, resp)
            return
        if status in (401, 407) and self._answer_challenge(branch, resp):
            return
        if branch.final is None:
            branch.final = status
        self._check_all_failed()

    def _answer_challenge(self, branch: _Branch, resp: Response) -> bool:
        """RFC 3261 §22.2: the carrier challenged the INVITE; send it again, same Call-ID
        and From tag, next CSeq, new branch, with credentials. Once per branch: a second
        challenge means the credentials are refused (the caller gets the 401/407 as a
        failure). False when there is nothing to answer with."""
        if self.credentials is None or self.done or branch.challenges >= 1 or branch.cancel_wanted:
            return False
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        try:
            challenge = choose_challenge(resp.get_all(header))
            user, password = self.credentials
            answer = build_authorization("INVITE", branch.request.uri, user, password, challenge)
        except DigestError as exc:
            log.info("trunk_challenge_unanswerable", callee=self.callee, error=str(exc))
            return False
        old = branch.request
        stack = self.b2b.stack
        headers = [
            (name, value)
            for name, value in old.headers
            if name.lower() not in ("via", "cseq", "authorization", "proxy-authorization")
        ]
        headers = [
            ("Via", stack.via_for(branch.flow.transport, branch.flow.address[0])),
            ("CSeq", f"{old.cseq[0] + 1} INVITE"),
            ("Authorization" if resp.status == 401 else "Proxy-Authorization", answer),
            *headers,
        ]
        branch.request = Request("INVITE", old.uri, headers, old.body)
        branch.challenges += 1
        branch.provisional = False
        branch.key = stack.send_request(
            branch.request,
            branch.flow.address,
            branch.flow.transport,
            on_response=functools.partial(self._on_response, branch),
            on_timeout=functools.partial(self._on_timeout, branch),
        )
        self._arm_silence_timer(branch)
        return True

    def _apply_answer(self, body: bytes) -> bool:
        try:
            ans = sdp.parse_answer(body, SUPPORTED_CODECS)
        except sdp.SdpError as exc:
            log.info("bad_answer_from_callee", error=str(exc))
            return False
        self._answer = ans
        self.b2b.media.set_remote(
            self.leg_id, ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
        )
        return True

    def _on_answered(self, branch: _Branch, resp: Response) -> None:
        if branch.dialog is None:
            branch.dialog = Dialog.as_uac(branch.request, resp, branch.flow)
            # A carrier challenges our BYE and re-INVITEs too (RFC 3261 §22.2).
            branch.dialog.credentials = self.credentials
        # Every 2xx (and its retransmissions) gets an ACK (RFC 3261 §13.2.2.4).
        self._send_ack(branch)
        if self.winner is branch:
            return
        if self.winner is not None or self.done:
            # Another branch won, or we gave up meanwhile: hang this one up (§13.2.2.4).
            self.b2b.send_bye(branch.dialog)
            return
        self.winner = branch
        branch.final = resp.status
        self.done = True
        self._cancel_ring_timer()
        answered = bool(resp.body) and self._apply_answer(resp.body)
        if not answered and not self.early_media:
            log.warning("answer_without_sdp", callee=self.callee)
        for other in self.branches:
            if other is not branch:
                self._cancel_branch(other)
        ans = self._answer
        self.side = Side(
            label="b",
            ext=self.callee,
            leg_id=self.leg_id,
            flow=branch.flow,
            dialog=branch.dialog,
            codec=ans.codec if ans else None,
            dtmf_pt=ans.dtmf_payload_type if ans else None,
            sdp_session_id=self._sdp_session_id,
            last_local_sdp=branch.request.body,
            uac=True,
            trunk=self.trunk.name if self.trunk is not None else None,
        )
        self.on_answered(self.side)

    def _send_ack(self, branch: _Branch) -> None:
        assert branch.dialog is not None
        stack = self.b2b.stack
        # §13.2.2.4: the ACK carries the CSeq number and the credentials of the INVITE.
        ack = branch.dialog.create_request(
            "ACK",
            stack.via_for(branch.flow.transport, branch.flow.address[0]),
            cseq=branch.request.cseq[0],
            extra=[
                (name, value)
                for name, value in branch.request.headers
                if name.lower() in ("authorization", "proxy-authorization")
            ],
        )
        stack.send_stateless(ack, branch.flow.address, branch.flow.transport)

    def _on_timeout(self, branch: _Branch) -> None:
        self._stop_silence_timer(branch)
        if branch.final is None:
            branch.final = 408
        self._check_all_failed()

    def _check_all_failed(self) -> None:
        if self.done or any(b.final is None for b in self.branches):
            return
        self._fail(best_failure([b.final for b in self.branches if b.final is not None]), False)

    def _on_ring_timeout(self) -> None:
        self._ring_timer = None
        if not self.done:
            log.info("ring_timeout", callee=self.callee, seconds=self.ring_timeout)
            self._fail(480, True)

    def _fail(self, status: int, ring_timeout: bool) -> None:
        self.cancel()
        self.on_failed(status, ring_timeout)

    def cancel(self) -> None:
        """Give up: CANCEL every branch still ringing and release the leg."""
        if self.winner is not None:
            return
        self.done = True
        self._cancel_ring_timer()
        for branch in self.branches:
            self._stop_silence_timer(branch)
            self._cancel_branch(branch)
        self.b2b.media.close_leg(self.leg_id)

    def _cancel_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    def _cancel_branch(self, branch: _Branch) -> None:
        if branch.final is not None or branch.cancel_wanted:
            return
        branch.cancel_wanted = True
        # RFC 3261 §9.1: no CANCEL before a provisional response has arrived.
        if branch.provisional:
            self._send_cancel(branch)

    def _send_cancel(self, branch: _Branch) -> None:
        branch.cancel_sent = True
        inv = branch.request
        headers = [
            ("Via", inv.get_list("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", inv.get("From") or ""),
            ("To", inv.get("To") or ""),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq[0]} CANCEL"),
        ]
        cancel = Request("CANCEL", inv.uri, headers)
        self.b2b.stack.send_request(
            cancel, branch.flow.address, branch.flow.transport, on_response=lambda r: None
        )


def best_failure(statuses: list[int]) -> int:
    """RFC 3261 §16.7 step 6, simplified: 6xx wins, then busy, then the lowest class."""
    six = [s for s in statuses if s >= 600]
    if six:
        return min(six)
    if 486 in statuses:
        return 486
    non_timeout = [s for s in statuses if s not in (408, 503)]
    if non_timeout:
        return min(non_timeout)
    return min(statuses) if statuses else 480


def spawn(step: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run one background step of a call (media allocation, a fork); a failure is logged,
    never raised into the loop's exception handler."""
    task = asyncio.get_running_loop().create_task(step)
    task.add_done_callback(_log_task_error)
    return task


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call_task_failed", error=repr(task.exception()))
