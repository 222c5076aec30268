"""Property tests for pbx/message.py (hypothesis).

(a) parse_message is total: any bytes, and any mutation of a real message, either parse or
    raise ParseError; (b) parse -> serialize -> parse is a fixed point after one round;
(c) StreamParser cuts a stream of real messages back into the same messages whatever the
    segment sizes; (d) the header value parsers are total on text.

Seeds come from the shared corpus (plus a built-in REGISTER, so the properties still run
without it). Example counts are kept moderate: this file should run in a few seconds.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.message import (
    ParseError,
    Request,
    Response,
    StreamParser,
    parse_message,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_list,
    validate_for_uas,
)
from tests.fuzz import fuzz_sip_parser
from tests.fuzz.fuzz_sip_parser import load_seeds, mutate

SEEDS = load_seeds()


def _parses(data: bytes) -> Request | Response | None:
    try:
        return parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status <= 599
        return None


def _exactly_one_framed_message(data: bytes) -> bool:
    """True if ``data`` is one message whose Content-Length ends it exactly (dblreq.dat, for
    one, is not: it carries trailing octets)."""
    msg = _parses(data)
    if msg is None or msg.get("Content-Length") is None:
        return False
    return data.find(b"\r\n\r\n") + 4 + len(msg.body) == len(data)


FRAMED = [s for s in SEEDS if _exactly_one_framed_message(s)]

PROPS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Bytes that matter to a SIP parser, to make random inputs more interesting than noise.
SIP_BYTES = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"=", b"<", b">", b'"', b"\\",
     b"@", b"?", b"%", b"/", b"[", b"]", b"*", b"\x00", b"\xff", b"\xc2\xb2", b"SIP/2.0",
     b"sip:", b"Via", b"From", b"To", b"CSeq", b"Call-ID", b"Content-Length", b"l", b"v",
     b"INVITE", b"0", b"1", b"99999999999", b"z9hG4bK", b"tag", b"branch"]
)  # fmt: skip


def check_total_and_stable(data: bytes) -> None:
    msg = _parses(data)
    if msg is None:
        return
    once = msg.serialize()
    again = parse_message(once)
    assert again.serialize() == once
    if isinstance(msg, Request):
        with contextlib.suppress(ParseError):
            validate_for_uas(msg)


# --- (a) and (b) ------------------------------------------------------------------------------


@PROPS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check_total_and_stable(data)


@PROPS
@given(st.lists(SIP_BYTES | st.binary(max_size=8), max_size=80))
def test_sip_flavoured_bytes(parts: list[bytes]) -> None:
    check_total_and_stable(b"".join(parts))


@PROPS
@given(st.sampled_from(SEEDS), st.integers(0, 2**32 - 1))
def test_mutated_real_messages(seed: bytes, rng_seed: int) -> None:
    check_total_and_stable(mutate(seed, random.Random(rng_seed), SEEDS))


@PROPS
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 2000), st.sampled_from(["del", "dup", "ins"]), SIP_BYTES),
        min_size=1,
        max_size=4,
    ),
)
def test_line_edits_of_real_messages(seed: bytes, edits: list[tuple[int, str, bytes]]) -> None:
    """Deleted, duplicated and inserted lines (shrinks to a readable example)."""
    lines = seed.split(b"\r\n")
    for pos, op, token in edits:
        i = pos % len(lines)
        if op == "del":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines.insert(i, token)
        if not lines:
            lines = [b""]
    check_total_and_stable(b"\r\n".join(lines))


@PROPS
@given(st.sampled_from(SEEDS), st.data())
def test_truncated_real_messages(seed: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(seed)))
    check_total_and_stable(seed[:cut])


# --- (c) stream framing -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(FRAMED), min_size=1, max_size=6),
    st.lists(st.integers(1, 700), min_size=1, max_size=30),
    st.lists(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]), min_size=6, max_size=6),
)
def test_stream_reframes_real_messages(
    msgs: list[bytes], sizes: list[int], keepalives: list[bytes]
) -> None:
    stream = b"".join(k + m for k, m in zip(keepalives, msgs, strict=False))
    sp = StreamParser()
    got: list[Request | Response | ParseError] = []
    i = k = 0
    while i < len(stream):
        n = sizes[k % len(sizes)]
        got.extend(sp.feed(stream[i : i + n]))
        i += n
        k += 1
    assert sp.framing_lost is None
    assert [g.serialize() for g in got if not isinstance(g, ParseError)] == [
        parse_message(m).serialize() for m in msgs
    ]


@PROPS
@given(st.lists(st.binary(max_size=300) | SIP_BYTES, max_size=10), st.integers(1, 64))
def test_stream_parser_is_total(chunks: list[bytes], size: int) -> None:
    sp = StreamParser()
    data = b"".join(chunks)
    for i in range(0, len(data), size):
        try:
            out = sp.feed(data[i : i + size])
        except ParseError:
            break
        for m in out:
            assert isinstance(m, Request | Response | ParseError)


# --- (d) header value parsers --------------------------------------------------------------------

VALUE_CHARS = st.text(
    alphabet=st.sampled_from(list("sipSIP:@;=<>\"\\,?%/[]*#. \t-_+~!'()&$0123456789abcxyz²٣é\x00")),
    max_size=60,
)
PARSERS: list[Callable[[str], object]] = [
    parse_uri,
    parse_name_addr,
    parse_via,
    parse_params,
    split_list,
]


@PROPS
@given(st.sampled_from(PARSERS), st.text(max_size=80) | VALUE_CHARS)
def test_value_parsers_are_total(func: Callable[[str], object], value: str) -> None:
    with contextlib.suppress(ParseError):
        func(value)


@PROPS
@given(
    st.sampled_from(["sip", "sips", "SIP", "tel", "x"]),
    st.from_regex(r"[a-z0-9%;?&=+$,/!~*'()_.-]{0,12}", fullmatch=True),
    st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "h"]),
    st.none() | st.integers(0, 65535),
    st.lists(st.from_regex(r"[a-z]{1,5}(=[a-z0-9%]{1,5})?", fullmatch=True), max_size=3),
)
def test_sip_uri_round_trip(
    scheme: str, user: str, host: str, port: int | None, params: list[str]
) -> None:
    """A URI that parses prints back to something that parses to the same URI."""
    text = f"{scheme}:{user}@{host}" + (f":{port}" if port is not None else "")
    text += "".join(";" + p for p in params)
    try:
        uri = parse_uri(text)
    except ParseError:
        return
    assert parse_uri(str(uri)) == uri


# --- the fuzz target ----------------------------------------------------------------------------


def test_fuzz_target_small_run() -> None:
    """3,000 iterations of tests/fuzz/fuzz_sip_parser.py (the full run is 20,000)."""
    assert fuzz_sip_parser.run(3000, seed=4475, time_limit=60.0) >= 1000


def test_fuzz_target_reports_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The target must notice an exception other than ParseError."""

    def broken(data: bytes, *, stream: bool = False) -> Request | Response:
        raise ValueError("boom")

    monkeypatch.setattr(fuzz_sip_parser, "parse_message", broken)
    assert fuzz_sip_parser.main(["--iterations", "5", "--seed", "1"]) == 1
