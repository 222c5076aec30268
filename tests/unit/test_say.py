"""ivr.say: numbers, digits and dates as prompt names, English and Chinese, by table."""

from __future__ import annotations

from datetime import date

import pytest

from ivr.model import DEFAULT_PROMPTS_DIR
from ivr.say import say, say_date, say_digits, say_number

EN_NUMBERS = [
    (0, ["0"]),
    (7, ["7"]),
    (13, ["13"]),
    (20, ["twenty"]),
    (45, ["forty", "5"]),
    (100, ["1", "hundred"]),
    (105, ["1", "hundred", "5"]),
    (119, ["1", "hundred", "19"]),
    (1000, ["1", "thousand"]),
    (1234, ["1", "thousand", "2", "hundred", "thirty", "4"]),
    (20_015, ["twenty", "thousand", "15"]),
    (1_000_005, ["1", "million", "5"]),
    (
        999_999_999,
        [
            "9",
            "hundred",
            "ninety",
            "9",
            "million",
            "9",
            "hundred",
            "ninety",
            "9",
            "thousand",
            "9",
            "hundred",
            "ninety",
            "9",
        ],
    ),
]

ZH_NUMBERS = [
    (0, ["0"]),
    (2, ["2"]),
    (10, ["shi"]),
    (12, ["shi", "2"]),
    (20, ["2", "shi"]),
    (22, ["2", "shi", "2"]),
    (110, ["1", "bai", "1", "shi"]),
    (200, ["liang", "bai"]),
    (305, ["3", "bai", "0", "5"]),
    (1002, ["1", "qian", "0", "2"]),
    (1200, ["1", "qian", "2", "bai"]),
    (1234, ["1", "qian", "2", "bai", "3", "shi", "4"]),
    (2000, ["liang", "qian"]),
    (10_020, ["1", "wan", "0", "2", "shi"]),
    (20_000, ["liang", "wan"]),
    (100_000, ["shi", "wan"]),
    (100_100, ["shi", "wan", "0", "1", "bai"]),
    (110_000, ["shi", "1", "wan"]),
    (1_000_000, ["1", "bai", "wan"]),
    (
        12_345_678,
        ["1", "qian", "2", "bai", "3", "shi", "4", "wan", "5", "qian", "6", "bai", "7", "shi", "8"],
    ),
    (100_000_001, ["1", "yi", "0", "1"]),
    (200_000_000, ["liang", "yi"]),
    (100_010_000, ["1", "yi", "0", "1", "wan"]),
]


@pytest.mark.parametrize(("n", "expected"), EN_NUMBERS)
def test_english_numbers(n: int, expected: list[str]) -> None:
    assert say_number(n, "en") == expected


@pytest.mark.parametrize(("n", "expected"), ZH_NUMBERS)
def test_chinese_numbers(n: int, expected: list[str]) -> None:
    assert say_number(n, "zh") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1234", ["1", "2", "3", "4"]), ("*9#", ["star", "9", "pound"]), ("+1 (55)", ["1", "5", "5"])],
)
def test_digits(text: str, expected: list[str]) -> None:
    assert say_digits(text, "en") == expected
    assert say_digits(text, "zh") == expected


@pytest.mark.parametrize(
    ("day", "language", "expected"),
    [
        (date(2024, 3, 5), "en", ["month-3", "ord-5", "twenty", "twenty", "4"]),
        (date(2005, 12, 31), "en", ["month-12", "ord-31", "2", "thousand", "5"]),
        (date(1905, 1, 1), "en", ["month-1", "ord-1", "19", "0", "5"]),
        (date(1900, 7, 4), "en", ["month-7", "ord-4", "19", "hundred"]),
        (date(2024, 3, 5), "zh", ["2", "0", "2", "4", "nian", "3", "yue", "5", "ri"]),
        (
            date(2024, 12, 20),
            "zh",
            ["2", "0", "2", "4", "nian", "shi", "2", "yue", "2", "shi", "ri"],
        ),
    ],
)
def test_dates(day: date, language: str, expected: list[str]) -> None:
    assert say_date(day, language) == expected


def test_say_dispatch_and_errors() -> None:
    assert say("number", " 42 ", "en") == ["forty", "2"]
    assert say("date", "2024-03-05", "zh")[-1] == "ri"
    with pytest.raises(ValueError, match="whole number"):
        say("number", "4x", "en")
    with pytest.raises(ValueError, match="date"):
        say("date", "yesterday", "en")
    with pytest.raises(ValueError, match="999,999,999"):
        say_number(1_000_000_000)
    with pytest.raises(ValueError):
        say_number(-1)
    with pytest.raises(ValueError, match="language"):
        say_number(1, "fr")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_word_has_a_shipped_prompt(language: str) -> None:
    words: set[str] = set()
    for n in [*range(0, 1000), 1000, 2000, 10_020, 20_000, 110_000, 1_000_000, 200_000_000]:
        words.update(say_number(n, language))
    for month in range(1, 13):
        for d in (1, 2, 3, 10, 11, 12, 20, 21, 22, 30, 31):
            if month in (2, 4, 6, 9, 11) and d > 28:
                continue
            words.update(say_date(date(2024, month, d), language))
    words.update(say_digits("0123456789*#", language))
    missing = sorted(
        w for w in words if not (DEFAULT_PROMPTS_DIR / language / f"{w}.wav").is_file()
    )
    assert missing == []
