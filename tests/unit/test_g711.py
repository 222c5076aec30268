"""G.711 µ-law / A-law against ITU-T G.711 reference values, round trips and transcoding."""

from __future__ import annotations

import numpy as np
import pytest

from media import g711
from media.g711 import (
    ALAW_DECODE,
    ALAW_TO_ULAW,
    ULAW_DECODE,
    ULAW_TO_ALAW,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

# (code octet as transmitted, decoded linear value) from ITU-T G.711 Tables 1 and 2,
# scaled to 16-bit like the reference g711.c.
ULAW_REFERENCE = [
    (0xFF, 0),
    (0x7F, 0),  # "negative zero"
    (0x00, -32124),
    (0x80, 32124),
    (0xFE, 8),
    (0x7E, -8),
    (0xF0, 120),  # segment 0 top
    (0xEF, 132),  # segment 1 start
    (0x8F, 16764),
]
ALAW_REFERENCE = [
    (0xD5, 8),
    (0x55, -8),
    (0xAA, 32256),
    (0x2A, -32256),
    (0xD4, 24),
    (0xC5, 264),  # segment 1 start
    (0xA5, 16896),
]


@pytest.mark.parametrize(("code", "value"), ULAW_REFERENCE)
def test_ulaw_decode_reference(code: int, value: int) -> None:
    assert int(ULAW_DECODE[code]) == value
    assert int(ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(("code", "value"), ALAW_REFERENCE)
def test_alaw_decode_reference(code: int, value: int) -> None:
    assert int(ALAW_DECODE[code]) == value
    assert int(alaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (8, 0xFE, 0xD5), (-8, 0x7E, 0x55)],
)
def test_encode_reference(sample: int, ulaw: int, alaw: int) -> None:
    assert ulaw_encode([sample]) == bytes([ulaw])
    assert alaw_encode([sample]) == bytes([alaw])


def test_every_code_round_trips_through_linear() -> None:
    codes = bytes(range(256))
    ulaw_again = ulaw_encode(ulaw_decode(codes))
    # µ-law 0x7F (negative zero) decodes to 0, which encodes to 0xFF; all others are exact.
    assert ulaw_again == codes.replace(b"\x7f", b"\xff")
    assert alaw_encode(alaw_decode(codes)) == codes


def test_quantisation_error_is_bounded_over_the_whole_range() -> None:
    x = np.arange(-32768, 32768, dtype=np.int32)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        y = decode(encode(x.astype(np.int16))).astype(np.int32)
        error = np.abs(y - x)
        # Logarithmic companding: error grows with amplitude, ~1/16 of it at most.
        assert np.all(error <= np.maximum(16, np.abs(x) / 16))


def test_decode_is_monotonic() -> None:
    # Positive codes in increasing magnitude: µ-law 0xFF..0x80, A-law (code ^ 0xD5) 0..127.
    ulaw_positive = ULAW_DECODE[np.arange(0xFF, 0x7F, -1)]
    alaw_positive = ALAW_DECODE[np.arange(128) ^ 0xD5]
    assert np.all(np.diff(ulaw_positive.astype(np.int32)) > 0)
    assert np.all(np.diff(alaw_positive.astype(np.int32)) > 0)


def test_translation_tables() -> None:
    assert len(ULAW_TO_ALAW) == 256 and len(ALAW_TO_ULAW) == 256
    assert ULAW_TO_ALAW[0xFF] == 0xD5  # silence stays silence
    assert ALAW_TO_ULAW[0xD5] == 0xFE  # +8 is exact in µ-law
    # Transcoding equals decode-then-encode, and stays within one quantisation step.
    codes = bytes(range(256))
    assert codes.translate(ULAW_TO_ALAW) == alaw_encode(ulaw_decode(codes))
    assert codes.translate(ALAW_TO_ULAW) == ulaw_encode(alaw_decode(codes))
    u = ulaw_decode(codes).astype(np.int32)
    via_alaw = alaw_decode(codes.translate(ULAW_TO_ALAW)).astype(np.int32)
    assert np.all(np.abs(via_alaw - u) <= np.maximum(16, np.abs(u) / 16))


def test_codec_name_dispatch() -> None:
    pcm = np.array([0, 1000, -1000], dtype=np.int16)
    assert g711.encode("pcmu", pcm) == ulaw_encode(pcm)
    assert g711.encode("PCMA", pcm) == alaw_encode(pcm)
    assert np.array_equal(g711.decode("PCMA", alaw_encode(pcm)), alaw_decode(alaw_encode(pcm)))
    with pytest.raises(ValueError, match=r"not a G\.711 codec"):
        g711.encode("G722", pcm)
    with pytest.raises(ValueError, match=r"not a G\.711 codec"):
        g711.decode("opus", b"")
