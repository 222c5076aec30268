"""Offer/answer inside an established call: re-INVITE, UPDATE, hold and resume, glare.

Theory of operation
-------------------
Media is anchored on Switchboard, so each party renegotiates only its own leg: a session
refresh, a codec change or a hold from one party is answered by Switchboard and re-points
that party's RTP leg; the other party's dialog is never re-INVITEd for it.

*Answering* (:func:`answer_reoffer`, RFC 3261 §14.2, RFC 3311 §5.2): the peer's offer is
answered with our leg's address, keeping the current codec while the peer still offers it
(RFC 3264 §8.3.2 lets the answerer change it, but a stable codec avoids transcoder churn).
Our ``o=`` version goes up only when our description changes (RFC 3264 §8). An offer with
nothing usable gets 488 and changes nothing: the session goes on as before (RFC 3261 §14.2,
"the UAS MUST NOT change the session" on a failed re-INVITE). An offerless re-INVITE gets our
current description as an offer in the 2xx, whose answer comes in the ACK
(:func:`apply_ack_answer`, RFC 3261 §14.2/§13.2.1); an offerless UPDATE is only a target
refresh and gets no body (RFC 3311 §5.2).

*Hold* (RFC 3264 §8.4, RFC 6337 §5): a party whose offer makes us ``recvonly``/``inactive``
(it offered ``sendonly``/``inactive``), or whose connection address is 0.0.0.0 (the RFC 2543
way), is holding; the other party hears music on hold from its own leg until the holder
offers ``sendrecv`` again (:func:`set_holding`).

*Offering* (:func:`send_reoffer`, RFC 3261 §14.1): Switchboard re-INVITEs one party with a
new version of its description (a refresh, or ``sendonly``/``inactive`` to hold that party
from our side). Only one offer is outstanding per dialog (RFC 3264 §4). A non-2xx final
response leaves the session as it was — codec, remote address, our SDP version — "as if no
re-INVITE had been issued" (§14.1); 481 or 408 ends the dialog (§12.2.1.2), so the call ends.
A 401/407 (a carrier challenging our re-INVITE) is answered once with the dialog's
credentials by ``B2bua.send_in_dialog`` (§22.2) before it counts as a failure.

*Glare* (§14.1/§14.2, RFC 3311 §5.2): a re-INVITE, or an UPDATE with an offer, that arrives
while our own re-INVITE to that party has no final response is answered 491 Request
Pending. When our re-INVITE gets 491 we try again once after a random delay: 2.1–4 s when
we own the dialog's Call-ID (we sent the INVITE that made it), 0–2 s otherwise, in 10 ms
steps (§14.1), so the two sides do not collide again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import sdp
from .message import Request, Response, make_response
from .side import ALLOW, SUPPORTED_CODECS, Side

if TYPE_CHECKING:
    from media import Direction

    from .call import Call

__all__ = [
    "answer_reoffer",
    "apply_ack_answer",
    "glare_retry_delay",
    "send_reoffer",
    "set_holding",
]

_HOLD_ADDRESSES = ("0.0.0.0", "::")


def glare_retry_delay(owns_call_id: bool) -> float:
    """RFC 3261 §14.1: how long to wait before re-sending a re-INVITE that got 491."""
    if owns_call_id:
        return (210 + secrets.randbelow(191)) / 100  # 2.10 .. 4.00 s
    return secrets.randbelow(201) / 100  # 0.00 .. 2.00 s


def answer_reoffer(call: Call, me: Side, req: Request) -> None:
    """Answer a re-INVITE or UPDATE from ``me`` (see the module doc)."""
    stack = call.b2b.stack
    assert me.dialog is not None
    has_offer = bool(req.body) and req.content_type == "application/sdp"
    if me.reoffer_pending and (req.method == "INVITE" or has_offer):
        # Glare: our own re-INVITE to this party is still pending (§14.2, RFC 3311 §5.2).
        call.log.info("reoffer_glare", ext=me.ext, method=req.method)
        stack.send_response(make_response(req, 491, to_tag=me.dialog.local_tag))
        return
    me.dialog.update_target(req)
    headers = [
        ("Contact", stack.contact_for(me.flow.transport, me.flow.address[0])),
        ("Allow", ALLOW),
    ]
    if has_offer:
        body = _answer(call, me, req)
        if body is None:
            return
    elif req.method == "UPDATE":
        # A target refresh without an offer (RFC 3311 §5.2): nothing to answer.
        stack.send_response(make_response(req, 200, to_tag=me.dialog.local_tag, headers=headers))
        return
    else:
        body = me.last_local_sdp  # offerless re-INVITE: our offer goes in the 2xx
    headers.append(("Content-Type", "application/sdp"))
    stack.send_response(
        make_response(req, 200, to_tag=me.dialog.local_tag, headers=headers, body=body)
    )


def _answer(call: Call, me: Side, req: Request) -> bytes | None:
    """Our answer to the offer in ``req``, applied to ``me``'s leg; None after a 488."""
    media = call.b2b.media
    leg = media.leg_address(me.leg_id)
    neg = None
    error = "no usable media"
    # Keep the current codec when the peer still offers it; else pick again.
    for supported in ((me.codec,) if me.codec else (), SUPPORTED_CODECS):
        if not supported:
            continue
        try:
            neg = sdp.negotiate_answer(
                req.body,
                host=call.media_host(me.flow),
                port=leg.local_port,
                supported=supported,
                session_id=me.sdp_session_id,
                version=me.sdp_version,
            )
            break
        except sdp.SdpError as exc:
            error = str(exc)
    if neg is None:
        # RFC 3261 §14.2: the session stays as it was.
        call.b2b.stack.send_response(
            make_response(req, 488, headers=[("Warning", f'399 switchboard "{error}"')])
        )
        return None
    body = neg.answer.serialize()
    # RFC 3264 §8: bump the o= version only when our description changes.
    if body != me.last_local_sdp:
        me.sdp_version += 1
        neg.answer.origin.session_version = me.sdp_version
        body = neg.answer.serialize()
    me.last_local_sdp = body
    me.codec = neg.codec
    me.dtmf_pt = neg.dtmf_payload_type
    media.set_remote(
        me.leg_id,
        neg.remote[0],
        neg.remote[1],
        neg.codec,
        neg.dtmf_payload_type,
        direction=neg.direction,
    )
    holding = neg.direction in ("recvonly", "inactive") or neg.remote[0] in _HOLD_ADDRESSES
    set_holding(call, me, holding)
    return body


def set_holding(call: Call, me: Side, holding: bool) -> None:
    """``me`` holds (or resumes) the other party: music on hold on the other party's leg."""
    if holding == me.holding:
        return
    me.holding = holding
    other = call.other(me)
    call.log.info("call_hold" if holding else "call_resume", by=me.ext)
    third = call.third
    if (
        third is not None
        and not third.done
        and (me is third.side or (third.mode == "consult" and me is third.me))
    ):
        # The consulted (or conferenced) party's own hold, or the agent's phone's hold
        # during a consultation: the customer's music (the consultation's) or the
        # three-way bridge stays as it is (pbx.consult).
        return
    if other is None:
        return
    if holding:
        if other.moh_player is None:  # else already playing (the agent panel's hold)
            other.moh_player = call.b2b.start_music_on_hold(other.leg_id)
    elif other.moh_player is not None and not me.on_hold:  # the panel's hold stays
        call.b2b.stop_music_on_hold(other.moh_player)
        other.moh_player = None


def apply_ack_answer(call: Call, me: Side, body: bytes) -> None:
    """The answer in an ACK, to the offer we put in a 2xx (RFC 3261 §13.2.1)."""
    try:
        ans = sdp.parse_answer(body, SUPPORTED_CODECS)
    except sdp.SdpError:
        return
    me.codec = ans.codec
    me.dtmf_pt = ans.dtmf_payload_type
    call.b2b.media.set_remote(
        me.leg_id, ans.remote[0], ans.remote[1], ans.codec, ans.dtmf_payload_type
    )


def send_reoffer(
    call: Call,
    side: Side,
    *,
    direction: Direction = "sendrecv",
    on_done: Callable[[int], None] | None = None,
    retry_on_glare: bool = True,
) -> bool:
    """Re-INVITE ``side`` with a new offer for its leg (see the module doc). ``on_done``
    gets the final status (after a glare retry, the retry's). False, and nothing sent, when
    the party has no dialog, the call ended, or an offer of ours is already outstanding."""
    if call.ended or side.dialog is None or side.reoffer_pending or side not in call.sides():
        return False
    b2b = call.b2b
    stack = b2b.stack
    dialog = side.dialog
    leg = b2b.media.leg_address(side.leg_id)
    current = side.codec
    codecs = ([current] if current else []) + [
        c for c in SUPPORTED_CODECS if current is None or not c.same_format(current)
    ]
    version = side.sdp_version + 1
    offer = sdp.build_offer(
        call.media_host(side.flow),
        leg.local_port,
        codecs,
        dtmf_pt=side.dtmf_pt if side.dtmf_pt is not None else 101,
        session_id=side.sdp_session_id,
        version=version,
        direction=direction,
    ).serialize()
    flow = side.flow
    req = dialog.create_request(
        "INVITE",
        stack.via_for(flow.transport, flow.address[0]),
        stack.contact_for(flow.transport, flow.address[0]),
        body=offer,
        content_type="application/sdp",
        extra=[("Allow", ALLOW)],
    )
    side.reoffer_pending = True
    call.log.info("reoffer_sent", ext=side.ext, direction=direction)

    done = False

    def finished(status: int) -> None:
        nonlocal done
        done = True
        side.reoffer_pending = False
        if on_done is not None:
            on_done(status)

    def on_response(resp: Response, sent: Request) -> None:
        nonlocal done
        if resp.status < 200:
            return
        if resp.status < 300:
            # Every 2xx is ACKed, retransmissions too, with the CSeq number and the
            # credentials of the INVITE it answers (§13.2.2.4; a challenged re-INVITE was
            # sent again with a new CSeq, §22.2).
            ack = dialog.create_request(
                "ACK",
                stack.via_for(flow.transport, flow.address[0]),
                cseq=sent.cseq[0],
                extra=_credentials_of(sent),
            )
            stack.send_stateless(ack, flow.address, flow.transport)
        if done:
            return
        if resp.status < 300:
            if not call.ended and side in call.sides():  # else the leg is gone already
                dialog.update_target(resp)
                _apply_answer_to_offer(call, side, resp.body, offer, version)
            finished(resp.status)
            return
        # §14.1: a failed re-INVITE leaves the session unchanged.
        call.log.info("reoffer_failed", ext=side.ext, status=resp.status)
        if resp.status == 491 and retry_on_glare:
            done = True
            side.reoffer_pending = False
            delay = glare_retry_delay(side.uac)

            def retry() -> None:
                sent = send_reoffer(
                    call, side, direction=direction, on_done=on_done, retry_on_glare=False
                )
                if not sent and on_done is not None:
                    on_done(491)

            asyncio.get_running_loop().call_later(delay, retry)
            return
        finished(resp.status)
        if resp.status in (481, 408):
            call.hangup(f"sip_{resp.status}")  # §12.2.1.2: the dialog is gone

    def on_timeout() -> None:
        if not done:
            finished(408)
            call.hangup("sip_408")

    b2b.send_in_dialog(dialog, req, on_response, on_timeout, flow=flow)
    return True


def _credentials_of(request: Request) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in request.headers
        if name.lower() in ("authorization", "proxy-authorization")
    ]


def _apply_answer_to_offer(call: Call, side: Side, body: bytes, offer: bytes, version: int) -> None:
    try:
        ans = sdp.parse_answer(body, SUPPORTED_CODECS)
    except sdp.SdpError as exc:
        # An unusable answer: keep the media as it was (RFC 3264 §6.1 gives no remedy but
        # a new offer; the party can send one).
        call.log.info("bad_reoffer_answer", ext=side.ext, error=str(exc))
        return
    side.sdp_version = version
    side.last_local_sdp = offer
    side.codec = ans.codec
    side.dtmf_pt = ans.dtmf_payload_type
    call.b2b.media.set_remote(
        side.leg_id,
        ans.remote[0],
        ans.remote[1],
        ans.codec,
        ans.dtmf_payload_type,
        direction=ans.direction,
    )
