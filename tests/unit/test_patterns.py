"""Dial patterns: Asterisk-style, exact and regex; specificity; strip/prepend; bad patterns."""

from __future__ import annotations

import pytest

from pbx.patterns import PatternTable, compile_pattern, rewrite


@pytest.mark.parametrize(
    ("pattern", "dialled", "matches"),
    [
        ("1001", "1001", True),
        ("1001", "10010", False),
        ("+861012345678", "+861012345678", True),
        ("_1XXX", "1234", True),
        ("_1XXX", "123", False),
        ("_1XXX", "12345", False),
        ("_1XXX", "2234", False),
        ("_9NXXXXXX", "92345678", True),
        ("_9NXXXXXX", "91345678", False),  # N is 2-9
        ("_9NXXXXXX", "90345678", False),
        ("_ZX", "10", True),
        ("_ZX", "01", False),  # Z is 1-9
        ("_nxx", "234", True),  # letters are case-insensitive
        ("_00.", "0044", True),
        ("_00.", "00", False),  # . is one or more
        ("_00!", "00", True),  # ! is zero or more
        ("_00!", "00123", True),
        ("_[1-5,7]X", "37", True),
        ("_[1-5,7]X", "67", False),
        ("_[1-57]X", "70", True),  # Asterisk style without commas
        ("_*7X", "*72", True),
        ("_#X", "#1", True),
        ("_+86.", "+8610", True),
        ("re:^9\\d+$", "9123", True),
        ("re:9\\d+", "x9123", False),  # always matched against the whole string
        ("re:9\\d+", "91a", False),
    ],
)
def test_pattern_matches(pattern: str, dialled: str, matches: bool) -> None:
    assert compile_pattern(pattern).matches(dialled) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "non-empty"),
        ("_", "empty pattern"),
        ("_1.2", "must be the last character"),
        ("_1!X", "must be the last character"),
        ("_[13", "never closed"),
        ("_[5-1]", "reversed range"),
        ("_[]", "empty set"),
        ("_[1-]", "needs two digits"),
        ("_[a]", "not allowed in a set"),
        ("_1a", "unexpected 'a' at position 3"),
        ("re:(", "bad regular expression"),
        ("re:", "empty regular expression"),
        ("abc", "is not a number"),
        ("10 01", "is not a number"),
        ("1+1", "is not a number"),
    ],
)
def test_bad_patterns_raise_value_error(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        compile_pattern(pattern)


def test_min_length() -> None:
    assert compile_pattern("_1XXX").min_length == 4
    assert compile_pattern("_00.").min_length == 3
    assert compile_pattern("_00!").min_length == 2
    assert compile_pattern("1001").min_length == 4
    assert compile_pattern("re:9.*").min_length is None


@pytest.mark.parametrize(
    ("dialled", "winner"),
    [
        ("1234", "1234"),  # exact beats every pattern
        ("1235", "_123X"),  # literal at position 4 beats X
        ("1245", "_12[3-5]X"),  # a 3-digit set beats N and X
        ("1285", "_12NX"),  # N (8 digits) beats X (10)
        ("1205", "_12XX"),
        ("12056", "_12X."),  # . after everything fixed
        ("1", "_1!"),
        ("9000", "_9XXX"),  # patterns beat regexes
        ("90000", "re:9\\d+"),
        ("80000", "re:[89]\\d+"),  # regexes keep the order written
    ],
)
def test_most_specific_match_wins(dialled: str, winner: str) -> None:
    patterns = [
        "re:9\\d+",
        "re:[89]\\d+",
        "re:8\\d+",
        "_1!",
        "_12X.",
        "_12XX",
        "_12NX",
        "_12[3-5]X",
        "_123X",
        "1234",
        "_9XXX",
    ]
    # The outcome does not depend on the order the patterns were written in (except regexes).
    for entries in (patterns, patterns[3:][::-1] + patterns[:3]):
        table = PatternTable((p, p) for p in entries)
        hit = table.match(dialled)
        assert hit is not None
        assert hit[1] == winner


def test_regexes_in_written_order() -> None:
    table = PatternTable([("re:8\\d+", "a"), ("re:[89]\\d+", "b")])
    assert table.match("800") == (compile_pattern("re:8\\d+"), "a")
    assert table.match("900")[1] == "b"  # type: ignore[index]


def test_no_match_and_duplicates() -> None:
    table = PatternTable([("_1XXX", "x")])
    assert table.match("2000") is None
    assert len(table) == 1
    with pytest.raises(ValueError, match="duplicate pattern '_1XXX'"):
        PatternTable([("_1XXX", 1), ("_1XXX", 2)])


def test_ordered_lists_exact_first_then_specificity() -> None:
    table = PatternTable([("_X.", 0), ("re:.*", 1), ("100", 2), ("_1XX", 3)])
    assert [p.source for p, _ in table.ordered()] == ["100", "_1XX", "_X.", "re:.*"]


@pytest.mark.parametrize(
    ("dialled", "strip", "prepend", "out"),
    [
        ("90123456", 1, "", "0123456"),
        ("0044207", 2, "+", "+44207"),
        ("1234", 0, "", "1234"),
        ("5678", 0, "010", "0105678"),
        ("12", 2, "", ""),
    ],
)
def test_rewrite(dialled: str, strip: int, prepend: str, out: str) -> None:
    assert rewrite(dialled, strip, prepend) == out
