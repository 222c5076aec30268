"""Simplified ITU-T G.107 E-model: reference points and monotonicity."""

from __future__ import annotations

import itertools

import pytest

from media.quality import estimate_mos, estimate_r, mos_from_r, one_way_delay_ms


@pytest.mark.parametrize(
    ("r", "mos"),
    [(93.2, 4.41), (90.0, 4.34), (80.0, 4.03), (70.0, 3.60), (60.0, 3.10), (50.0, 2.58)],
)
def test_mos_from_r_reference_points(r: float, mos: float) -> None:
    # G.107 Annex B values (e.g. R = 70 -> 3.6, R = 50 -> 2.6 as tabulated in G.109).
    assert mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_mos_is_clamped() -> None:
    assert mos_from_r(-10) == 1.0 and mos_from_r(3.0) == 1.0
    assert mos_from_r(100) == 4.5 and mos_from_r(150) == 4.5


def test_clean_g711_call_is_about_4_4() -> None:
    mos = estimate_mos("PCMU", 0.0, 0.0, 0.0)
    assert 4.35 <= mos <= 4.41
    assert estimate_mos("pcma", 0.0, 0.0, 0.0) == mos
    # d = 10 ms buffer + 20 ms packetisation + 0.125 ms codec: Id = 0.024 d.
    assert estimate_r("PCMU", 0.0, 0.0, 0.0) == pytest.approx(93.2 - 0.024 * 30.125)


def test_loss_uses_g113_bpl() -> None:
    # Ie,eff = 95 * Ppl / (Ppl + Bpl): 5 % loss with PLC (Bpl 25.1) and without (Bpl 4.3).
    base = estimate_r("PCMU", 0.0, 0.0, 0.0)
    with_plc = estimate_r("PCMU", 0.05, 0.0, 0.0)
    without = estimate_r("PCMU", 0.05, 0.0, 0.0, plc=False)
    assert base - with_plc == pytest.approx(95 * 5 / (5 + 25.1))
    assert base - without == pytest.approx(95 * 5 / (5 + 4.3))
    assert estimate_mos("PCMU", 0.05, 0.0, 0.0) < 4.0  # noticeably lower
    assert estimate_mos("PCMU", 0.05, 0.0, 0.0, plc=False) < 2.5


def test_delay_knee_at_177_ms() -> None:
    assert one_way_delay_ms("PCMU", 10.0, 200.0) == pytest.approx(100 + 30 + 20 + 0.125)
    r_low = estimate_r("PCMU", 0.0, 0.0, 2 * (177.3 - 30.125))  # d = 177.3 exactly
    assert r_low == pytest.approx(93.2 - 0.024 * 177.3)
    r_high = estimate_r("PCMU", 0.0, 0.0, 2 * (277.3 - 30.125))
    assert r_high == pytest.approx(93.2 - 0.024 * 277.3 - 0.11 * 100)


def test_monotonic_in_loss_jitter_and_rtt() -> None:
    losses = [i / 100 for i in range(0, 31)]
    mos_by_loss = [estimate_mos("PCMU", loss, 5.0, 50.0) for loss in losses]
    assert all(a > b for a, b in itertools.pairwise(mos_by_loss))
    rtts = [float(x) for x in range(0, 1000, 50)]
    mos_by_rtt = [estimate_mos("PCMA", 0.01, 5.0, rtt) for rtt in rtts]
    assert all(a > b for a, b in itertools.pairwise(mos_by_rtt))
    jitters = [float(x) for x in range(0, 200, 10)]
    mos_by_jitter = [estimate_mos("G722", 0.01, j, 50.0) for j in jitters]
    assert all(a > b for a, b in itertools.pairwise(mos_by_jitter))


def test_extremes_stay_in_range_and_unknown_codec_rejected() -> None:
    assert estimate_mos("PCMU", 1.0, 500.0, 5000.0) == 1.0
    assert estimate_mos("PCMU", -0.5, -3.0, -10.0) == estimate_mos("PCMU", 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no E-model values for codec 'GSM'"):
        estimate_mos("GSM", 0.0, 0.0, 0.0)
