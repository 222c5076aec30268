"""Calls leaving through trunks: where to send them, as whom, and when to try the next one.

Theory of operation
-------------------
An outbound rule names its trunks in order. The call goes to the first (``sip:<number>@
<host>:<port>``); a carrier that challenges the INVITE (401/407) gets the trunk's digest
credentials (RFC 3261 §22.2, answered by :class:`pbx.outbound.Outbound`). When the attempt
fails *because of the trunk* — no answer to the request at all (timeout: nothing within the
trunk's ``invite_timeout``, or Timer B), 408, or any 5xx (503 included) — the next trunk is
tried with the same caller; a failure that is the
callee's answer (486 busy, 404, 484, 603, a ring timeout) ends the call, because another
carrier would reach the same person. A trunk at its ``max_channels`` is skipped.

The caller ID is the trunk's to give: a trunk with ``dids`` only sends one of them — the
first the trunk owns of the calling extension's ``caller_id``, the rule's ``caller_id`` and
the extension's own number, else the trunk's ``caller_id``, else its first DID; a trunk
without ``dids`` sends the extension's or the rule's ``caller_id``, else its own
``caller_id``, else the extension's number (nothing at all: anonymous, see
:mod:`pbx.trunk_dial`). It goes in From (or the carrier's
required ``from_user``) and in P-Asserted-Identity (RFC 3325 §9.1), which a carrier trusts
from its customer's trunk. A withheld caller ID (the extension's ``hide_caller_id`` or the
rule's ``privacy``) still asserts the identity to the carrier, but From is anonymous and
``Privacy: id`` asks the carrier not to pass it on (RFC 3323 §4.1.1.3, RFC 3325 §9.3).

Every number Switchboard dials outside — an extension's call, a forward to a mobile, a
queue callback or overflow, an IVR transfer — is resolved the same way (an
:class:`OutsideRoute`: the outbound rule's trunks, after the policy check) and dialled by
:class:`pbx.trunk_dial.TrunkDial`.

Toll-fraud guards come first, before any trunk is used (:class:`OutboundPolicy`): the number
(after the rule's strip/prepend) gets a class by the configured patterns — ``emergency``,
``premium``, ``international``, ``national``, else ``local`` — and the calling extension's
class of service must reach it (internal < local < national < international < premium).
Emergency numbers are always allowed, never counted against a limit and never wait for a
PIN. Per-extension caps on outbound calls per minute and at once stop a hijacked phone from
dialling out in bulk. Each refusal is one log line and a call record with its cause.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .patterns import DialPattern, compile_pattern

__all__ = [
    "CLASS_ORDER",
    "FAILOVER_STATUSES",
    "ExtensionLimits",
    "NumberClasses",
    "OutboundPolicy",
    "OutboundTrunk",
    "OutsideRoute",
    "should_fail_over",
]

# Classes of service, each allowing the number classes up to itself.
CLASS_ORDER = ("internal", "local", "national", "international", "premium")

# Final statuses after which the next trunk is tried (plus a transaction timeout, 408).
FAILOVER_STATUSES = frozenset({408}) | frozenset(range(500, 600))


def should_fail_over(status: int, ring_timeout: bool) -> bool:
    """True when ``status`` says the trunk, not the callee, failed (see the module doc)."""
    return not ring_timeout and status in FAILOVER_STATUSES


@dataclass(frozen=True, slots=True)
class OutboundTrunk:
    """What placing a call through one trunk needs (built from the config by ``app``)."""

    name: str
    host: str
    port: int = 5060
    address: str = ""  # ``host`` resolved (the app resolves names at start); "" = host
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    dids: tuple[str, ...] = ()
    caller_id: str | None = None
    from_user: str | None = None
    max_channels: int = 0
    # Seconds to wait for any response to an INVITE (even 100 Trying) before the attempt
    # counts as a timeout (408) and the next trunk is tried; 0: Timer B (32 s) only.
    invite_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", self.host)

    def uri(self, number: str) -> str:
        suffix = "" if self.transport.upper() == "UDP" else f";transport={self.transport.lower()}"
        return f"sip:{number}@{self.host}:{self.port}{suffix}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password

    def caller_id_for(self, caller: str, wanted: Iterable[str | None] = ()) -> str:
        """The number this trunk may present for ``caller`` (an extension or a number):
        the first of ``wanted`` (the extension's and the rule's caller IDs) and ``caller``
        the trunk owns, else its own ``caller_id`` or first DID (see the module doc)."""
        candidates = [w for w in wanted if w] + [caller]
        if not self.dids:
            first = next((w for w in wanted if w), None)
            return first or self.caller_id or caller
        for number in candidates:
            if number in self.dids:
                return number
        return self.caller_id or self.dids[0]


@dataclass(frozen=True, slots=True)
class OutsideRoute:
    """Where a number dialled outside goes: ``number`` as the carrier gets it (after the
    rule's strip/prepend), the ``trunks`` to try in order, whose identity is presented
    (``on_behalf_of``: the extension, or "" for Switchboard itself) and how."""

    number: str
    trunks: tuple[OutboundTrunk, ...]
    on_behalf_of: str = ""
    number_class: str = "local"
    # The caller IDs wanted, best first (the extension's, then the rule's): each trunk
    # presents the first it owns (OutboundTrunk.caller_id_for).
    wanted_caller_ids: tuple[str, ...] = ()
    private: bool = False  # withhold the caller ID from the callee (Privacy: id)


class NumberClasses:
    """The class of a number, by ordered pattern lists (``pbx.patterns`` syntax): emergency
    first, then premium, international, national; anything else is local."""

    ORDER = ("emergency", "premium", "international", "national")

    def __init__(self, patterns: Mapping[str, Iterable[str]]) -> None:
        self._tables: list[tuple[str, list[DialPattern]]] = [
            (name, [compile_pattern(p) for p in patterns.get(name, ())]) for name in self.ORDER
        ]

    def classify(self, number: str) -> str:
        for name, table in self._tables:
            if any(p.matches(number) for p in table):
                return name
        return "local"


@dataclass(frozen=True, slots=True)
class ExtensionLimits:
    """One extension's outbound rights: its class of service and its caps (0: no cap)."""

    class_of_service: str = "national"
    per_minute: int = 0
    concurrent: int = 0
    caller_id: str | None = None  # the outside number it presents, if the trunk owns it
    hide_caller_id: bool = False  # From anonymous and Privacy: id on its outside calls


@dataclass(slots=True)
class OutboundPolicy:
    """Decides whether an extension may call a number out, before any trunk is used.

    ``system`` are the rights of calls Switchboard places for itself (an IVR transfer or a
    queue overflow to a number: ``ext`` ""). While an agent with their own class of service
    is logged in at an extension, that class applies to the extension's calls instead
    (:meth:`set_class_of_service`, told by the ACD through the call-control seam).
    """

    classes: NumberClasses
    limits: Mapping[str, ExtensionLimits]
    system: ExtensionLimits = field(default_factory=ExtensionLimits)
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _overrides: dict[str, str] = field(default_factory=dict)

    def reconfigured(
        self,
        classes: NumberClasses,
        limits: Mapping[str, ExtensionLimits],
        system: ExtensionLimits | None = None,
    ) -> OutboundPolicy:
        """The same policy with new settings (a reload), keeping the per-minute history and
        the classes of the agents logged in."""
        return OutboundPolicy(classes, limits, system or self.system, self._recent, self._overrides)

    def set_class_of_service(self, ext: str, class_of_service: str | None) -> None:
        """``ext`` calls with ``class_of_service`` from now on (None: its own again)."""
        if class_of_service is None:
            self._overrides.pop(ext, None)
        elif class_of_service in CLASS_ORDER:
            self._overrides[ext] = class_of_service
        else:
            raise ValueError(f"unknown class of service {class_of_service!r}")

    def limits_of(self, ext: str) -> ExtensionLimits:
        """The rights and identity of ``ext`` ("" = Switchboard itself)."""
        return self.system if not ext else self.limits.get(ext, ExtensionLimits())

    def class_of_service(self, ext: str) -> str:
        return self._overrides.get(ext) or self.limits_of(ext).class_of_service

    def check(
        self,
        ext: str,
        number: str,
        active_calls: int | Callable[[], int],
        now: float,
        *,
        count: bool = True,
    ) -> tuple[str, str | None]:
        """(number class, None) when allowed, else (number class, refusal cause). An allowed
        non-emergency call is counted against the extension's per-minute cap (unless
        ``count`` is False: a forward target being checked, not dialled); ``now`` is any
        monotonic clock in seconds (the caller's: this core reads none)."""
        kind = self.classes.classify(number)
        if kind == "emergency":
            return kind, None
        lim = self.limits_of(ext)
        cos = self.class_of_service(ext)
        if CLASS_ORDER.index(cos) < CLASS_ORDER.index(kind):
            return kind, "class_of_service"
        # ``active_calls`` may be a function: counting live calls is only worth it (once
        # per call, over every live call) for an extension that has a cap.
        if (
            lim.concurrent
            and (active_calls() if callable(active_calls) else active_calls) >= lim.concurrent
        ):
            return kind, "outbound_concurrent_limit"
        if lim.per_minute:
            recent = self._recent.setdefault(ext, deque())
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= lim.per_minute:
                return kind, "outbound_rate_limit"
            if count:
                recent.append(now)
        return kind, None
