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

__all__ = ["Measurements", "call_detail", "measure"]


@dataclass(slots=True)
class Measurements:
    """What the media side says about a call's legs at its end."""

    counters: dict[str, int] = field(default_factory=dict)  # a_packets_in, b_packets_out...
    quality: dict[str, float | None] = field(default_factory=dict)  # caller_mos, callee_loss...


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
    return CallDetail(
        call_id=call.call_id,
        caller=call.caller,
        callee=call.callee,
        start=call.start,
        answer=call.answered_at,
        end=max(end, call.answered_at or end),
        hangup_cause=cause,
        disposition=disposition,
        hangup_side=side,
        sip_status=status,
        linked_id=call.linked_id,
        record_id=call.id,
        ivr_keys=call.ivr_keys or None,
        **quality,
    )
