"""Fuzz target for the SIP parser (pbx/message.py).

The parser's contract (STYLE.md §6): any input either parses or raises ``ParseError``; and
a message that parses serializes to bytes that parse again. This target checks both on
inputs mutated from the shared corpus (RFC 4475 torture messages and real captures).

Two ways to run it:

* plain Python, no dependencies (seeded, reproducible)::

      .venv/bin/python -m tests.fuzz.fuzz_sip_parser --iterations 20000 --seed 1

* with atheris (coverage-guided, if installed)::

      .venv/bin/python -m tests.fuzz.fuzz_sip_parser --atheris -atheris_runs=100000

It exits non-zero and prints the input (as a Python bytes literal) on the first failure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pbx.message import (
    ParseError,
    Request,
    StreamParser,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_list,
    validate_for_uas,
)

# The corpus lives beside the repository: <repo>/../shared/corpus.
CORPUS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def corpus_files(kind: str) -> list[Path]:
    """The files of ``kind`` ("real" or "rfc4475") in the shared corpus; [] if absent."""
    folder = CORPUS_DIR / kind
    if not folder.is_dir():
        return []
    suffix = ".sip" if kind == "real" else ".dat"
    return sorted(folder.glob(f"*{suffix}"))


def load_seeds() -> list[bytes]:
    """Every corpus message, plus a minimal REGISTER so the fuzzer works without a corpus."""
    seeds = [p.read_bytes() for kind in ("real", "rfc4475") for p in corpus_files(kind)]
    seeds.append(
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"
        b"From: <sip:100@example.com>;tag=1\r\nTo: <sip:100@example.com>\r\n"
        b"Call-ID: a@b\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@192.0.2.1>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    return seeds


# --- mutations ---------------------------------------------------------------------------

_INTERESTING = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b"@",
    b"?",
    b"%",
    b"%00",
    b"=",
    b"/",
    b"[",
    b"]",
    b"*",
    b"\r\n ",
    b"\r\n\r\n",
    b"SIP/2.0",
    b"9999999999999999999999",
    b"-1",
    "²".encode(),
    "٣".encode(),
]


def _line_op(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    if len(lines) < 2:
        return data
    i = rng.randrange(len(lines))
    op = rng.randrange(4)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    return b"\n".join(lines)


_VALUES = [
    b"",
    b"0",
    b"00000000000000000000000000000000000000000000001",
    b"9" * 5000,
    "²".encode(),
    "1²".encode(),
    "٣".encode(),
    b"-1",
    b"<>",
    b'"',
    b'"unterminated',
    b"sip:",
    b"sip:@",
    b"sip:a@b:99999",
    b"sip:[::1",
    b"<sip:a@b",
    b"SIP/2.0/UDP",
    b"SIP/2.0/UDP h:",
    b";;;",
    b"a=b=c",
    b"*",
    b"\x00",
    b"1 INVITE",
    b"\xff\xfe",
]


def _value_op(data: bytes, rng: random.Random) -> bytes:
    """Replace the value of a random header line, or a parameter or token inside it."""
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    name, colon, value = lines[i].partition(b":")
    new = rng.choice(_VALUES)
    if colon and value and rng.random() < 0.5:
        # Replace one piece between separators, keeping the rest of the value.
        pieces = value.replace(b";", b"\0;").replace(b"=", b"\0=").split(b"\0")
        j = rng.randrange(len(pieces))
        pieces[j] = pieces[j][:1] + new if pieces[j][:1] in (b";", b"=") else new
        value = b"".join(pieces)
    else:
        value = b" " + new + (b"\r" if value.endswith(b"\r") else b"")
    lines[i] = name + b":" + value if colon else new
    return b"\n".join(lines)


def mutate(data: bytes, rng: random.Random, seeds: list[bytes] | None = None) -> bytes:
    """Apply 1-4 random mutations: bit flips, truncation, line deletion/duplication/swap,
    insertion of CR/LF/NUL/high bytes and SIP separators, splicing with another seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 2:  # insert an interesting token
            i = rng.randrange(n + 1)
            buf[i:i] = rng.choice(_INTERESTING)
        elif op == 3 and n:  # delete a range
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 16)]
        elif op == 4:
            buf = bytearray(_line_op(bytes(buf), rng))
        elif op == 5 and n:  # random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 6 and seeds:  # splice with another seed
            other = rng.choice(seeds)
            cut = rng.randrange(n + 1)
            buf = buf[:cut] + other[rng.randrange(len(other) + 1) :]
        elif op == 7 and n:  # duplicate a range
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            buf[j:j] = buf[i:j]
        elif op >= 8 and n:  # header-aware: replace a value or a parameter
            buf = bytearray(_value_op(bytes(buf), rng))
    return bytes(buf)


# --- the property under test --------------------------------------------------------------


def check_one(data: bytes) -> None:
    """Raise AssertionError (or whatever escaped) if the parser breaks its contract."""
    try:
        msg = parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status <= 599, exc.status
        msg = None
    if msg is not None:
        wire = msg.serialize()
        again = parse_message(wire)  # must parse: we produced it
        assert again.serialize() == wire, "serialize(parse(serialize(x))) is not stable"
        # The structured accessors may refuse, but only with ParseError.
        for getter in (
            lambda: msg.vias,
            lambda: msg.contacts,
            lambda: msg.from_,
            lambda: msg.to,
            lambda: msg.cseq,
        ):
            with contextlib.suppress(ParseError):
                getter()
        if isinstance(msg, Request):
            with contextlib.suppress(ParseError):
                validate_for_uas(msg)
    # The stream framer sees the same bytes cut in two.
    sp = StreamParser()
    try:
        cut = len(data) // 2
        sp.feed(data[:cut])
        sp.feed(data[cut:])
    except ParseError:
        pass
    # The header value parsers, on a line of the input.
    text = data.decode("utf-8", "surrogateescape")
    for line in text.split("\n")[:3]:
        value = line.partition(":")[2]
        funcs: tuple[Callable[[str], object], ...] = (parse_uri, parse_name_addr, parse_via)
        for func in funcs:
            for item in split_list(value)[:2] or [value]:
                with contextlib.suppress(ParseError):
                    func(item)


def run(iterations: int, seed: int, time_limit: float, *, verbose: bool = False) -> int:
    """Run the mutation loop; return the number of iterations done. Raises on failure,
    after printing the failing input."""
    rng = random.Random(seed)
    seeds = load_seeds()
    deadline = time.monotonic() + time_limit
    done = 0
    for done in range(1, iterations + 1):
        data = mutate(rng.choice(seeds), rng, seeds)
        try:
            check_one(data)
        except Exception:
            print(f"FAILED on iteration {done} (seed {seed}); input:", file=sys.stderr)
            print(repr(data), file=sys.stderr)
            raise
        if done % 1000 == 0 and time.monotonic() > deadline:
            break
    if verbose:
        print(f"fuzz_sip_parser: {done} iterations, seed {seed}, no failure")
    return done


def _atheris_main(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    atheris = importlib.import_module("atheris")

    def test_one_input(data: bytes) -> None:
        check_one(data)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--atheris" in argv:
        argv.remove("--atheris")
        _atheris_main([sys.argv[0], *argv])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds (bound)")
    args = parser.parse_args(argv)
    try:
        run(args.iterations, args.seed, args.time_limit, verbose=True)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
