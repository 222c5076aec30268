"""The call record of a call: who, when, how it ended, and how it sounded.

Theory of operation
-------------------
A call ends exactly once (``Call._end``); just before its legs are released, the media
interface is read once (:func:`measure`): packet counters of every leg the call owned, for
the log line, and the reception quality of the caller's and callee's legs (RFC 3550 §6.4.1
loss fraction and §A.8 interarrival jitter, with the MOS estimated from them) for the record.
:func:`call_detail` then builds the :class:`~pbx.persistence.CallDetail` that
``B2bua.on_call_ended`` hands to the store. Times are wall-clock UTC; an end before the
answer (a clock step) is clamped to the answer. The disposition follows the CDR convention
(ANSWERED, BUSY, NO ANSWER, FAILED, CANCELLED); ``sip_status`` is the final status the
caller saw (RFC 3261 §21), 200 for answered calls.

What reports need beyond SIP (``docs/records.md``): a call's :class:`CallNotes` hold the
dialled number and direction (set by the SIP core) and what services add through
``CallControl.annotate`` (queue, agent id, when the caller joined a queue, the queue-log
call id, a callback request). From them:

- ``answer`` is when the called *party* answered. A call Switchboard answered itself (IVR,
  queue) and later connected to a phone (an agent, an extension) is answered when that
  phone answered; ``system_answer`` keeps Switchboard's own answer. So billable seconds
  (end - answer) count talk time, not IVR and queue time — as Asterisk's ``billsec`` counts
  from the bridged party's answer.
- A call that reached a queue and was connected to nobody has no ``answer`` and is
  NO ANSWER, whatever the caller heard (Asterisk CDR disposition: no party answered).
- ``wait_seconds`` runs from joining the first queue to the party's answer, or to the end.
- A call Switchboard placed itself (a callback) and then connected to a second phone is
  recorded from the connected phone (the agent) to the phone it dialled (the customer):
  caller and callee, their quality figures and the hang-up side are named that way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from media import MediaInterface

from .persistence import CallDetail

if TYPE_CHECKING:
    from .call import Call

__all__ = ["DIRECTIONS", "CallNotes", "Measurements", "call_detail", "measure"]

DIRECTIONS = ("inbound", "outbound", "internal")


@dataclass(slots=True)
class CallNotes:
    """What a call's record says beyond SIP; services add to it with
    ``CallControl.annotate`` (see the module documentation)."""

    dialled: str | None = None
    direction: str = "internal"
    queue: str | None = None
    agent: str | None = None
    queued_at: datetime | None = None  # when the caller joined the first queue
    queue_call_id: str | None = None
    callback_id: int | None = None
    trunk: str | None = None  # the trunk the call left or arrived through
    # Trunks tried before the one that carried the call, with their final status.
    trunk_attempts: list[tuple[str, int]] = field(default_factory=list)
    caller_id_sent: str | None = None  # the caller ID a trunk was given (outbound)

    def carried_over(self) -> CallNotes:
        """What a continuation of the call (after an intercept) keeps: where the caller
        came from, not who answered."""
        return CallNotes(
            dialled=self.dialled,
            direction=self.direction,
            queue=self.queue,
            queue_call_id=self.queue_call_id,
        )


@dataclass(slots=True)
class Measurements:
    """What the media side says about a call's legs at its end."""

    counters: dict[str, int] = field(default_factory=dict)  # a_packets_in, b_packets_out...
    quality: dict[str, float | None] = field(default_factory=dict)  # caller_mos, callee_loss...

    def fill_from(self, earlier: Measurements) -> None:
        """Take ``earlier``'s figures for what these lack (a leg closed before the end)."""
        for key, count in earlier.counters.items():
            self.counters.setdefault(key, count)
        for key, value in earlier.quality.items():
            self.quality.setdefault(key, value)


def measure(media: MediaInterface, call: Call, leg_ids: Sequence[str]) -> Measurements:
    """Read the counters of ``leg_ids`` (named a, b, c in order) and the quality of the
    caller's and callee's legs. Legs the media side no longer has are skipped."""
    out = Measurements()
    for name, leg_id in zip(("a", "b", "c"), leg_ids, strict=False):
        if leg_id in media:
            st = media.leg_stats(leg_id)
            out.counters[f"{name}_packets_in"] = st.packets_in
            out.counters[f"{name}_packets_out"] = st.packets_out
    for role, s in (("caller", call.a), ("callee", call.b)):
        if s is not None and s.leg_id in media:
            q = media.leg_quality(s.leg_id)
            if q.packets_received:
                out.quality[f"{role}_loss"] = round(q.loss_fraction, 4)
                out.quality[f"{role}_jitter_ms"] = round(q.jitter_ms, 2)
                out.quality[f"{role}_mos"] = round(q.mos, 2)
    return out


def call_detail(
    call: Call,
    *,
    disposition: str,
    cause: str,
    side: str,
    status: int | None,
    quality: dict[str, float | None],
    end: datetime | None = None,
) -> CallDetail:
    """The record of ``call`` ending now (or at ``end``)."""
    end = end or datetime.now(UTC)
    notes = call.notes
    end = max(end, call.answered_at or end)
    if call.connected_at is not None:
        answer: datetime | None = call.connected_at
    elif notes.queue is not None:
        answer = None  # only Switchboard answered: the queue's caller reached nobody
    else:
        answer = call.answered_at
    end = max(end, answer or end)
    if answer is None and disposition == "ANSWERED":
        disposition = "NO ANSWER"
    wait = None
    if notes.queued_at is not None:
        wait = round(max(0.0, ((answer or end) - notes.queued_at).total_seconds()), 3)
    caller, callee = call.caller, call.callee
    if call.placed and call.b is not None:
        # Switchboard dialled ``a`` for ``b`` (a callback): b placed the call.
        caller, callee = call.b.ext, call.a.ext
        side = {"caller": "callee", "callee": "caller"}.get(side, side)
        quality = {
            ("callee" + k[6:] if k.startswith("caller") else "caller" + k[6:]): v
            for k, v in quality.items()
        }
    return CallDetail(
        call_id=call.call_id,
        caller=caller,
        callee=callee,
        start=call.start,
        answer=answer,
        end=end,
        hangup_cause=cause,
        disposition=disposition,
        hangup_side=side,
        sip_status=status,
        linked_id=call.linked_id,
        record_id=call.id,
        ivr_keys=call.ivr_keys or None,
        dialled=notes.dialled,
        direction=notes.direction,
        system_answer=call.system_answered_at,
        queue=notes.queue,
        agent=notes.agent,
        wait_seconds=wait,
        queue_call_id=notes.queue_call_id,
        callback_id=notes.callback_id,
        trunk=notes.trunk,
        trunk_attempts=(
            ",".join(f"{name}:{status}" for name, status in notes.trunk_attempts) or None
        ),
        caller_id_sent=notes.caller_id_sent,
        **quality,
    )
