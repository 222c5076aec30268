"""A third party rung for one party of an answered call: consult transfer and conference.

Theory of operation
-------------------
The agent panel drives these (``CallControl.consult``, ``complete_consult``,
``cancel_consult``, ``conference``); no phone sends REFER. Media is anchored on Switchboard,
so each is a re-pairing of legs and neither the customer nor the agent's phone sees a new
INVITE or a re-INVITE:

- *Consult* (an attended transfer done by Switchboard, the effect RFC 5589 §7 describes
  for a phone's REFER with Replaces): the customer is unbridged and hears music on hold;
  the agent hears ringback while Switchboard rings the target; when it answers, the agent
  and the target talk. *Complete* ends the original call's record (cause ``transferred``,
  as REFER does) and pairs customer and target in a new call linked to it; the agent's
  phone gets a BYE (RFC 3261 §15). *Cancel* releases the target (CANCEL while it rings,
  RFC 3261 §9; BYE once answered) and bridges agent and customer again.
- *Conference*: the customer and the agent keep talking while the target rings; its answer
  joins it into the call's bridge (three legs, mixed). The target hanging up leaves the
  other two talking; the customer hanging up ends the call, and the target with it.

The agent's phone hanging up never drops the customer (:meth:`ThirdParty.agent_hung_up`),
as a transferor may leave once a transfer is under way (RFC 5589 §6):

- target answered (consult or conference): customer and target go on together, as *complete*
  does (a "warm transfer" by hanging up);
- target still ringing: the customer hears ringback instead of the music, and the target's
  answer connects them; if it refuses or does not answer within its ring timeout, the
  customer's call ends with cause ``transfer_failed`` (as a blind transfer whose transferor
  already left, pbx.transfer).

The third party's dialog is routed to the call (``B2bua.register_side``) so its BYE reaches
:meth:`ThirdParty.left`; the call's end releases it unless a completed consult took it over.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from .outbound import Outbound, spawn
from .side import Side
from .trunk_dial import TrunkDial

if TYPE_CHECKING:
    from .call import Call

__all__ = ["MODES", "ThirdParty"]

log = structlog.get_logger("pbx.consult")

MODES = ("consult", "conference")

# Seconds an outside number rings for a customer whose agent hung up during the consult
# (an extension rings for its own ring_timeout).
DEFAULT_RING_TIMEOUT = 30.0


class ThirdParty:
    """``target`` rung for ``me`` (the agent) of ``call``; ``other`` is the customer."""

    def __init__(
        self,
        call: Call,
        me: Side,
        other: Side,
        target: str,
        mode: str,
        on_failed: Callable[[int], None] = lambda status: None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown third-party mode {mode!r}")
        self.call = call
        self.me = me
        self.other = other
        self.target = target
        self.mode = mode
        self.side: Side | None = None  # the target, once it answered
        self.outbound: Outbound | TrunkDial | None = None
        self.done = False  # completed, cancelled, failed or left
        self.agent_left = False  # the agent's phone hung up while the target was ringing
        self._ring_timer: asyncio.TimerHandle | None = None
        self._on_failed = on_failed
        self.log = call.log.bind(third=target, mode=mode, by=me.ext)

    @property
    def answered(self) -> bool:
        return self.side is not None and not self.done

    # -- ringing -----------------------------------------------------------------------

    def start(self) -> bool:
        """Ring the target (an extension, or an outside number dialled for the agent's
        extension with its class of service). False if it cannot be rung."""
        call = self.call
        b2b = call.b2b
        outbound = b2b.ringer(
            self.target,
            on_behalf_of=self.me.ext,
            leg_id=f"{call.id}-c{secrets.token_hex(2)}",
            caller_ext=self.me.ext,
            caller_display=None,
            first_codec=self.me.codec,
            ring_timeout=None,
            on_ringing=lambda status, early: None,
            on_answered=self._answered,
            on_failed=lambda status, timed_out: self._failed(status),
            near=self.me.leg_id,
            on_attempt=lambda trunk, leg: b2b.track_leg(leg, call),
        )
        if outbound is None:
            return False
        self.outbound = outbound
        if isinstance(outbound, Outbound):
            b2b.track_leg(outbound.leg_id, call)
        media = b2b.media
        if self.mode == "consult":
            # The customer waits with music; the agent hears the target's phone ring.
            media.unbridge(self.other.leg_id)
            if self.other.moh_player is None:
                self.other.moh_player = b2b.start_music_on_hold(self.other.leg_id)
            media.start_tone(self.me.leg_id, "ringback")
        self.log.info("third_party_ringing")

        async def run() -> None:
            if not await outbound.start():
                self._failed(503)

        spawn(run())
        return True

    def _answered(self, side: Side) -> None:
        call = self.call
        b2b = call.b2b
        if self.done or call.ended:
            if side.dialog is not None:
                b2b.send_bye(side.dialog)
            b2b.media.close_leg(side.leg_id)
            return
        self.side = side
        side.label = "c"
        call.note_trunk_of(side)
        b2b.listen_for_dtmf(side)
        b2b.register_side(call, side)
        if self.agent_left:
            self.log.info("third_party_answered", ext=side.ext)
            self.complete(agent_left=True)
            return
        media = b2b.media
        if self.mode == "consult":
            media.stop_tone(self.me.leg_id)
            media.bridge(self.me.leg_id, side.leg_id)
        else:
            bridge = media.bridge_of(self.other.leg_id)
            if bridge is None:
                bridge = media.bridge(self.other.leg_id, self.me.leg_id)
            media.join(bridge, side.leg_id)
        self.log.info("third_party_answered", ext=side.ext)

    def _failed(self, status: int) -> None:
        if self.done:
            return
        self.log.info("third_party_failed", status=status)
        if self.agent_left:
            self._customer_alone(status)
        else:
            self._back_together()
        self._on_failed(status)

    def _customer_alone(self, status: int) -> None:
        """The target failed after the agent left: nobody to go back to, the call ends."""
        self._stop_ring_timer()
        if not self._finished():
            return
        call = self.call
        other = self.other
        if other.leg_id in call.b2b.media:
            call.b2b.media.stop_tone(other.leg_id)
        if self.me is call.b and call.caller_goes_on("transfer_failed"):
            return  # to the post-call survey the queue wanted after the agent
        if other.dialog is not None:
            call.b2b.send_bye(other.dialog)
        # The agent hung up first: the record (and the ACD) count the end as theirs.
        call.end("ANSWERED", "transfer_failed", "caller" if self.me is call.a else "callee", status)

    # -- what the agent (or the target) does -------------------------------------------

    def cancel(self) -> None:
        """Release the target (ringing or answered); the agent and the customer talk again."""
        if self.done:
            return
        self._release_target()
        if self.agent_left:  # the agent's phone is gone: nobody to put the customer back to
            self._customer_alone(487)
        else:
            self._back_together()
        self.log.info("third_party_cancelled")

    def left(self) -> None:
        """The target hung up (its BYE is answered by the call)."""
        if self.done:
            return
        side = self.side
        if side is not None:
            self.call.b2b.unregister_side(side)
            self.call.b2b.media.close_leg(side.leg_id)
        self._back_together()
        self.log.info("third_party_left")

    def agent_hung_up(self) -> bool:
        """The agent's phone hung up (its BYE is answered by the call) while the target is
        rung or answered: the customer is not dropped (see the module docs). True if the
        call ended now (the BYE's 200 then waits for its record), False if the customer
        now waits for the ringing target."""
        if self.done:
            return False
        if self.side is not None:
            return self.complete(agent_left=True) is not None
        call = self.call
        b2b = call.b2b
        self.agent_left = True
        self.me.left = True
        b2b.unregister_side(self.me)
        call.release_leg_early(self.me)
        other = self.other
        if other.moh_player is not None:
            b2b.stop_music_on_hold(other.moh_player)
            other.moh_player = None
        other.holding = False
        if other.leg_id in b2b.media:
            b2b.media.unbridge(other.leg_id)
            b2b.media.start_tone(other.leg_id, "ringback")
        try:
            timeout = b2b.ring_timeout_of(self.target)
        except KeyError:  # an outside number: the default for a phone
            timeout = DEFAULT_RING_TIMEOUT
        self._ring_timer = asyncio.get_running_loop().call_later(timeout, self._ring_timed_out)
        self.log.info("third_party_agent_left", ring_timeout=timeout)
        return False

    def _ring_timed_out(self) -> None:
        self._ring_timer = None
        if self.done or self.side is not None:
            return
        if self.outbound is not None and not self.outbound.done:
            self.outbound.cancel()
        self._failed(408)

    def _stop_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    def complete(self, *, agent_left: bool = False) -> Call | None:
        """Customer and target go on in a new call linked to this one; the agent is
        released (sent a BYE, unless ``agent_left``: their phone hung up). The panel
        completes consults only; a conference completes when the agent hangs up. None
        unless the target answered."""
        side = self.side
        if self.done or side is None or (self.mode != "consult" and not agent_left):
            return None
        call = self.call
        b2b = call.b2b
        self.done = True
        self._stop_ring_timer()
        call.third = None
        other = self.other
        if other.moh_player is not None:
            b2b.stop_music_on_hold(other.moh_player)
            other.moh_player = None
        other.holding = False
        if self.me.leg_id in b2b.media:
            b2b.media.stop_tone(self.me.leg_id)
        if self.me.dialog is not None and not agent_left:
            b2b.send_bye(self.me.dialog)
        call.transferred_to = side.ext
        call.end(
            "ANSWERED",
            "transferred",
            "caller" if self.me is call.a else "callee",
            200,
            keep_media=(other, side),
        )
        new = b2b.connect(other, side, linked_id=call.linked_id or call.id, callee=side.ext)
        new.log.info("consult_transfer_completed", by=self.me.ext, to=side.ext)
        return new

    def release(self) -> None:
        """The call ended: the target goes too (unless a completed consult took it)."""
        if self.done:
            return
        self._stop_ring_timer()
        self._release_target()
        self.done = True

    # -- helpers -------------------------------------------------------------------------

    def _release_target(self) -> None:
        b2b = self.call.b2b
        side = self.side
        if side is not None:
            b2b.unregister_side(side)
            if side.dialog is not None:
                b2b.send_bye(side.dialog)
            b2b.media.close_leg(side.leg_id)
        elif self.outbound is not None and not self.outbound.done:
            self.outbound.cancel()
        if self.outbound is not None:
            b2b.untrack_leg(self.outbound.leg_id)

    def _finished(self) -> bool:
        """Done: the call forgets this third party. True if the call still goes on."""
        self.done = True
        call = self.call
        if call.third is self:
            call.third = None
        return not call.ended

    def _back_together(self) -> None:
        """Agent and customer are bridged again; the music stops."""
        if not self._finished():
            return
        b2b = self.call.b2b
        media = b2b.media
        if self.me.leg_id in media:
            media.stop_tone(self.me.leg_id)
        other = self.other
        if self.mode != "consult":
            # A conference bridge that lost a member keeps the other two (re-paired if an
            # implementation drops a bridge when anybody leaves).
            both = self.me.leg_id in media and other.leg_id in media
            bridge = media.bridge_of(other.leg_id) if both else None
            if both and (bridge is None or bridge != media.bridge_of(self.me.leg_id)):
                media.bridge(other.leg_id, self.me.leg_id)
            return
        if other.moh_player is not None and not self.me.on_hold:
            b2b.stop_music_on_hold(other.moh_player)
            other.moh_player = None
        if self.me.leg_id in media and other.leg_id in media:
            media.bridge(other.leg_id, self.me.leg_id)
