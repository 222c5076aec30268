"""Tests for pbx.throttle.FailureThrottle on a fake clock."""

from __future__ import annotations

import pytest

from pbx.throttle import FailureThrottle

IP = "192.0.2.10"


def test_blocks_after_max_failures_within_window() -> None:
    t = FailureThrottle(max_failures=5, window=60.0, block_seconds=300.0)
    now = 1000.0
    for i in range(4):
        assert t.record_failure(IP, now + i) is False
        assert not t.is_blocked(IP, now + i)
    assert t.record_failure(IP, now + 4) is True
    assert t.is_blocked(IP, now + 4)
    assert t.blocked_until(IP, now + 5) == now + 4 + 300.0
    assert t.is_blocked(IP, now + 303.9)
    assert not t.is_blocked(IP, now + 304)
    assert t.blocked_until(IP, now + 304) is None
    assert not t.is_blocked("192.0.2.11", now + 4)  # other sources unaffected


def test_failures_outside_window_do_not_add_up() -> None:
    t = FailureThrottle(max_failures=3, window=10.0)
    now = 0.0
    for _ in range(10):
        assert t.record_failure(IP, now) is False
        now += 5.0  # at most two failures in any 10 s window
    assert not t.is_blocked(IP, now)
    assert t.record_failure(IP, now - 4.0) is True  # a third one inside the window


def test_failures_while_blocked_keep_it_blocked_without_extending() -> None:
    t = FailureThrottle(max_failures=2, window=60.0, block_seconds=100.0)
    t.record_failure(IP, 0.0)
    assert t.record_failure(IP, 1.0) is True
    assert t.record_failure(IP, 50.0) is True
    assert t.blocked_until(IP, 50.0) == 101.0
    assert not t.is_blocked(IP, 101.0)
    assert t.record_failure(IP, 102.0) is False  # history was cleared by the block


def test_success_resets_history_but_not_an_active_block() -> None:
    t = FailureThrottle(max_failures=3, window=60.0, block_seconds=100.0)
    t.record_failure(IP, 0.0)
    t.record_failure(IP, 1.0)
    t.record_success(IP, 2.0)
    assert t.record_failure(IP, 3.0) is False
    assert t.record_failure(IP, 4.0) is False
    assert t.record_failure(IP, 5.0) is True
    t.record_success(IP, 6.0)
    assert t.is_blocked(IP, 6.0)


def test_same_attempt_counts_once_within_the_window() -> None:
    # One wrong credential resent (retransmission, cached header) is one guess.
    t = FailureThrottle(max_failures=3, window=60.0)
    for i in range(10):
        assert t.record_failure(IP, float(i), attempt="typo") is False
    assert t.record_failure(IP, 10.0, attempt="other") is False
    assert t.record_failure(IP, 11.0, attempt="third") is True
    # Attempts are per source, and None always counts.
    t = FailureThrottle(max_failures=2, window=60.0)
    assert t.record_failure(IP, 0.0, attempt="typo") is False
    assert t.record_failure("192.0.2.11", 0.0, attempt="typo") is False
    assert t.record_failure(IP, 1.0) is True


def test_same_attempt_counts_again_after_the_window() -> None:
    t = FailureThrottle(max_failures=2, window=10.0)
    assert t.record_failure(IP, 0.0, attempt="typo") is False
    assert t.record_failure(IP, 5.0, attempt="typo") is False  # still the first one
    assert t.record_failure(IP, 10.0, attempt="typo") is False  # first left the window
    assert t.record_failure(IP, 12.0, attempt="other") is True


def test_failure_histories_are_bounded() -> None:
    t = FailureThrottle(max_failures=3, max_entries=4)
    for i in range(1000):
        t.record_failure(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(t) <= 4
    # LRU: the most recent sources are the ones remembered.
    assert t.record_failure("10.0.3.231", 1.0) is False
    assert t.record_failure("10.0.3.231", 1.0) is True


def test_flood_of_new_sources_does_not_evict_blocks() -> None:
    t = FailureThrottle(max_failures=2, block_seconds=300.0, max_entries=3)
    t.record_failure(IP, 0.0)
    t.record_failure(IP, 0.0)
    for i in range(10_000):
        t.record_failure(f"2001:db8::{i:x}", 1.0)
    assert t.is_blocked(IP, 2.0)
    assert len(t) <= 2 * 3


def test_blocks_are_bounded_oldest_first() -> None:
    t = FailureThrottle(max_failures=1, block_seconds=300.0, max_entries=3)
    for i in range(5):
        assert t.record_failure(f"s{i}", float(i)) is True
    assert [t.is_blocked(f"s{i}", 10.0) for i in range(5)] == [False, False, True, True, True]
    assert len(t) == 3


def test_expired_blocks_are_dropped() -> None:
    t = FailureThrottle(max_failures=1, block_seconds=10.0)
    for i in range(5):
        t.record_failure(f"s{i}", 0.0)
    assert len(t) == 5
    assert not t.is_blocked("other", 10.0)
    assert len(t) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_failures": 0}, {"window": 0.0}, {"block_seconds": -1.0}, {"max_entries": 0}],
)
def test_invalid_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)  # type: ignore[arg-type]
