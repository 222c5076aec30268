"""Media: RTP sessions, G.711, tones and the two-party relay engine.

Other packages import only from here. ``media`` knows nothing about SIP: legs are addressed
by id and configured with plain addresses and ``Codec`` values that ``pbx.sdp`` negotiates.
"""

from media.codec import DIRECTIONS, PCMA, PCMU, STATIC_PAYLOAD_TYPES, Codec, Direction
from media.engine import Leg, LegStats, MediaEngine, MediaError, PortsExhausted
from media.rtp import RtpOutputStream, RtpPacket, TelephoneEvent, serial_diff
from media.tones import TONE_PLANS, ToneGenerator, TonePlan

__all__ = [
    "DIRECTIONS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TONE_PLANS",
    "Codec",
    "Direction",
    "Leg",
    "LegStats",
    "MediaEngine",
    "MediaError",
    "PortsExhausted",
    "RtpOutputStream",
    "RtpPacket",
    "TelephoneEvent",
    "ToneGenerator",
    "TonePlan",
    "serial_diff",
]
