"""Say digits, numbers and dates as prompt names, in English (``en``) and Chinese (``zh``).

Theory of operation
-------------------
The IVR never synthesises speech for numbers: it concatenates short recorded prompts. These
functions only decide *which* prompts, in order; the engine resolves each name against the
caller's prompt set (``ivr/prompts/<lang>/<name>.wav``) and plays them back to back.

English (American style, no "and"): the prompt set holds ``0``..``19``, the tens ``twenty``..
``ninety`` and the scale words ``hundred``, ``thousand``, ``million``. 1234 is
``["1", "thousand", "2", "hundred", "thirty", "4"]``.

Chinese groups digits by four (万 ``wan``, 亿 ``yi``); inside a group the units are 千 ``qian``,
百 ``bai``, 十 ``shi``. The prompt set holds the digits ``0``..``9`` (零..九) and those unit
words, plus ``liang`` (两). Rules kept:

- Zeros inside a number are read once (零) however many there are: 1002 → 一千零二; trailing
  zeros are silent: 1200 → 一千二百 (the common form, not 一千两百).
- A lower group that does not fill its four places after a non-zero upper group starts with
  零: 10020 → 一万零二十.
- 10..19 at the very start of the number drop the 一: 12 → 十二, 100000 → 十万; elsewhere
  一十 is kept: 110 → 一百一十.
- 两 replaces 二 before 千, before 百 when it opens a group, and for a group that is exactly 2
  before 万/亿: 2000 → 两千, 200 → 两百, 20000 → 两万; 二 stays elsewhere (1200 → 一千二百,
  22 → 二十二, 2 → 二).

Dates: ``en`` says "<month> <ordinal day> <year>" (``month-3``, ``ord-5``, then the year as
people say it: 2024 → twenty twenty-four, 2005 → two thousand five, 1905 → nineteen oh five).
``zh`` says the year digit by digit, then 年, the month, 月, the day and 日 (二〇二四年三月五日).
"""

from __future__ import annotations

from datetime import date

__all__ = ["MAX_NUMBER", "SAY_KINDS", "say", "say_date", "say_digits", "say_number"]

MAX_NUMBER = 999_999_999
SAY_KINDS = ("digits", "number", "date")

_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SYMBOLS = {"*": "star", "#": "pound"}


def say_digits(text: str, language: str = "en") -> list[str]:
    """One prompt per character: ``0``..``9``, ``star``, ``pound``; other characters are skipped
    (so ``+1 (555)`` reads the digits only)."""
    _check_language(language)
    out: list[str] = []
    for ch in text:
        if ch.isascii() and ch.isdigit():
            out.append(ch)
        elif ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
    return out


def say_number(n: int, language: str = "en") -> list[str]:
    """Prompt names that read ``n`` (0 ≤ n ≤ 999,999,999) aloud."""
    _check_language(language)
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"can only say numbers from 0 to {MAX_NUMBER:,}, got {n}")
    if language == "en":
        return _en_number(n)
    return _zh_number(n)


def say_date(day: date, language: str = "en") -> list[str]:
    """Prompt names that read a calendar date."""
    _check_language(language)
    if language == "en":
        return [f"month-{day.month}", f"ord-{day.day}", *_en_year(day.year)]
    year = say_digits(str(day.year), "zh")
    return [*year, "nian", *_zh_number(day.month), "yue", *_zh_number(day.day), "ri"]


def say(kind: str, value: str, language: str = "en") -> list[str]:
    """Dispatch on ``kind`` (``digits``, ``number``, ``date``); ``value`` is text as found in a
    flow variable (numbers in decimal, dates in ISO ``YYYY-MM-DD``). Raises ``ValueError`` on
    text that does not fit the kind."""
    if kind == "digits":
        return say_digits(value, language)
    if kind == "number":
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"not a whole number: {value!r}") from None
        return say_number(n, language)
    if kind == "date":
        try:
            d = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None
        return say_date(d, language)
    raise ValueError(f"unknown say kind {kind!r}; expected one of {', '.join(SAY_KINDS)}")


def _check_language(language: str) -> None:
    if language not in ("en", "zh"):
        raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")


# --- English ---------------------------------------------------------------------------------


def _en_below_1000(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [str(hundreds), "hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out.append(_EN_TENS[tens])
        if units:
            out.append(str(units))
    elif rest:
        out.append(str(rest))  # 1..19 each have their own prompt
    return out


def _en_number(n: int) -> list[str]:
    if n == 0:
        return ["0"]
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    out: list[str] = []
    if millions:
        out += [*_en_below_1000(millions), "million"]
    if thousands:
        out += [*_en_below_1000(thousands), "thousand"]
    out += _en_below_1000(units)
    return out


def _en_year(year: int) -> list[str]:
    century, rest = divmod(year, 100)
    if year < 1000 or year % 1000 == 0 or 2000 <= year < 2010:
        return _en_number(year)  # "two thousand", "two thousand five"
    if rest == 0:
        return [*_en_number(century), "hundred"]  # nineteen hundred
    if rest < 10:
        return [*_en_number(century), "0", str(rest)]  # nineteen oh five
    return [*_en_number(century), *_en_number(rest)]


# --- Chinese ---------------------------------------------------------------------------------

_ZH_UNITS = ["qian", "bai", "shi", ""]


def _zh_group(n: int, leading: bool) -> list[str]:
    """A group of up to four digits (1..9999). ``leading``: it starts the whole number."""
    digits = [int(c) for c in f"{n:04d}"]
    out: list[str] = []
    zero_pending = False
    started = False
    for digit, unit in zip(digits, _ZH_UNITS, strict=True):
        if digit == 0:
            if started:
                zero_pending = True  # read once, only if a non-zero digit follows
            continue
        if zero_pending:
            out.append("0")
            zero_pending = False
        if unit == "shi" and digit == 1 and leading and not started:
            out.append("shi")  # 十二, not 一十二, at the start of a number
        elif digit == 2 and unit in ("qian", "bai") and not started:
            out += ["liang", unit]
        else:
            out.append(str(digit))
            if unit:
                out.append(unit)
        started = True
    return out


def _zh_number(n: int) -> list[str]:
    if n == 0:
        return ["0"]
    groups = [(n // 100_000_000, "yi"), (n // 10_000 % 10_000, "wan"), (n % 10_000, "")]
    out: list[str] = []
    for value, unit in groups:
        if value == 0:
            continue
        leading = not out
        if not leading and value < 1000:
            out.append("0")  # the group's leading places are empty: 一万零二十
        if value == 2 and unit:
            out.append("liang")  # 两万, 两亿
        else:
            out += _zh_group(value, leading)
        if unit:
            out.append(unit)
    return out
