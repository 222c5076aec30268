"""Codec descriptors shared by the media engine and SDP negotiation.

A ``Codec`` is what one side of a call agreed to send and receive: the RTP payload type
number used on that leg (static per RFC 3551 §6 Table 4, or dynamic 96..127 bound by
``a=rtpmap``), the encoding name and the RTP clock rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DIRECTIONS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Codec",
    "Direction",
]

# RFC 4566 §6 / RFC 3264 §5.1 media directions, always from the point of view of the side
# that uses the value (for the engine: Switchboard's own side of the leg).
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

TELEPHONE_EVENT = "telephone-event"  # RFC 4733 §7.1.1 media subtype


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP audio format as negotiated on one leg (e.g. ``Codec(0, "PCMU", 8000)``)."""

    payload_type: int
    name: str
    clock_rate: int

    def same_format(self, other: Codec) -> bool:
        """Same encoding and clock, whatever payload type number each leg uses."""
        return self.name.upper() == other.name.upper() and self.clock_rate == other.clock_rate


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)

# RFC 3551 §6 Table 4: audio payload types usable without a=rtpmap (encoding, clock rate).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    5: ("DVI4", 8000),
    6: ("DVI4", 16000),
    7: ("LPC", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),  # RFC 3551 §4.5.2: clock rate 8000 although sampled at 16 kHz
    10: ("L16", 44100),
    11: ("L16", 44100),
    12: ("QCELP", 8000),
    13: ("CN", 8000),
    14: ("MPA", 90000),
    15: ("G728", 8000),
    16: ("DVI4", 11025),
    17: ("DVI4", 22050),
    18: ("G729", 8000),
}
