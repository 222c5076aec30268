"""Media: RTP sessions, codecs, tones, DTMF, RTCP and the engine (bridges, mixer, players).

Other packages import only from here. ``media`` knows nothing about SIP: legs are addressed
by id and configured with plain addresses and ``Codec`` values that ``pbx.sdp`` negotiates.
Callers hold a ``MediaInterface`` (``media.interface``): ``MediaEngine`` runs RTP in this
process, ``MediaWorkerPool`` in worker processes; ``app.media.build_media`` picks one.
"""

from media.codecs.descriptor import DIRECTIONS, PCMA, PCMU, STATIC_PAYLOAD_TYPES, Codec, Direction
from media.dtmf import DtmfReceived, parse_dtmf_info
from media.engine import (
    FrameSource,
    Leg,
    LegInactive,
    LegQuality,
    LegStats,
    MediaEngine,
    MediaError,
    MediaEvent,
    PlaybackFinished,
    PortsExhausted,
    TapCallback,
)
from media.interface import EventHub, LegAddress, LegClosed, MediaInterface, WorkerStats
from media.player import Playlist, load_prompt
from media.rtp import RtpOutputStream, RtpPacket, TelephoneEvent, serial_diff
from media.tones import TONE_PLANS, ToneGenerator, TonePlan, ToneSource
from media.workers import MediaWorkerPool

__all__ = [
    "DIRECTIONS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TONE_PLANS",
    "Codec",
    "Direction",
    "DtmfReceived",
    "EventHub",
    "FrameSource",
    "Leg",
    "LegAddress",
    "LegClosed",
    "LegInactive",
    "LegQuality",
    "LegStats",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "MediaInterface",
    "MediaWorkerPool",
    "PlaybackFinished",
    "Playlist",
    "PortsExhausted",
    "RtpOutputStream",
    "RtpPacket",
    "TapCallback",
    "TelephoneEvent",
    "ToneGenerator",
    "TonePlan",
    "ToneSource",
    "WorkerStats",
    "load_prompt",
    "parse_dtmf_info",
    "serial_diff",
]
