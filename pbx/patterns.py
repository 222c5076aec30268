"""Dial patterns: exact numbers, Asterisk-style ``_`` patterns and plain regexes, sans-IO.

Theory of operation
-------------------
A dialplan rule names the numbers it handles with a *pattern* written in one of three forms:

* an exact number, ``1001`` or ``+861012345678`` (digits, ``*``, ``#``, a leading ``+``);
* an Asterisk-style pattern starting with ``_``: ``X`` is any digit 0-9, ``Z`` is 1-9, ``N``
  is 2-9, ``[1-5,7]`` is a set of digits and ranges (commas optional), ``.`` at the end is one
  or more further characters and ``!`` at the end zero or more; digits, ``*``, ``#`` and ``+``
  are literal. ``_1XXX`` is any four-digit number starting with 1, ``_00.`` an international
  number;
* a plain regular expression after ``re:`` (``re:^9\\d+$``), always matched against the whole
  dialled string (``re.fullmatch``; anchors are allowed but not needed).

:func:`compile_pattern` turns the text into a :class:`DialPattern` (a precompiled regex plus a
*specificity* key) or raises ``ValueError`` with a message fit for a ``file:line:column``
report. When several patterns match, the most specific wins, as in Asterisk: exact numbers
first, then ``_`` patterns compared position by position (a literal beats a ``[set]``, which
beats ``N``, ``Z``, ``X``; ``.`` and ``!`` come last), then regexes in the order written.
Ties keep the order the rules were written in, so the outcome never depends on hashing.

:class:`PatternTable` holds the rules of one table: a dict for exact numbers, then the other
patterns sorted by specificity, each tried with one ``fullmatch``.
:func:`rewrite` applies a rule's strip/prepend to the dialled number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = [
    "DialPattern",
    "PatternKind",
    "PatternTable",
    "compile_pattern",
    "rewrite",
]

PatternKind = Literal["exact", "asterisk", "regex"]

T = TypeVar("T")

_EXACT = re.compile(r"\+?[0-9*#]+")
_LITERALS = frozenset("0123456789*#+")
# Per-position weight = how many characters the position accepts (smaller = more specific).
_WEIGHT_X, _WEIGHT_Z, _WEIGHT_N = 10, 9, 8
_WEIGHT_DOT, _WEIGHT_BANG = 1000, 1001
_CLASS_OF_KIND = {"exact": 0, "asterisk": 1, "regex": 2}


@dataclass(frozen=True, slots=True)
class DialPattern:
    """A compiled pattern. ``min_length`` is the shortest string it can match (None: regex)."""

    source: str
    kind: PatternKind
    regex: re.Pattern[str]
    weights: tuple[int, ...]
    min_length: int | None

    def matches(self, dialled: str) -> bool:
        return self.regex.fullmatch(dialled) is not None

    @property
    def specificity(self) -> tuple[int, tuple[int, ...]]:
        """Sort key: smaller sorts first and wins (exact < ``_`` pattern < regex)."""
        return (_CLASS_OF_KIND[self.kind], self.weights)


def compile_pattern(text: str) -> DialPattern:
    """Compile one pattern; raise ``ValueError`` explaining what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise ValueError("a dial pattern must be a non-empty string")
    if text.startswith("re:"):
        return _compile_regex(text)
    if text.startswith("_"):
        return _compile_asterisk(text)
    if _EXACT.fullmatch(text) is None:
        raise ValueError(
            f"{text!r} is not a number (digits, *, #, leading +); start patterns with '_' "
            "(e.g. '_1XXX') and regular expressions with 're:'"
        )
    return DialPattern(text, "exact", re.compile(re.escape(text)), (), len(text))


def _compile_regex(text: str) -> DialPattern:
    body = text[3:]
    if not body:
        raise ValueError("empty regular expression after 're:'")
    try:
        regex = re.compile(body)
    except re.error as exc:
        raise ValueError(f"bad regular expression {body!r}: {exc}") from None
    return DialPattern(text, "regex", regex, (), None)


def _compile_asterisk(text: str) -> DialPattern:
    body = text[1:]
    if not body:
        raise ValueError("empty pattern: '_' must be followed by digits, X, Z, N, [..], . or !")
    parts: list[str] = []
    weights: list[int] = []
    min_length = 0
    i = 0
    while i < len(body):
        c = body[i]
        upper = c.upper()
        if c in ".!":
            if i != len(body) - 1:
                raise ValueError(
                    f"in {text!r}: {c!r} (any further characters) must be the last character"
                )
            parts.append(".+" if c == "." else ".*")
            weights.append(_WEIGHT_DOT if c == "." else _WEIGHT_BANG)
            min_length += 1 if c == "." else 0
        elif upper in "XZN":
            parts.append({"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}[upper])
            weights.append({"X": _WEIGHT_X, "Z": _WEIGHT_Z, "N": _WEIGHT_N}[upper])
            min_length += 1
        elif c == "[":
            end = body.find("]", i)
            if end < 0:
                raise ValueError(f"in {text!r}: '[' at position {i + 2} is never closed")
            digits = _parse_set(text, body[i + 1 : end])
            parts.append("[" + "".join(sorted(digits)) + "]")
            weights.append(len(digits))
            min_length += 1
            i = end
        elif c in _LITERALS:
            parts.append(re.escape(c))
            weights.append(1)
            min_length += 1
        else:
            raise ValueError(
                f"in {text!r}: unexpected {c!r} at position {i + 2} "
                "(allowed: digits * # + X Z N [..] and a final . or !)"
            )
        i += 1
    return DialPattern(text, "asterisk", re.compile("".join(parts)), tuple(weights), min_length)


def _parse_set(text: str, inner: str) -> frozenset[str]:
    # Asterisk writes sets without separators ("[1-57]"); commas are accepted for readability.
    chars = inner.replace(",", "").replace(" ", "")
    if not chars:
        raise ValueError(f"in {text!r}: empty set []")
    digits: set[str] = set()
    i = 0
    while i < len(chars):
        ch = chars[i]
        if ch not in "0123456789*#":
            raise ValueError(f"in {text!r}: {ch!r} is not allowed in a set (digits, * # and a-b)")
        if i + 1 < len(chars) and chars[i + 1] == "-":
            hi = chars[i + 2] if i + 2 < len(chars) else ""
            if not (ch.isdigit() and hi.isdigit()):
                raise ValueError(f"in {text!r}: a range in a set needs two digits, e.g. [1-5]")
            if ch > hi:
                raise ValueError(f"in {text!r}: reversed range {ch}-{hi} in a set")
            digits.update(str(d) for d in range(int(ch), int(hi) + 1))
            i += 3
            continue
        digits.add(ch)
        i += 1
    return frozenset(digits)


def rewrite(dialled: str, strip: int = 0, prepend: str = "") -> str:
    """The number a rule sends on: drop ``strip`` leading characters, then add ``prepend``."""
    return prepend + dialled[strip:]


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    pattern: DialPattern
    value: T


class PatternTable(Generic[T]):
    """Patterns with a value each; :meth:`match` returns the most specific match.

    Duplicate pattern texts are refused (``ValueError``): with two identical patterns one
    could never win, which is always a mistake in a dialplan.
    """

    def __init__(self, entries: Iterable[tuple[DialPattern | str, T]]) -> None:
        self._exact: dict[str, _Entry[T]] = {}
        others: list[tuple[tuple[int, tuple[int, ...]], int, _Entry[T]]] = []
        seen: set[str] = set()
        for order, (pattern, value) in enumerate(entries):
            compiled = compile_pattern(pattern) if isinstance(pattern, str) else pattern
            if compiled.source in seen:
                raise ValueError(f"duplicate pattern {compiled.source!r}")
            seen.add(compiled.source)
            entry = _Entry(compiled, value)
            if compiled.kind == "exact":
                self._exact[compiled.source] = entry
            else:
                others.append((compiled.specificity, order, entry))
        others.sort(key=lambda item: (item[0], item[1]))
        self._ordered: tuple[_Entry[T], ...] = tuple(e for _, _, e in others)

    def __len__(self) -> int:
        return len(self._exact) + len(self._ordered)

    def match(self, dialled: str) -> tuple[DialPattern, T] | None:
        """The most specific (pattern, value) matching ``dialled``, or None."""
        exact = self._exact.get(dialled)
        if exact is not None:
            return exact.pattern, exact.value
        for entry in self._ordered:
            if entry.pattern.regex.fullmatch(dialled) is not None:
                return entry.pattern, entry.value
        return None

    def ordered(self) -> list[tuple[DialPattern, T]]:
        """Every entry in the order :meth:`match` tries them (exact numbers first)."""
        head = [(e.pattern, e.value) for e in self._exact.values()]
        return head + [(e.pattern, e.value) for e in self._ordered]
