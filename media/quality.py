"""Call quality: a simplified ITU-T G.107 E-model giving R and MOS from RTCP figures.

Theory of operation
-------------------
The E-model rates a connection with R = Ro - Is - Id - Ie,eff + A (G.107 §7). VoIP monitors
use the reduced form with every default left at its G.107 Table 3 value, where Ro - Is comes
to 93.2 and the advantage factor A is 0:

    R = 93.2 - Id - Ie,eff

* Id, the delay impairment, uses the well-known piecewise-linear fit of the G.107 delay curve
  for a connection with good echo control (Cole & Rosenbluth, "Voice over IP performance
  monitoring", ACM CCR 2001): Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3), with d the one-way
  mouth-to-ear delay in ms and H the step function.
* Ie,eff, the equipment impairment with packet loss (G.107 §7.5, eq. 7-29, random loss so
  BurstR = 1): Ie,eff = Ie + (95 - Ie) Ppl / (Ppl + Bpl), Ppl in percent. Ie and Bpl per codec
  come from ITU-T G.113 Appendix I: G.711 Ie = 0 with Bpl = 4.3 without packet-loss
  concealment or 25.1 with the G.711 Appendix I PLC.
* One-way delay d is estimated from what RTCP gives us: half the round-trip time, plus the
  jitter buffer (about 2 x jitter + 10 ms), plus packetisation (one 20 ms frame) and the
  codec's algorithmic delay.
* MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R) for 0 < R < 100 (G.107 Annex B), clamped to
  [1, 4.5]; R = 93.2 gives 4.41, the ceiling of narrowband telephony.

G.722 is a wideband codec; G.113 rates it on the wideband scale (Ie,wb). On this narrowband
scale we treat it as transparent (Ie = 0, like G.711) and, lacking a narrowband Bpl, use the
G.711-with-PLC value; it is a provisional planning value, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CODEC_IMPAIRMENTS",
    "R_DEFAULT",
    "CodecImpairment",
    "estimate_mos",
    "estimate_r",
    "mos_from_r",
    "one_way_delay_ms",
]

R_DEFAULT = 93.2  # G.107 Ro - Is with all Table 3 defaults
PACKETISATION_MS = 20.0


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """G.113 Appendix I planning values for one codec."""

    ie: float  # equipment impairment without loss
    bpl_plc: float  # packet-loss robustness with concealment
    bpl_no_plc: float  # ... without
    algorithmic_delay_ms: float  # look-ahead and filter delay


_G711 = CodecImpairment(ie=0.0, bpl_plc=25.1, bpl_no_plc=4.3, algorithmic_delay_ms=0.125)
CODEC_IMPAIRMENTS: dict[str, CodecImpairment] = {
    "PCMU": _G711,
    "PCMA": _G711,
    "G711": _G711,
    "G722": CodecImpairment(ie=0.0, bpl_plc=25.1, bpl_no_plc=4.3, algorithmic_delay_ms=1.5),
}


def _impairment(codec_name: str) -> CodecImpairment:
    try:
        return CODEC_IMPAIRMENTS[codec_name.upper().replace(".", "")]
    except KeyError:
        known = ", ".join(sorted(CODEC_IMPAIRMENTS))
        raise ValueError(f"no E-model values for codec {codec_name!r} (known: {known})") from None


def one_way_delay_ms(codec_name: str, jitter_ms: float, rtt_ms: float) -> float:
    """Estimated mouth-to-ear delay: network + jitter buffer + packetisation + codec."""
    jitter_buffer = 2.0 * max(0.0, jitter_ms) + 10.0
    return (
        max(0.0, rtt_ms) / 2.0
        + jitter_buffer
        + PACKETISATION_MS
        + _impairment(codec_name).algorithmic_delay_ms
    )


def estimate_r(
    codec_name: str, loss_fraction: float, jitter_ms: float, rtt_ms: float, *, plc: bool = True
) -> float:
    """The transmission rating R (0..93.2) of the simplified E-model."""
    codec = _impairment(codec_name)
    d = one_way_delay_ms(codec_name, jitter_ms, rtt_ms)
    delay_impairment = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ppl = 100.0 * min(1.0, max(0.0, loss_fraction))
    bpl = codec.bpl_plc if plc else codec.bpl_no_plc
    # G.107 eq. 7-29 with BurstR = 1 (random loss).
    ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + bpl)
    return max(0.0, R_DEFAULT - delay_impairment - ie_eff)


def mos_from_r(r: float) -> float:
    """G.107 Annex B conversion of R to the estimated mean opinion score, in [1, 4.5]."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    return min(4.5, max(1.0, mos))


def estimate_mos(
    codec_name: str, loss_fraction: float, jitter_ms: float, rtt_ms: float, *, plc: bool = True
) -> float:
    """MOS estimate for a leg from RTCP figures (loss 0..1, jitter and RTT in ms)."""
    return mos_from_r(estimate_r(codec_name, loss_fraction, jitter_ms, rtt_ms, plc=plc))
