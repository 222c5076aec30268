"""Call transfer: REFER (RFC 3515), blind or attended with Replaces (RFC 3891).

Theory of operation
-------------------
A party (the *transferor*) sends REFER in its dialog; the other party of the call (the
*transferee*) is moved. Media is anchored, so a transfer is a re-pairing of sides and the
transferee never sees a new INVITE:

- *Blind*: Refer-To names an extension. The transferee is unbridged and hears ringback
  while an :class:`~pbx.outbound.Outbound` rings the target on the transferee's behalf; the
  target's answer bridges transferee and target.
- *Attended*: Refer-To carries ``?Replaces=call-id;to-tag;from-tag`` (RFC 3891 §6.1), naming
  the transferor's other dialog (its consultation call, tags in either order). That dialog
  ends as if its far end had accepted an INVITE with Replaces (§3), and the two remaining
  parties are bridged directly.

The REFER gets 202 at once and an implicit subscription reports progress: NOTIFYs with a
``message/sipfrag`` body (RFC 3420) — ``100 Trying``, ``180 Ringing``, then the final status
with ``Subscription-State: terminated`` (RFC 3515 §2.4.4-§2.4.7). One REFER at a time per call
(a second one gets 491); exactly one Refer-To or 400 (§2.4.1). The transferor may hang up
once the transfer is under way (RFC 5589 §6); if it does not, it gets a BYE shortly after
the final NOTIFY. The original call ends with cause ``transferred``; the parties go on in a
new call linked to it (``linked_id``). A failed transfer reconnects transferee and
transferor, or ends the call when the transferor already left.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .message import ParseError, Request, make_response, parse_name_addr, reason_phrase
from .outbound import Outbound, spawn
from .side import Side

if TYPE_CHECKING:
    from .call import Call

__all__ = ["TRANSFEROR_BYE_AFTER", "Transfer", "on_refer", "replaces_of"]

# Seconds after the final NOTIFY before a transferor that stayed gets our BYE.
TRANSFEROR_BYE_AFTER = 2.0


def on_refer(call: Call, me: Side, req: Request) -> None:
    """A REFER from ``me``: check it, answer 202 and start the transfer."""
    stack = call.b2b.stack
    refer_to = req.get_all("Refer-To")
    if len(refer_to) != 1:  # RFC 3515 §2.4.1: exactly one Refer-To
        stack.send_response(make_response(req, 400, "Exactly One Refer-To"))
        return
    try:
        target = parse_name_addr(refer_to[0])
    except ParseError:
        stack.send_response(make_response(req, 400, "Bad Refer-To"))
        return
    other = call.other(me)
    if not call.established or other is None or call.transfer is not None:
        stack.send_response(make_response(req, 491 if call.transfer else 403))
        return
    replaces = replaces_of(target.uri.headers)
    stack.send_response(make_response(req, 202))
    transfer = Transfer(call, me, other, req)
    call.transfer = transfer
    transfer.notify(100, "Trying")
    if replaces is not None:
        transfer.attended(replaces)
    else:
        transfer.blind(target.uri.user_unescaped() or "")


class Transfer:
    """A transfer asked for by ``transferor`` (REFER), moving ``other`` elsewhere."""

    def __init__(self, call: Call, transferor: Side, other: Side, refer: Request) -> None:
        self.call = call
        self.transferor = transferor
        self.other = other
        self.refer = refer
        self.outbound: Outbound | None = None
        self.transferor_left = False
        self.finished = False
        self.log = call.log.bind(transferor=transferor.ext, transferee=other.ext)

    def notify(self, status: int, reason: str, *, final: bool = False) -> None:
        """NOTIFY the transferor of the progress (RFC 3515 §2.4.4, sipfrag RFC 3420)."""
        side = self.transferor
        if side.dialog is None or self.transferor_left:
            return
        stack = self.call.b2b.stack
        state = "terminated;reason=noresource" if final else "active;expires=60"
        req = side.dialog.create_request(
            "NOTIFY",
            stack.via_for(side.flow.transport, side.flow.address[0]),
            stack.contact_for(side.flow.transport, side.flow.address[0]),
            body=f"SIP/2.0 {status} {reason}\r\n".encode(),
            content_type="message/sipfrag;version=2.0",
            extra=[("Event", "refer"), ("Subscription-State", state)],
        )
        stack.send_request(req, side.flow.address, side.flow.transport, on_response=lambda r: None)

    def blind(self, target: str) -> None:
        b2b = self.call.b2b
        contacts = b2b.contacts_of(target)
        if contacts is None:
            self._failed(404, "Not Found")
            return
        if not contacts:
            self._failed(480, "Temporarily Unavailable")
            return
        self.log.info("transfer_blind", target=target)
        self.call.transferred_to = target
        # The transferee hears ringback while the target rings.
        media = b2b.media
        media.unbridge(self.other.leg_id)
        media.start_tone(self.other.leg_id, "ringback")
        self.outbound = Outbound(
            b2b,
            leg_id=f"{self.call.id}-x{secrets.token_hex(2)}",
            caller_ext=self.other.ext,
            caller_display=None,
            callee=target,
            contacts=contacts,
            first_codec=self.other.codec,
            ring_timeout=b2b.ring_timeout_of(target),
            on_ringing=lambda status, early: self.notify(180, "Ringing"),
            on_answered=functools.partial(self._answered, target),
            on_failed=self._target_failed,
            near=self.other.leg_id,  # the party who will talk to the target
        )
        b2b.track_leg(self.outbound.leg_id, self.call)
        spawn(self._start())

    async def _start(self) -> None:
        assert self.outbound is not None
        if not await self.outbound.start():
            self._target_failed(503)

    def _answered(self, target: str, side: Side) -> None:
        b2b = self.call.b2b
        if self.finished or self.call.ended:
            if side.dialog is not None:
                b2b.send_bye(side.dialog)
            b2b.media.close_leg(side.leg_id)
            return
        self.finished = True
        media = b2b.media
        media.stop_tone(self.other.leg_id)
        self.notify(200, "OK", final=True)
        self._complete(self.other, side, callee=target, target_label="b")

    def attended(self, replaces: tuple[str, str, str]) -> None:
        b2b = self.call.b2b
        found = b2b.find_side(*replaces)
        if found is None or found[0] is self.call:
            self._failed(481, "Call/Transaction Does Not Exist")
            return
        call2, replaced = found
        target = call2.other(replaced)
        if target is None or not call2.established:
            self._failed(481, "Call/Transaction Does Not Exist")
            return
        self.log.info("transfer_attended", target=target.ext, replaced_call=call2.id)
        self.call.transferred_to = target.ext
        self.finished = True
        self.notify(200, "OK", final=True)
        # The replaced dialog ends as if its far end had accepted INVITE/Replaces (§3).
        if replaced.dialog is not None:
            b2b.send_bye(replaced.dialog)
        call2.end(
            "ANSWERED",
            "transferred",
            "callee" if replaced.label == "b" else "caller",
            200,
            keep_media=(target,),
        )
        self._complete(self.other, target, callee=target.ext, target_label=target.label)

    def _complete(self, keep: Side, new: Side, *, callee: str, target_label: str) -> None:
        """End the original call record and continue ``keep`` ⇄ ``new`` as a linked call."""
        call = self.call
        b2b = call.b2b
        for s in (keep, new):
            if s.moh_player is not None:
                b2b.stop_music_on_hold(s.moh_player)
                s.moh_player = None
            s.holding = False
        call.end(
            "ANSWERED",
            "transferred",
            "caller" if self.transferor.label == "a" else "callee",
            200,
            keep_media=(keep,),
        )
        if not self.transferor_left and self.transferor.dialog is not None:
            # Most phones hang up after the final NOTIFY; if this one does not, we do.
            dialog = self.transferor.dialog
            asyncio.get_running_loop().call_later(
                TRANSFEROR_BYE_AFTER, lambda: b2b.bye_if_open(dialog)
            )
        b2b.connect(keep, new, linked_id=call.linked_id or call.id, callee=callee)

    def _target_failed(self, status: int, ring_timeout: bool = False) -> None:
        if self.finished:
            return
        self._failed(status, reason_phrase(status))

    def _failed(self, status: int, reason: str) -> None:
        """The transfer did not work: tell the transferor; reconnect or hang up the other."""
        self.finished = True
        self.notify(status, reason, final=True)
        call = self.call
        call.transfer = None
        call.transferred_to = None
        self.log.info("transfer_failed", status=status)
        if call.ended:
            return
        media = call.b2b.media
        if self.other.leg_id in media:
            media.stop_tone(self.other.leg_id)
        if self.transferor_left:
            # Nobody to go back to: the transferee's call ends.
            if self.other.dialog is not None:
                call.b2b.send_bye(self.other.dialog)
            call.end("ANSWERED", "transfer_failed", "system", status)
        else:
            media.bridge(self.other.leg_id, self.transferor.leg_id)

    def abort(self) -> None:
        if self.outbound is not None and not self.finished:
            self.finished = True
            self.outbound.cancel()


def replaces_of(uri_headers: str | None) -> tuple[str, str, str] | None:
    """(call-id, to-tag, from-tag) from ``?Replaces=…`` in a Refer-To URI (RFC 3891 §6.1)."""
    if not uri_headers:
        return None
    for part in uri_headers.split("&"):
        name, _, value = part.partition("=")
        if name.strip().lower() != "replaces":
            continue
        text = unquote(value)
        call_id, *params = text.split(";")
        tags = {}
        for p in params:
            k, _, v = p.partition("=")
            tags[k.strip().lower()] = v.strip()
        if call_id and "to-tag" in tags and "from-tag" in tags:
            return call_id.strip(), tags["to-tag"], tags["from-tag"]
    return None
