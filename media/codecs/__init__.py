"""Codecs: what a leg negotiated (``descriptor``) and how to code it (``registry``).

``Codec`` (payload type, encoding name, RTP clock rate) is the value SDP negotiation hands
the media engine; ``CodecInfo`` is one format this process can encode and decode, found with
``get_codec(name, clock_rate)``.

``PCMU``/``PCMA`` here are the ``CodecInfo`` coders, as ``media.codecs`` has always exported
them; the negotiated ``Codec`` values of the same names live in ``media.codecs.descriptor``
and are what the ``media`` package exports.
"""

from media.codecs.descriptor import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    Direction,
)
from media.codecs.registry import (
    G722,
    L16_8K,
    L16_16K,
    OPUS,
    PCMA,
    PCMU,
    SUPPORTED,
    CodecInfo,
    Decoder,
    Encoder,
    get_codec,
)

__all__ = [
    "DIRECTIONS",
    "G722",
    "L16_8K",
    "L16_16K",
    "OPUS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED",
    "TELEPHONE_EVENT",
    "Codec",
    "CodecInfo",
    "Decoder",
    "Direction",
    "Encoder",
    "get_codec",
]
