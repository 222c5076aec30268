"""Customer number normalisation and matching (crm/numbers.py): the forms people type a
German, a US and a Chinese number in, and what must not match."""

from __future__ import annotations

import pytest

from crm.numbers import MIN_SUFFIX, normalise, numbers_match, tail

# (as typed, normalised): "+" and "00" mark international; one leading 0 is a trunk prefix.
NORMALISE = [
    ("+49 30 1234567", "49301234567"),
    ("004930 1234567", "49301234567"),
    ("4930 1234567", "49301234567"),
    ("030 1234567", "301234567"),
    ("(030) 123-45-67", "301234567"),
    ("+1 (555) 123-4567", "15551234567"),
    ("1-555-123-4567", "15551234567"),
    ("555.123.4567", "5551234567"),
    ("011 1 555 123 4567", "1115551234567"),  # 011 is not special: one 0 dropped
    ("+86 138 0013 8000", "8613800138000"),
    ("0086 13800138000", "8613800138000"),
    ("138-0013-8000", "13800138000"),
    ("+86 10 1234 5678", "861012345678"),
    ("010 1234 5678", "1012345678"),
    ("１３８００１３８０００", "13800138000"),  # full-width digits
    ("sip:1001@pbx", "1001"),
    ("", ""),
    ("anonymous", ""),
]


@pytest.mark.parametrize(("typed", "digits"), NORMALISE)
def test_normalise(typed: str, digits: str) -> None:
    assert normalise(typed) == digits


SAME = [
    # German: international, with 00, without +, national with trunk 0
    ["+49 30 1234567", "004930 1234567", "4930 1234567", "030 1234567", "30 1234567"],
    # US: with and without country code
    ["+1 (555) 123-4567", "1-555-123-4567", "(555) 123-4567", "555 123 4567", "0015551234567"],
    # Chinese mobile and Beijing landline
    ["+86 138 0013 8000", "0086 138 0013 8000", "13800138000", "8613800138000"],
    ["+86 10 1234 5678", "010 1234 5678", "10 12345678"],
]


@pytest.mark.parametrize("forms", SAME)
def test_every_form_matches_every_other(forms: list[str]) -> None:
    for a in forms:
        for b in forms:
            da, db = normalise(a), normalise(b)
            assert numbers_match(da, db), (a, b)
            assert tail(da) == tail(db), (a, b)  # the index key finds the candidate


DIFFERENT = [
    ("+49 30 1234567", "+49 30 1234568"),  # last digit
    ("+86 138 0013 8000", "+86 139 0013 8000"),  # another mobile
    ("1001", "21001"),  # extensions match only exactly
    ("123456", "7123456"),  # 6 digits: too short for a suffix match
    ("", ""),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_numbers_do_not_match(a: str, b: str) -> None:
    assert not numbers_match(normalise(a), normalise(b))


def test_suffix_needs_min_digits() -> None:
    assert MIN_SUFFIX == 7
    assert numbers_match("1234567", "49301234567")
    assert not numbers_match("234567", "49301234567")
    assert tail("49301234567") == "1234567"
    assert tail("1001") == "1001"
