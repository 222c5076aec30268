"""The dialplan: where an inbound or internal call goes, sans-IO.

Theory of operation
-------------------
A :class:`Dialplan` is built once from a validated config (``app.settings.build_dialplan``)
and then only answers questions; a reload builds a new one and swaps it atomically. Nothing
here reads the clock: ``now`` (an aware ``datetime``) is passed in for time conditions.

Inbound calls (from trunks), :meth:`Dialplan.route_inbound`, in this order:

1. **Blacklist**, before anything else: an exact caller number, else the longest matching
   caller prefix, gives a ``hangup`` (reject with a SIP status, 603 Decline by default,
   RFC 3261 §21.6.2) or a ``play_hangup`` (answer, announce, hang up).
2. **Inbound routes** on the called number (DID) and/or a caller-number prefix. All conditions
   a route gives must hold. The most specific route wins: routes with a DID before routes on
   the caller alone; among DID routes exact numbers first, then ``_`` patterns by
   specificity, then regexes (see :mod:`pbx.patterns`); then the longer caller prefix; then
   the order written.
3. **Region table**: the longest caller prefix names a queue.
4. The **default** destination (reject with 404 unless configured).

Internal calls (dialled by an extension), :meth:`Dialplan.route_internal`: one
:class:`~pbx.patterns.PatternTable` holding the configured internal and outbound rules plus an
implicit exact rule for every extension and conference number (an explicit rule with the same
number overrides it). The most specific match wins; its strip/prepend rewrites the number.
No match gives the internal default (404).

A destination of kind ``time_condition`` is then resolved to the condition's open or closed
destination (followed through nested conditions, with a depth limit against cycles that
config validation already refuses). The answer is a :class:`RouteDecision`: the final
destination, the number to deliver, and the trail of rules applied, for logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from .patterns import DialPattern, PatternTable, compile_pattern, rewrite
from .timecond import TimeCondition

__all__ = [
    "MAX_CONDITION_DEPTH",
    "Blacklist",
    "BlacklistEntry",
    "Destination",
    "DestinationKind",
    "DialRule",
    "Dialplan",
    "InboundRoute",
    "RegionTable",
    "RouteDecision",
    "TimeConditionRoute",
]

# Nested time conditions deeper than this are treated as a loop (config validation refuses
# cycles; this is the belt to those braces).
MAX_CONDITION_DEPTH = 8
DEFAULT_REJECT_STATUS = 603  # RFC 3261 §21.6.2 Decline: the callee does not wish to talk
NOT_FOUND_STATUS = 404


class DestinationKind(StrEnum):
    EXTENSION = "extension"
    IVR = "ivr"
    QUEUE = "queue"
    VOICEMAIL = "voicemail"
    CONFERENCE = "conference"
    HANGUP = "hangup"
    PLAY_HANGUP = "play_hangup"
    TIME_CONDITION = "time_condition"
    OUTBOUND = "outbound"
    NUMBER = "number"  # an outside number, dialled through the outbound rules


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a call goes.

    ``target`` is the extension, IVR flow, queue, voicemail box (an extension), conference
    number, time-condition name or (``outbound``) trunk name; empty means "the dialled number
    after strip/prepend" for extension/voicemail/conference and "any trunk" for outbound.
    ``number``: an outside number (a mobile), dialled as a phone would through the outbound
    rules, with the system class of service (an after-hours forward configured by the admin).
    ``status`` is the SIP final response for ``hangup``; ``prompt`` is what ``play_hangup``
    plays (and an optional greeting elsewhere); ``priority`` and ``skills`` are for queues.
    """

    kind: DestinationKind
    target: str = ""
    prompt: str | None = None
    status: int | None = None
    priority: int | None = None
    skills: tuple[str, ...] = ()
    # ``outbound``: the trunks to try in order (``target`` alone is the one-trunk shorthand),
    # the caller ID the rule presents (if the trunk owns it) and whether it withholds it.
    trunks: tuple[str, ...] = ()
    caller_id: str | None = None
    privacy: bool = False


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answer of the dialplan: never of kind ``time_condition``.

    ``number`` is the number to deliver (the dialled number after strip/prepend for internal
    rules; the DID for inbound calls). ``trail`` names each rule applied, in order, for logs.
    """

    destination: Destination
    number: str
    trail: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    """A caller ``number`` (exact) or ``prefix`` refused with ``destination``."""

    destination: Destination
    number: str | None = None
    prefix: str | None = None


class Blacklist:
    """Exact numbers first, then the longest prefix."""

    __slots__ = ("_lengths", "_numbers", "_prefixes")

    def __init__(self, entries: Iterable[BlacklistEntry] = ()) -> None:
        self._numbers: dict[str, Destination] = {}
        self._prefixes: dict[str, Destination] = {}
        for e in entries:
            if (e.number is None) == (e.prefix is None):
                raise ValueError("a blacklist entry has exactly one of number and prefix")
            table, key = (
                (self._numbers, e.number) if e.number is not None else (self._prefixes, e.prefix)
            )
            assert key is not None
            if key in table:
                raise ValueError(f"duplicate blacklist entry {key!r}")
            table[key] = e.destination
        self._lengths = sorted({len(p) for p in self._prefixes}, reverse=True)

    def match(self, caller: str) -> tuple[str, Destination] | None:
        """(rule description, destination) for a blacklisted caller, else None."""
        dest = self._numbers.get(caller)
        if dest is not None:
            return f"blacklist number={caller}", dest
        for n in self._lengths:
            dest = self._prefixes.get(caller[:n]) if n <= len(caller) else None
            if dest is not None:
                return f"blacklist prefix={caller[:n]}", dest
        return None


class RegionTable:
    """Caller prefix → queue name; the longest prefix wins."""

    __slots__ = ("_lengths", "_queues")

    def __init__(self, queues: Mapping[str, str] | None = None) -> None:
        self._queues = dict(queues or {})
        if "" in self._queues:
            raise ValueError("a region prefix must not be empty (use the default destination)")
        self._lengths = sorted({len(p) for p in self._queues}, reverse=True)

    def match(self, caller: str) -> tuple[str, str] | None:
        """(prefix, queue) for the longest prefix of ``caller`` in the table, else None."""
        for n in self._lengths:
            if n <= len(caller):
                queue = self._queues.get(caller[:n])
                if queue is not None:
                    return caller[:n], queue
        return None


@dataclass(frozen=True, slots=True)
class InboundRoute:
    """Calls to ``did`` (a dial pattern) and/or from callers starting with ``caller_prefix``."""

    destination: Destination
    did: str | None = None
    caller_prefix: str | None = None
    name: str = ""
    _did: DialPattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.did is None and not self.caller_prefix:
            raise ValueError("an inbound route needs a did, a caller prefix, or both")
        if self.did is not None:
            object.__setattr__(self, "_did", compile_pattern(self.did))

    def matches(self, did: str, caller: str) -> bool:
        if self._did is not None and self._did.regex.fullmatch(did) is None:
            return False
        return not self.caller_prefix or caller.startswith(self.caller_prefix)

    def sort_key(self, order: int) -> tuple[object, ...]:
        did_key = (0, self._did.specificity) if self._did is not None else (1, (0, ()))
        return (did_key, -len(self.caller_prefix or ""), order)

    def describe(self, index: int) -> str:
        parts = [f"inbound[{index}]"]
        if self.name:
            parts.append(f"name={self.name}")
        if self.did is not None:
            parts.append(f"did={self.did}")
        if self.caller_prefix:
            parts.append(f"caller={self.caller_prefix}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class DialRule:
    """An internal or outbound dialling rule: ``pattern`` → ``destination`` after rewriting
    the dialled number (drop ``strip`` leading characters, then add ``prepend``)."""

    pattern: str
    destination: Destination
    strip: int = 0
    prepend: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        compiled = compile_pattern(self.pattern)
        if self.strip < 0:
            raise ValueError(f"strip must be >= 0, got {self.strip}")
        if compiled.min_length is not None and self.strip > compiled.min_length:
            raise ValueError(
                f"strip {self.strip} removes more than the {compiled.min_length} characters "
                f"the shortest number matching {self.pattern!r} has"
            )


@dataclass(frozen=True, slots=True)
class TimeConditionRoute:
    """A time condition with the destinations for open and closed."""

    condition: TimeCondition
    open: Destination
    closed: Destination


@dataclass(frozen=True, slots=True)
class _Indexed:
    index: int
    route: InboundRoute


class Dialplan:
    """Precompiled routing tables; every method is a pure function of its arguments."""

    def __init__(
        self,
        *,
        inbound: Iterable[InboundRoute] = (),
        regions: RegionTable | None = None,
        blacklist: Blacklist | None = None,
        internal: Iterable[DialRule] = (),
        outbound: Iterable[DialRule] = (),
        time_conditions: Mapping[str, TimeConditionRoute] | None = None,
        extensions: Iterable[str] = (),
        conferences: Iterable[str] = (),
        default: Destination | None = None,
        internal_default: Destination | None = None,
    ) -> None:
        self.regions = regions or RegionTable()
        self.blacklist = blacklist or Blacklist()
        self.time_conditions = dict(time_conditions or {})
        not_found = Destination(DestinationKind.HANGUP, status=NOT_FOUND_STATUS)
        self.default = default or not_found
        self.internal_default = internal_default or not_found

        routes = list(inbound)
        ordered = sorted(enumerate(routes), key=lambda item: item[1].sort_key(item[0]))
        # Exact DIDs are looked up in a dict (their routes already in precedence order); the
        # rest are tried in order. Same result as one sorted list, without a regex per route.
        self._by_did: dict[str, list[_Indexed]] = {}
        self._pattern_routes: list[_Indexed] = []
        for i, r in ordered:
            if r._did is not None and r._did.kind == "exact":
                self._by_did.setdefault(r._did.source, []).append(_Indexed(i, r))
            else:
                self._pattern_routes.append(_Indexed(i, r))
        self.inbound = tuple(routes)

        rules: dict[str, tuple[str, DialRule]] = {}
        for number in extensions:
            dest = Destination(DestinationKind.EXTENSION, number)
            rules[number] = (f"extension {number}", DialRule(number, dest))
        for number in conferences:
            dest = Destination(DestinationKind.CONFERENCE, number)
            rules[number] = (f"conference {number}", DialRule(number, dest))
        explicit: set[str] = set()
        for section, table in (("internal", internal), ("outbound", outbound)):
            for i, rule in enumerate(table):
                if rule.pattern in explicit:
                    raise ValueError(f"duplicate dial pattern {rule.pattern!r}")
                explicit.add(rule.pattern)
                label = f"{section}[{i}]" + (f" name={rule.name}" if rule.name else "")
                rules[rule.pattern] = (f"{label} pattern={rule.pattern}", rule)
        self._dial = PatternTable((compile_pattern(p), labelled) for p, labelled in rules.items())
        self._check_conditions()

    def _check_conditions(self) -> None:
        targets = [r.destination for r in self.inbound]
        targets += [rule.destination for _, (_, rule) in self._dial.ordered()]
        targets += [self.default, self.internal_default]
        for tc in self.time_conditions.values():
            targets += [tc.open, tc.closed]
        for dest in targets:
            if dest.kind == DestinationKind.TIME_CONDITION and (
                dest.target not in self.time_conditions
            ):
                raise ValueError(f"unknown time condition {dest.target!r}")

    def route_inbound(self, did: str, caller: str, now: datetime) -> RouteDecision:
        """Where a call from ``caller`` to ``did`` goes at ``now`` (an aware datetime)."""
        blocked = self.blacklist.match(caller)
        if blocked is not None:
            rule, dest = blocked
            return RouteDecision(dest, did, (rule,))
        for item in self._by_did.get(did, ()):
            if item.route.matches(did, caller):
                return self._resolve(
                    item.route.destination, did, (item.route.describe(item.index),), now
                )
        for item in self._pattern_routes:
            if item.route.matches(did, caller):
                return self._resolve(
                    item.route.destination, did, (item.route.describe(item.index),), now
                )
        region = self.regions.match(caller)
        if region is not None:
            prefix, queue = region
            dest = Destination(DestinationKind.QUEUE, queue)
            return RouteDecision(dest, did, (f"region prefix={prefix} queue={queue}",))
        return self._resolve(self.default, did, ("inbound default",), now)

    def route_internal(self, dialled: str, caller_ext: str, now: datetime) -> RouteDecision:
        """Where ``dialled``, dialled by extension ``caller_ext``, goes at ``now``."""
        hit = self._dial.match(dialled)
        if hit is None:
            return self._resolve(self.internal_default, dialled, ("internal default",), now)
        _, (label, rule) = hit
        number = rewrite(dialled, rule.strip, rule.prepend)
        trail = (label if number == dialled else f"{label} rewrite={number}",)
        dest = rule.destination
        if not dest.target and dest.kind in _TARGET_IS_NUMBER:
            dest = replace(dest, target=number)
        return self._resolve(dest, number, trail, now)

    def _resolve(
        self, dest: Destination, number: str, trail: tuple[str, ...], now: datetime
    ) -> RouteDecision:
        for _ in range(MAX_CONDITION_DEPTH):
            if dest.kind != DestinationKind.TIME_CONDITION:
                return RouteDecision(dest, number, trail)
            name = dest.target
            tc = self.time_conditions[name]
            if tc.condition.is_open(now):
                state, dest = "open", tc.open
            else:
                holiday = tc.condition.holiday_at(now)
                state = f"closed holiday={holiday.name or holiday.first}" if holiday else "closed"
                dest = tc.closed
            trail = (*trail, f"time_condition {name}={state}")
            if not dest.target and dest.kind in _TARGET_IS_NUMBER:
                dest = replace(dest, target=number)
        loop = Destination(DestinationKind.HANGUP, status=500)
        return RouteDecision(loop, number, (*trail, "time_condition loop"))


# Kinds whose empty target means "the (rewritten) dialled number".
_TARGET_IS_NUMBER = frozenset(
    {DestinationKind.EXTENSION, DestinationKind.VOICEMAIL, DestinationKind.CONFERENCE}
)
