"""Phone numbers of customers and of the outbound blacklist: how they are stored and matched.

Theory of operation: a number is stored as typed (``number``, for people) and as
:func:`normalise` digits, the longest form we can derive without knowing the country:

- ``+`` before the first digit: international, the digits as they are
  (``+49 30 1234567`` → ``49301234567``);
- ``00`` first: the international access prefix (ITU-T E.164 §A, most of Europe, China):
  dropped (``004930 1234567`` → ``49301234567``);
- else one leading ``0``: the national trunk prefix, dropped (``030 1234567`` →
  ``301234567``, ``010 1234 5678`` → ``1012345678``);
- else the digits as typed (``4930 1234567``, ``1-555-123-4567``, ``138 0013 8000``).

Two numbers match (:func:`numbers_match`) when their normalised digits are equal, or when
both have at least :data:`MIN_SUFFIX` digits and the shorter is a suffix of the longer: a
caller ID of ``+49 30 1234567`` finds a customer typed ``030 1234567`` and one typed
``4930 1234567``; ``+1 (555) 123-4567`` finds ``555-123-4567``. Numbers shorter than
``MIN_SUFFIX`` digits (extensions, short codes) only match exactly. The price of not knowing
the country: two numbers that differ only in the country or area code they leave out match
(``1234567`` in one city and ``+49 30 1234567``); the lookup then prefers an exact match,
then the longest stored form.

Lookups stay index-driven: every stored number also keeps :func:`tail` (its last
``MIN_SUFFIX`` digits, or all of them when shorter) in an indexed column. A caller's tail
equals the tail of every number it can match, so the store asks for that tail by equality
and checks the suffix rule on the few rows found.
"""

from __future__ import annotations

import re

__all__ = ["MIN_SUFFIX", "normalise", "numbers_match", "raw_digits", "tail"]

MIN_SUFFIX = 7
"""The shortest suffix two numbers may match on (a subscriber number without area code)."""


_NOT_DIGIT = re.compile(r"\D")  # \d: 0-9 and every other Unicode decimal digit (Nd)


def raw_digits(number: str) -> str:
    """The ASCII digits of ``number`` (full-width and other Unicode decimal digits count
    too)."""
    digits = _NOT_DIGIT.sub("", number)
    return digits if digits.isascii() else "".join(str(int(ch)) for ch in digits)


def normalise(number: str) -> str:
    """The longest digits-only form of ``number`` (module docstring); "" when it has no
    digits."""
    text = number.strip()
    digits = raw_digits(text)
    if not digits:
        return ""
    if text.startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        return digits[1:]
    return digits


def tail(digits: str) -> str:
    """The indexed key of normalised ``digits``: its last :data:`MIN_SUFFIX` digits."""
    return digits[-MIN_SUFFIX:]


def numbers_match(a: str, b: str) -> bool:
    """Whether normalised digits ``a`` and ``b`` are the same number (module docstring)."""
    if not a or not b:
        return False
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= MIN_SUFFIX and long.endswith(short)
