"""Message-waiting indication (RFC 3842 message-summary over RFC 6665), sans-IO."""

from __future__ import annotations

import pytest

from pbx.mwi import (
    TRANSITIONS,
    MessageSummary,
    SubscriptionEvent,
    Subscriptions,
    SubscriptionState,
    decide_subscribe,
    parse_summary,
)

KEY = ("cid", "ourtag", "theirtag")


def test_body_as_in_rfc_3842_section_5_2() -> None:
    body = MessageSummary("sip:1001@pbx", 2, 8).body()
    assert body == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:1001@pbx\r\nVoice-Message: 2/8 (0/0)\r\n"
    )
    assert MessageSummary("sip:1001@pbx", 0, 3).body().startswith(b"Messages-Waiting: no\r\n")
    assert parse_summary(body) == MessageSummary("sip:1001@pbx", 2, 8)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Messages-Waiting: no\r\n", (0, 0)),
        (b"Messages-Waiting: yes\r\n", (1, 0)),  # no counts: at least one new
        (b"messages-waiting: yes\nvoice-message: 3/0\n", (3, 0)),  # no urgent part
        (b"Messages-Waiting: yes\r\nVoice-Message: 1/2 (1/0)\r\n", (1, 2)),
    ],
)
def test_parse_summary(body: bytes, expected: tuple[int, int]) -> None:
    summary = parse_summary(body)
    assert (summary.new, summary.old) == expected


@pytest.mark.parametrize(
    "body",
    [b"", b"Messages-Waiting: maybe\r\n", b"Messages-Waiting: yes\r\nVoice-Message: x/1\r\n"],
)
def test_parse_summary_rejects(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_summary(body)


@pytest.mark.parametrize(
    ("event", "expires", "status", "granted"),
    [
        ("message-summary", "3600", 200, 3600),
        ("Message-Summary;id=1", None, 200, 3600),  # RFC 3842 §4.1 default 3600
        ("message-summary", "100000", 200, 7200),  # never longer than our maximum
        ("message-summary", "0", 200, 0),  # unsubscribe
        ("message-summary", "10", 423, 0),  # too brief
        ("message-summary", "soon", 400, 0),
        ("presence", "3600", 489, 0),  # RFC 6665 §4.2.1.1
        (None, "3600", 489, 0),
    ],
)
def test_decide_subscribe(
    event: str | None, expires: str | None, status: int, granted: int
) -> None:
    decision = decide_subscribe(event, expires)
    assert (decision.status, decision.expires) == (status, granted)
    if status == 489:
        assert ("Allow-Events", "message-summary") in decision.headers
    if status == 423:
        assert ("Min-Expires", "60") in decision.headers


def test_subscription_lifecycle_and_state_headers() -> None:
    subs = Subscriptions()
    sub = subs.add(KEY, "1001", 600, now=100.0)
    assert sub.state_header(160.0) == "active;expires=540"
    assert subs.next_deadline() == 700.0 and subs.of_mailbox("1001") == [sub]
    assert subs.refresh(KEY, 300, now=200.0) is sub
    assert sub.expires_at == 500.0
    assert subs.expire(499.0) == []
    [gone] = subs.expire(500.0)
    assert gone.state is SubscriptionState.TERMINATED and gone.final_notify
    assert gone.state_header(500.0) == "terminated;reason=timeout"
    assert KEY not in subs and subs.next_deadline() is None


def test_unsubscribe_and_failed_notify() -> None:
    subs = Subscriptions()
    subs.add(KEY, "1001", 600, now=0.0)
    sub = subs.refresh(KEY, 0, now=1.0)
    assert sub is not None and sub.state_header(1.0) == "terminated" and sub.final_notify
    assert subs.refresh(KEY, 600, now=2.0) is None  # unknown now: the server answers 481
    subs.add(KEY, "1001", 600, now=0.0)
    failed = subs.end(KEY, SubscriptionEvent.NOTIFY_FAILED)
    assert failed is not None and not failed.final_notify  # nobody listens any more


def test_terminated_is_final() -> None:
    assert all(state is SubscriptionState.ACTIVE for state, _ in TRANSITIONS)
    subs = Subscriptions()
    sub = subs.add(KEY, "1001", 600, now=0.0)
    sub.move(SubscriptionEvent.EXPIRED)
    with pytest.raises(ValueError, match="illegal"):
        sub.move(SubscriptionEvent.REFRESHED)


def test_counts_report_changes_only() -> None:
    subs = Subscriptions()
    assert subs.counts("1001") == (0, 0)
    assert subs.set_counts("1001", 1, 0)
    assert not subs.set_counts("1001", 1, 0)
    assert subs.set_counts("1001", 0, 1) and subs.counts("1001") == (0, 1)
    assert not subs.set_counts("1002", 0, 0)  # nothing is the same as never reported
