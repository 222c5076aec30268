"""Message-waiting indication: the ``message-summary`` event package, sans-IO.

Theory of operation
-------------------
A phone learns whether its mailbox holds new messages (the lamp, the envelope icon) from
NOTIFY requests carrying an ``application/simple-message-summary`` body (RFC 3842 §5)::

    Messages-Waiting: yes
    Message-Account: sip:1001@pbx.example.com
    Voice-Message: 2/8 (0/0)

(new/old messages, then the urgent ones among them; Switchboard has no urgent messages).

Two ways to get them:

- **Subscriptions** (RFC 6665, which obsoletes RFC 3265): the phone sends SUBSCRIBE with
  ``Event: message-summary`` for its own mailbox. The notifier answers 200 with the granted
  ``Expires`` (§4.2.1.1: never longer than asked), sends a NOTIFY at once with
  ``Subscription-State: active;expires=N`` (§4.2.1.2), and another whenever the counts
  change (RFC 3842 §3.5). A refresh is a SUBSCRIBE in the dialog; ``Expires: 0`` ends the
  subscription with a final NOTIFY ``terminated`` (§4.2.1.4); one not refreshed in time
  ends with ``terminated;reason=timeout`` (§4.2.2). A NOTIFY answered 481, or not answered
  at all, ends it silently (§4.1.3). An unknown event package gets 489 Bad Event with
  ``Allow-Events`` (§4.2.1.1, §8.2.2); a too short interval 423 with ``Min-Expires``.
- **Unsolicited NOTIFY**: many phones (and Asterisk's ``unsolicited_mwi``) take a NOTIFY
  outside any dialog; the server sends it to the registered contacts of extensions
  configured for it. Not in any RFC, but what deployed phones understand.

This module holds what needs no socket: the body (:class:`MessageSummary`), the decision on
a SUBSCRIBE (:func:`decide_subscribe`), and the table of subscriptions with their state
machine (:class:`Subscriptions`, :data:`TRANSITIONS`) driven by ``now``. The SIP server
(:mod:`pbx.server`) owns the dialogs, sends the requests and runs the expiry timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CONTENT_TYPE",
    "EVENT_PACKAGE",
    "MAX_EXPIRES",
    "MIN_EXPIRES",
    "TRANSITIONS",
    "MessageSummary",
    "SubscribeDecision",
    "Subscription",
    "SubscriptionEvent",
    "SubscriptionState",
    "Subscriptions",
    "decide_subscribe",
    "parse_summary",
]

EVENT_PACKAGE = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
DEFAULT_EXPIRES = 3600  # RFC 3842 §4.1: "The default subscription duration ... 3600 seconds"
MIN_EXPIRES = 60
MAX_EXPIRES = 7200


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """The state of one mailbox as a phone sees it (RFC 3842 §5.2)."""

    account: str  # the mailbox's SIP URI (Message-Account)
    new: int
    old: int

    @property
    def waiting(self) -> bool:
        """``Messages-Waiting: yes`` means new messages (RFC 3842 §5.2: "new" ones)."""
        return self.new > 0

    def body(self) -> bytes:
        """The ``application/simple-message-summary`` body (RFC 3842 §5.2 ABNF)."""
        return (
            f"Messages-Waiting: {'yes' if self.waiting else 'no'}\r\n"
            f"Message-Account: {self.account}\r\n"
            f"Voice-Message: {self.new}/{self.old} (0/0)\r\n"
        ).encode()


def parse_summary(body: bytes) -> MessageSummary:
    """Read a message-summary body (ours or a phone's view of it). Raises ``ValueError``
    when ``Messages-Waiting`` is missing or a count is not a number."""
    fields: dict[str, str] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    waiting = fields.get("messages-waiting")
    if waiting not in ("yes", "no"):
        raise ValueError("message-summary without Messages-Waiting: yes|no")
    new = old = 0
    voice = fields.get("voice-message")
    if voice is not None:
        counts = voice.split("(", 1)[0].strip()
        new_text, sep, old_text = counts.partition("/")
        if not (sep and new_text.strip().isdigit() and old_text.strip().isdigit()):
            raise ValueError(f"Voice-Message is not new/old: {voice!r}")
        new, old = int(new_text), int(old_text)
    elif waiting == "yes":
        new = 1
    return MessageSummary(fields.get("message-account", ""), new, old)


@dataclass(frozen=True, slots=True)
class SubscribeDecision:
    """What to answer a SUBSCRIBE: ``status`` and, for 200, the granted ``expires``."""

    status: int
    expires: int = 0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def decide_subscribe(
    event: str | None,
    expires: str | None,
    *,
    min_expires: int = MIN_EXPIRES,
    max_expires: int = MAX_EXPIRES,
) -> SubscribeDecision:
    """The answer to a SUBSCRIBE's ``Event`` and ``Expires`` headers (values as received)."""
    package = (event or "").split(";", 1)[0].strip().lower()
    if package != EVENT_PACKAGE:
        # RFC 6665 §4.2.1.1 / §8.2.2: 489 and the packages we do support.
        return SubscribeDecision(
            489, reason="Bad Event", headers=(("Allow-Events", EVENT_PACKAGE),)
        )
    if expires is None or not expires.strip():
        asked = DEFAULT_EXPIRES
    elif expires.strip().isdigit():
        asked = int(expires.strip())
    else:
        return SubscribeDecision(400, reason="Bad Expires")
    if asked == 0:
        return SubscribeDecision(200, 0)  # an unsubscribe (or a one-time fetch)
    if asked < min_expires:
        # RFC 6665 §4.2.1.1: "423 (Interval Too Brief)" with Min-Expires.
        return SubscribeDecision(423, reason=None, headers=(("Min-Expires", str(min_expires)),))
    return SubscribeDecision(200, min(asked, max_expires))


class SubscriptionState(Enum):
    ACTIVE = "active"
    TERMINATED = "terminated"


class SubscriptionEvent(Enum):
    REFRESHED = "refreshed"  # SUBSCRIBE in the dialog with Expires > 0
    UNSUBSCRIBED = "unsubscribed"  # Expires: 0
    EXPIRED = "expired"  # not refreshed in time
    NOTIFY_FAILED = "notify_failed"  # 481 or no answer to a NOTIFY


# (state, event) -> state; anything else is illegal (RFC 6665 §4.1.2, §4.2.2).
TRANSITIONS: dict[tuple[SubscriptionState, SubscriptionEvent], SubscriptionState] = {
    (SubscriptionState.ACTIVE, SubscriptionEvent.REFRESHED): SubscriptionState.ACTIVE,
    (SubscriptionState.ACTIVE, SubscriptionEvent.UNSUBSCRIBED): SubscriptionState.TERMINATED,
    (SubscriptionState.ACTIVE, SubscriptionEvent.EXPIRED): SubscriptionState.TERMINATED,
    (SubscriptionState.ACTIVE, SubscriptionEvent.NOTIFY_FAILED): SubscriptionState.TERMINATED,
}

# The reason a final NOTIFY gives (RFC 6665 §4.2.2); None: no final NOTIFY is sent.
_FINAL_REASON: dict[SubscriptionEvent, str | None] = {
    SubscriptionEvent.UNSUBSCRIBED: "",
    SubscriptionEvent.EXPIRED: "timeout",
    SubscriptionEvent.NOTIFY_FAILED: None,
}


@dataclass(slots=True)
class Subscription:
    """One phone's subscription to one mailbox; ``key`` is its dialog id."""

    key: tuple[str, str, str]
    mailbox: str
    expires_at: float
    state: SubscriptionState = SubscriptionState.ACTIVE
    reason: str | None = None  # why it terminated (for the final NOTIFY), once terminated

    def move(self, event: SubscriptionEvent) -> None:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise ValueError(f"illegal subscription transition {self.state.name} on {event.name}")
        self.state = new
        if new is SubscriptionState.TERMINATED:
            self.reason = _FINAL_REASON[event]

    def state_header(self, now: float) -> str:
        """The ``Subscription-State`` value for a NOTIFY sent at ``now`` (RFC 6665 §8.2.3)."""
        if self.state is SubscriptionState.ACTIVE:
            return f"active;expires={max(0, round(self.expires_at - now))}"
        return f"terminated;reason={self.reason}" if self.reason else "terminated"

    @property
    def final_notify(self) -> bool:
        """Whether the phone is told with a last NOTIFY that the subscription ended."""
        return self.state is SubscriptionState.TERMINATED and self.reason is not None


class Subscriptions:
    """Every active message-summary subscription and each mailbox's counts."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], Subscription] = {}
        self._counts: dict[str, tuple[int, int]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: tuple[str, str, str]) -> Subscription | None:
        return self._by_key.get(key)

    def add(
        self, key: tuple[str, str, str], mailbox: str, expires: int, now: float
    ) -> Subscription:
        sub = Subscription(key, mailbox, now + expires)
        self._by_key[key] = sub
        return sub

    def refresh(self, key: tuple[str, str, str], expires: int, now: float) -> Subscription | None:
        """A SUBSCRIBE in the dialog: a refresh, or (``expires`` 0) the end. None: unknown."""
        sub = self._by_key.get(key)
        if sub is None:
            return None
        if expires == 0:
            self.end(key, SubscriptionEvent.UNSUBSCRIBED)
        else:
            sub.move(SubscriptionEvent.REFRESHED)
            sub.expires_at = now + expires
        return sub

    def end(self, key: tuple[str, str, str], event: SubscriptionEvent) -> Subscription | None:
        sub = self._by_key.pop(key, None)
        if sub is not None:
            sub.move(event)
        return sub

    def expire(self, now: float) -> list[Subscription]:
        """Subscriptions not refreshed by ``now``: terminated, to be told so."""
        gone = [k for k, s in self._by_key.items() if s.expires_at <= now]
        return [s for k in gone if (s := self.end(k, SubscriptionEvent.EXPIRED)) is not None]

    def next_deadline(self) -> float | None:
        return min((s.expires_at for s in self._by_key.values()), default=None)

    def of_mailbox(self, mailbox: str) -> list[Subscription]:
        return [s for s in self._by_key.values() if s.mailbox == mailbox]

    def counts(self, mailbox: str) -> tuple[int, int]:
        """(new, old) as last reported; (0, 0) for a mailbox nobody reported."""
        return self._counts.get(mailbox, (0, 0))

    def set_counts(self, mailbox: str, new: int, old: int) -> bool:
        """Record a mailbox's counts; True when they changed (phones must be told)."""
        before = self.counts(mailbox)
        self._counts[mailbox] = (new, old)
        return before != (new, old)
