"""Codec registry: G.711 reference values, G.722 and Opus round trips, L16 byte order, sizes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from media import g722, opus
from media.codecs import (
    G722,
    L16_8K,
    L16_16K,
    OPUS,
    PCMA,
    PCMU,
    SUPPORTED,
    Codec,
    CodecInfo,
    get_codec,
)

Int16Array = npt.NDArray[np.int16]


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> Int16Array:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def round_trip(info: CodecInfo, pcm: Int16Array) -> tuple[Int16Array, list[bytes]]:
    enc, dec = info.new_encoder(), info.new_decoder()
    n = info.frame_samples()
    payloads = [enc.encode(pcm[i : i + n]) for i in range(0, len(pcm), n)]
    return np.concatenate([dec.decode(p) for p in payloads]), payloads


def peak_hz(x: Int16Array, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def snr_db(ref: Int16Array, out: Int16Array, max_lag: int = 64) -> float:
    """SNR after aligning ``out`` to ``ref`` on the codec delay (best lag up to max_lag)."""
    r = ref[: len(ref) - max_lag].astype(np.float64)
    best = max(
        (float(np.sum(r**2) / max(np.sum((out[lag : lag + len(r)] - r) ** 2), 1e-9)))
        for lag in range(max_lag)
    )
    return float(10 * np.log10(best))


# --- registry --------------------------------------------------------------------------------


def test_lookup_by_sdp_name_and_rtp_clock() -> None:
    assert get_codec("PCMU", 8000) is PCMU
    assert get_codec("pcma", 8000) is PCMA  # RFC 4566 §6: names are case-insensitive
    assert get_codec("L16", 16000) is L16_16K
    assert get_codec("L16", 8000) is L16_8K
    assert get_codec("PCMU", 16000) is None
    assert get_codec("G729", 8000) is None
    if g722.AVAILABLE:
        # RFC 3551 §4.5.2: G.722's RTP clock is 8000 although it samples at 16 kHz.
        assert get_codec("g722", 8000) is G722
        assert get_codec("G722", 16000) is None
    if opus.AVAILABLE:
        assert get_codec("OPUS", 48000) is OPUS


def test_supported_order_and_contents() -> None:
    names = [(c.name, c.clock_rate) for c in SUPPORTED]
    assert names.index(("PCMU", 8000)) < names.index(("PCMA", 8000))
    assert ("L16", 8000) in names and ("L16", 16000) in names
    assert (("G722", 8000) in names) == g722.AVAILABLE
    assert (("opus", 48000) in names) == opus.AVAILABLE


def test_codec_values_for_sdp() -> None:
    assert PCMU.codec() == Codec(0, "PCMU", 8000)
    assert PCMA.codec() == Codec(8, "PCMA", 8000)
    assert G722.codec() == Codec(9, "G722", 8000)
    assert L16_16K.codec(97) == Codec(97, "L16", 16000)
    with pytest.raises(ValueError, match="no static payload type"):
        L16_16K.codec()
    assert OPUS.channels == 2 and OPUS.clock_rate == 48000  # RFC 7587 §7: opus/48000/2


@pytest.mark.parametrize(
    ("info", "pcm_samples", "ts_increment", "payload_octets"),
    [
        (PCMU, 160, 160, 160),
        (PCMA, 160, 160, 160),
        (G722, 320, 160, 160),
        (L16_8K, 160, 160, 320),
        (L16_16K, 320, 320, 640),
        (OPUS, 320, 960, None),
    ],
    ids=lambda v: v.name if isinstance(v, CodecInfo) else str(v),
)
def test_frame_sizes_for_20_ms(
    info: CodecInfo, pcm_samples: int, ts_increment: int, payload_octets: int | None
) -> None:
    assert info.frame_samples(20) == pcm_samples
    assert info.timestamp_increment(20) == ts_increment
    assert info.payload_size(20) == payload_octets
    if (info is G722 and not g722.AVAILABLE) or (info is OPUS and not opus.AVAILABLE):
        return
    enc, dec = info.new_encoder(), info.new_decoder()
    payload = enc.encode(np.zeros(pcm_samples, dtype=np.int16))
    if payload_octets is not None:
        assert len(payload) == payload_octets
    assert len(dec.decode(payload)) == pcm_samples
    assert len(dec.conceal(pcm_samples)) == pcm_samples


# --- G.711 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "code", "value"),
    [
        # ITU-T G.711 Tables 1/2 scaled to 16 bits (as in the reference g711.c).
        (PCMU, 0xFF, 0),
        (PCMU, 0x80, 32124),
        (PCMU, 0x00, -32124),
        (PCMU, 0xEF, 132),
        (PCMA, 0xD5, 8),
        (PCMA, 0x55, -8),
        (PCMA, 0xAA, 32256),
        (PCMA, 0xC5, 264),
    ],
)
def test_g711_decode_reference(info: CodecInfo, code: int, value: int) -> None:
    assert int(info.new_decoder().decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (-8, 0x7E, 0x55)],
)
def test_g711_encode_reference(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert PCMU.new_encoder().encode(pcm) == bytes([ulaw])
    assert PCMA.new_encoder().encode(pcm) == bytes([alaw])


@pytest.mark.parametrize("info", [PCMU, PCMA], ids=["PCMU", "PCMA"])
def test_g711_tone_round_trip(info: CodecInfo) -> None:
    x = tone(1000, 8000, 0.5)
    y, payloads = round_trip(info, x)
    assert all(len(p) == 160 for p in payloads)
    assert peak_hz(y, 8000) == pytest.approx(1000, abs=10)
    assert snr_db(x, y, max_lag=1) > 30  # companding: ~38 dB for a loud tone


# --- G.722 -----------------------------------------------------------------------------------

needs_g722 = pytest.mark.skipif(not g722.AVAILABLE, reason="G722 package not installed")


@needs_g722
@pytest.mark.parametrize("freq", [1000, 5000])
def test_g722_tone_round_trip_keeps_frequency_and_snr(freq: int) -> None:
    # 5 kHz is above the narrowband limit: only a real wideband codec keeps it.
    x = tone(freq, 16000, 1.0)
    y, payloads = round_trip(G722, x)
    assert all(len(p) == 160 for p in payloads)
    assert len(y) == len(x)
    steady = slice(1600, None)  # skip the ADPCM start-up
    assert peak_hz(y[steady], 16000) == pytest.approx(freq, abs=10)
    assert snr_db(x[steady], y[steady]) > 20


@needs_g722
def test_g722_is_stateful_per_direction() -> None:
    x = tone(1000, 16000, 0.04)
    a, b = G722.new_encoder(), G722.new_encoder()
    first = a.encode(x[:320])
    assert b.encode(x[:320]) == first  # same state, same output
    second = a.encode(x[320:])
    assert second != G722.new_encoder().encode(x[320:])  # ADPCM state carried over
    a.reset()
    assert a.encode(x[:320]) == first


@needs_g722
def test_g722_rejects_odd_sample_counts() -> None:
    with pytest.raises(ValueError, match="pairs of samples"):
        G722.new_encoder().encode(np.zeros(321, dtype=np.int16))


@needs_g722
def test_g722_conceals_a_lost_frame_with_the_tone() -> None:
    x = tone(1000, 16000, 0.2)
    enc, dec = G722.new_encoder(), G722.new_decoder()
    for i in range(0, 3200, 320):
        dec.decode(enc.encode(x[i : i + 320]))
    concealed = dec.conceal(320)
    assert peak_hz(concealed, 16000) == pytest.approx(1000, abs=60)
    assert np.sqrt(np.mean(concealed.astype(np.float64) ** 2)) > 2000


# --- L16 -------------------------------------------------------------------------------------


def test_l16_is_big_endian() -> None:
    # RFC 3551 §4.5.11: 16-bit signed, network byte order.
    pcm = np.array([1, -2, 0x1234, -32768, 32767], dtype=np.int16)
    wire = b"\x00\x01\xff\xfe\x12\x34\x80\x00\x7f\xff"
    assert L16_8K.new_encoder().encode(pcm) == wire
    decoded = L16_16K.new_decoder().decode(wire)
    assert decoded.dtype == np.int16
    assert decoded.tolist() == pcm.tolist()


def test_l16_rejects_half_samples() -> None:
    with pytest.raises(ValueError, match="not whole samples"):
        L16_8K.new_decoder().decode(b"\x00\x01\x02")


# --- Opus ------------------------------------------------------------------------------------

needs_opus = pytest.mark.skipif(not opus.AVAILABLE, reason="libopus not installed")


@needs_opus
def test_opus_round_trip_keeps_the_tone() -> None:
    x = tone(1000, 16000, 0.5)
    y, payloads = round_trip(OPUS, x)
    assert len(y) == len(x)
    assert all(0 < len(p) < 200 for p in payloads)  # ~32 kbit/s: ~80 octets per 20 ms
    steady = y[3200:]
    assert peak_hz(steady, 16000) == pytest.approx(1000, abs=10)
    level = np.sqrt(np.mean(steady.astype(np.float64) ** 2)) / (8000 / np.sqrt(2))
    assert 0.7 < level < 1.3


@needs_opus
def test_opus_conceal_uses_the_codec_plc() -> None:
    x = tone(1000, 16000, 0.2)
    enc, dec = OPUS.new_encoder(), OPUS.new_decoder()
    for i in range(0, 3200, 320):
        dec.decode(enc.encode(x[i : i + 320]))
    concealed = dec.conceal(320)
    assert len(concealed) == 320
    assert peak_hz(concealed, 16000) == pytest.approx(1000, abs=60)


@needs_opus
def test_opus_rejects_a_corrupt_packet_and_bad_frame_size() -> None:
    with pytest.raises(ValueError):
        OPUS.new_decoder().decode(b"")
    with pytest.raises(ValueError, match="opus_encode"):
        OPUS.new_encoder().encode(np.zeros(100, dtype=np.int16))  # not 2.5..60 ms
