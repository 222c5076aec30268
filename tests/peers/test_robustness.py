"""Robustness of a running Switchboard server: fuzzed datagrams, TCP streams, RFC 4475.

Every message comes from the corpus of messages nobody on this project wrote
(``/work/shared/corpus``: real captures and the RFC 4475 torture tests), with every address
moved to 127.0.0.1 by :func:`tests.peers.mutate.rewrite_addresses` and the Via lines never
mutated, so whatever the server answers comes back to the test's own socket.

After each run the server must still be alive, answer OPTIONS with 200, and its JSON log must
hold no traceback and no error-level event. The fuzz seed is fixed (override with
``SB_FUZZ_SEED``) so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.peers.mutate import (
    CORPUS,
    Mutator,
    load_corpus,
    rebranch,
    rewrite_addresses,
    server_problems,
    via_line_spans,
)
from tests.peers.switchboard import Switchboard, options_ping, wait_for

pytestmark = pytest.mark.peers

SEED = int(os.environ.get("SB_FUZZ_SEED", "4475"))
# Captured REGISTERs carry digest credentials that fail here; every test runs from 127.0.0.1,
# so with the default throttle the fuzz would get the test's own address blocked (and every
# later request answered 403). The throttle has its own test (test_security.py).
NO_THROTTLE = {"max_failures": 1_000_000, "failure_window": 1, "block_seconds": 1}


# -- fixtures and helpers ---------------------------------------------------------------


def assert_healthy(sb: Switchboard, wait: float = 30.0) -> None:
    """Alive, answering OPTIONS (after draining any backlog), and no crash in the log."""
    assert sb.proc is not None and sb.proc.poll() is None, sb.log_text()[-3000:]
    wait_for(lambda: options_ping(sb.sip_port, timeout=1.0) == 200, wait, "OPTIONS 200")
    assert sb.proc.poll() is None
    problems = server_problems(sb.log_events(), sb.log_text())
    assert not problems, "\n".join(problems[:5])


def tcp_options(port: int, timeout: float = 3.0) -> int | None:
    """OPTIONS over a fresh TCP connection; the status code of the answer, or None."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        lport = c.getsockname()[1]
        c.sendall(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:ping@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf and time.monotonic() < deadline:
            try:
                chunk = c.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
    try:
        return int(buf.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


class Drain:
    """A reader thread that empties a UDP socket and counts what came back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.count = 0
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            while True:
                try:
                    data = self.sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                self.count += 1
                if data.startswith(b"SIP/2.0 "):
                    try:
                        code = int(data[8:11])
                    except ValueError:
                        code = -1
                    self.statuses[code] = self.statuses.get(code, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- 1. fuzzed datagrams ----------------------------------------------------------------


def fuzz_datagrams(port: int, n: int, seed: int) -> Iterator[bytes]:
    """``n`` datagrams: random bytes (a few near 64 KB) and mutated corpus messages."""
    seeds = load_corpus(port)
    mut = Mutator(seed)
    rng = random.Random(seed ^ 0x5EED)
    big_at = set(rng.sample(range(n), 6))
    for i in range(n):
        if i in big_at:
            size = rng.choice([65507, 65000, 64 * 1024 - 100])
            if rng.random() < 0.5:
                yield rng.randbytes(size)
            else:  # a real message padded past every cap, with a header line of junk
                base = rng.choice(seeds)
                cut = base.find(b"\r\n") + 2
                pad = b"X-Pad: " + b"a" * (size - len(base) - 9) + b"\r\n"
                yield base[:cut] + pad + base[cut:]
            continue
        r = rng.random()
        if r < 0.25:
            yield mut.random_bytes(2048)
        elif r < 0.30:
            # Random bytes that start like SIP, so they get past the first-line sniffing.
            head = rng.choice(
                [
                    b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\n",
                    b"SIP/2.0 200 OK\r\n",
                    b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: ",
                ]
            )
            yield head + mut.random_bytes(512)
        else:
            msg = rng.choice(seeds)
            if rng.random() < 0.5:
                msg = rebranch(msg, f"-fz{i}")
            yield mut.mutate(msg)


def test_fuzz_datagrams(server_factory: Callable[..., Switchboard]) -> None:
    sb = server_factory(auth=NO_THROTTLE)
    total = 20_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        drain = Drain(sock)
        dest = ("127.0.0.1", sb.sip_port)
        sent = 0
        try:
            # About 2,500 datagrams/s: bursts of 50, then a pause for the server to catch up.
            for i, data in enumerate(fuzz_datagrams(sock.getsockname()[1], total, SEED)):
                try:
                    sock.sendto(data, dest)
                    sent += 1
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError as exc:  # EMSGSIZE would be a bug in the generator
                    raise AssertionError(f"datagram {i} ({len(data)} bytes): {exc}") from exc
                if i % 50 == 49:
                    time.sleep(0.02)
                    if sb.proc is not None and sb.proc.poll() is not None:
                        break
            assert_healthy(sb)
        finally:
            drain.stop()
    assert sent >= total - 100
    events = sb.log_events()
    parse_errors = sum(1 for e in events if e.get("event") == "sip_parse_error")
    print(
        f"fuzz: sent={sent} answers={drain.count} parse_errors={parse_errors} "
        f"statuses={sorted(drain.statuses.items())}"
    )
    # The fuzz reached the server: some messages parsed and were answered, some did not.
    assert drain.count > 100, (drain.count, drain.statuses)
    assert parse_errors > 100, parse_errors
    assert not any(500 <= code < 600 and code not in (501, 505, 513) for code in drain.statuses), (
        drain.statuses
    )


def test_fuzz_tcp_streams(server_factory: Callable[..., Switchboard]) -> None:
    sb = server_factory(auth=NO_THROTTLE)
    port = sb.sip_port
    mut = Mutator(SEED + 1)
    rng = random.Random(SEED + 1)
    reconnects = 0
    answers = 0
    for conn_no in range(4):
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        seeds = load_corpus(c.getsockname()[1])
        for i in range(75):
            msg = mut.mutate(rebranch(rng.choice(seeds), f"-tcp{conn_no}x{i}"))
            try:
                c.sendall(msg)
                r, _, _ = select.select([c], [], [], 0.005)
                if r:
                    data = c.recv(65535)
                    if not data:
                        raise ConnectionResetError
                    answers += data.count(b"SIP/2.0 ")
            except OSError:
                # The server dropped the connection (framing lost, RFC 3261 §18.3): reconnect.
                c.close()
                reconnects += 1
                c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.close()

    # Streams that break framing on purpose: the server must drop them, not buffer forever.
    def options_with(content_length: bytes) -> bytes:
        return (
            b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK" + uuid.uuid4().hex.encode() + b"\r\n"
            b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
            b"Call-ID: " + uuid.uuid4().hex.encode() + b"\r\nCSeq: 1 OPTIONS\r\n"
            b"Max-Forwards: 70\r\nContent-Length: " + content_length + b"\r\n\r\n"
        ) + b"x" * 100

    # (bytes, must the server close the connection?)
    breakers: list[tuple[bytes, bool]] = [
        (b"A" * 200_000, True),  # no end of head in sight: past the buffer cap
        (options_with(b"-5"), True),  # RFC 4475 §3.1.2.3: framing is gone, close
        (options_with(b"99999999999"), True),  # more than any message may hold
        (options_with(b"5, 7"), True),  # RFC 4475 §3.3.9: several values, close
        (options_with(b"50000"), False),  # §3.1.2.2 over TCP: may wait for the rest
        (b"\x00\xff" * 40_000, True),
        (b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 20_000, True),
    ]
    dropped = []
    for data, must_close in breakers:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            try:
                c.sendall(data)
            except OSError:
                dropped.append(True)
                continue
            deadline = time.monotonic() + (5 if must_close else 0.5)
            closed = False
            while time.monotonic() < deadline and not closed:
                try:
                    chunk = c.recv(65535)
                except TimeoutError:
                    break
                except OSError:
                    closed = True
                    break
                closed = not chunk
            dropped.append(closed)
    print(f"tcp: answers={answers} reconnects={reconnects} dropped={dropped}")
    # Unframeable streams must cost the connection (bounded buffers, RFC 3261 §18.3).
    for (data, must_close), closed in zip(breakers, dropped, strict=True):
        if must_close:
            assert closed, data[:120]
    assert_healthy(sb)
    assert tcp_options(port) == 200
    assert answers + reconnects > 0


# -- 2. RFC 4475 torture messages over the wire -------------------------------------------

CHALLENGED_INVITE = frozenset({401, 407})
CHALLENGED_REGISTER = frozenset({401, 407})
SILENT = None

# name -> (final statuses we accept, None meaning "no answer at all"), why.
# Switchboard is a B2BUA: towards the phone it is a UAS and a registrar, never a proxy. It
# authenticates REGISTER and INVITE before looking further, which RFC 3261 §8.2 / §22.1
# allows, so a valid INVITE without credentials is answered 407 and a REGISTER 401.
TORTURE: dict[str, tuple[frozenset[int | None], str]] = {
    # §3.1.1 valid messages: an answer, never 5xx (except 501 for unknown methods).
    "wsinv": (
        frozenset({481} | CHALLENGED_INVITE),
        "§3.1.1.1 valid; carries a To tag, so a UAS without that dialog answers 481",
    ),
    "intmeth": (frozenset({501, 405}), "§3.1.1.2 unknown method: 501 (with Allow)"),
    "esc01": (CHALLENGED_INVITE, "§3.1.1.3 valid INVITE with escapes: challenged"),
    "escnull": (CHALLENGED_REGISTER, "§3.1.1.4 valid REGISTER with %00 in contacts: challenged"),
    "esc02": (frozenset({501, 405}), "§3.1.1.5 RE%47IST%45R is an unknown method: 501"),
    "lwsdisp": (frozenset({200}), "§3.1.1.6 valid OPTIONS (no LWS before <): 200"),
    "longreq": (CHALLENGED_INVITE, "§3.1.1.7 valid INVITE with long values: challenged"),
    "dblreq": (
        CHALLENGED_REGISTER,
        "§3.1.1.8 REGISTER + trailing junk in one datagram: REGISTER handled, junk ignored",
    ),
    "semiuri": (frozenset({200, 404}), "§3.1.1.9 valid OPTIONS; user part holds ';'"),
    "transports": (frozenset({200}), "§3.1.1.10 valid OPTIONS with unknown Via transports"),
    "mpart01": (
        frozenset({405, 415, 501} | CHALLENGED_INVITE),
        "§3.1.1.11 valid MESSAGE (multipart): we do not take MESSAGE, 405 with Allow",
    ),
    "unreason": (frozenset({SILENT}), "§3.1.1.12 a stray 200 response: absorbed silently"),
    "noreason": (frozenset({SILENT}), "§3.1.1.13 a stray 100 response: absorbed silently"),
    # §3.1.2 invalid messages: 400 (505 for the version); liberal acceptance where the RFC
    # allows it. Responses are dropped.
    "badinv01": (frozenset({400}), "§3.1.2.1 extraneous header separators: 400"),
    "clerr": (frozenset({400}), "§3.1.2.2 Content-Length larger than the datagram: 400"),
    "ncl": (frozenset({400}), "§3.1.2.3 negative Content-Length: 400"),
    "scalar02": (frozenset({400}), "§3.1.2.4 overlarge CSeq / Expires / Max-Forwards: 400"),
    "scalarlg": (frozenset({SILENT}), "§3.1.2.5 response with overlarge values: drop it"),
    "quotbal": (frozenset({400} | CHALLENGED_INVITE), "§3.1.2.6 unterminated quote: 400"),
    "ltgtruri": (frozenset({400} | CHALLENGED_INVITE), "§3.1.2.7 <> around the Request-URI: 400"),
    "lwsruri": (frozenset({400} | CHALLENGED_INVITE), "§3.1.2.8 LWS inside the Request-URI: 400"),
    "lwsstart": (frozenset({400} | CHALLENGED_INVITE), "§3.1.2.9 several SP in request line: 400"),
    "trws": (frozenset({400, 200}), "§3.1.2.10 trailing SP after SIP/2.0 (OPTIONS): 400"),
    "escruri": (
        frozenset({400} | CHALLENGED_INVITE),
        "§3.1.2.11 escaped headers in the Request-URI: 400, or ignore them",
    ),
    "baddate": (
        frozenset({400} | CHALLENGED_INVITE),
        "§3.1.2.12 bad Date time zone: ignore the Date (or 400)",
    ),
    "regbadct": (
        frozenset({400} | CHALLENGED_REGISTER),
        "§3.1.2.13 Contact with URI parameters outside <>: 400 (or infer the <>)",
    ),
    "badaspec": (frozenset({400, 200}), "§3.1.2.14 spaces inside addr-spec (OPTIONS): 400"),
    "baddn": (frozenset({400, 200}), "§3.1.2.15 non-token display name (OPTIONS): 400"),
    "badvers": (frozenset({505}), "§3.1.2.16 SIP/7.0: 505"),
    "mismatch01": (frozenset({400}), "§3.1.2.17 CSeq method differs from the method: 400"),
    "mismatch02": (frozenset({400, 501}), "§3.1.2.18 unknown method and CSeq mismatch: 501/400"),
    "bigcode": (frozenset({SILENT}), "§3.1.2.19 response with code 4294967301: drop it"),
    # §3.2 transaction layer.
    "badbranch": (
        frozenset({400, 200}),
        "§3.2.1 branch is just the cookie: 400, or RFC 2543 matching and 200",
    ),
    # §3.3 application layer.
    "insuf": (
        frozenset({400, SILENT}),
        "§3.3.1 no Call-ID/From/To: ideally 400, but a response cannot be built without "
        "them, so silence is legal",
    ),
    "unkscm": (frozenset({416}), "§3.3.2 unknown Request-URI scheme: 416"),
    "novelsc": (frozenset({416, 404}), "§3.3.3 soap.beep: Request-URI: 416 (or 404)"),
    "unksm2": (
        frozenset({400} | CHALLENGED_REGISTER),
        "§3.3.4 To is not a SIP AOR: registrar answers 400 (after authentication)",
    ),
    "bext01": (frozenset({420}), "§3.3.5 Require: nothingSupportedHere: UAS answers 420"),
    "invut": (
        frozenset({415} | CHALLENGED_INVITE),
        "§3.3.6 unknown Content-Type: 415 with Accept (after authentication)",
    ),
    "regaut01": (
        frozenset({405, 200} | CHALLENGED_REGISTER),
        "§3.3.7 unknown Authorization scheme: ignore it and challenge (401)",
    ),
    "multi01": (frozenset({400}), "§3.3.8 several values in single-value headers: 400"),
    "mcl01": (frozenset({400}), "§3.3.9 several Content-Length values: 400"),
    "bcast": (frozenset({SILENT}), "§3.3.10 200 with a broadcast Via: discard"),
    "zeromf": (frozenset({200, 483}), "§3.3.11 Max-Forwards 0 at an endpoint: OPTIONS 200"),
    "cparam01": (frozenset({200} | CHALLENGED_REGISTER), "§3.3.12 REGISTER, contact-param: ok"),
    "cparam02": (frozenset({200} | CHALLENGED_REGISTER), "§3.3.13 REGISTER, url-parameter: ok"),
    "regescrt": (
        frozenset({200} | CHALLENGED_REGISTER),
        "§3.3.14 REGISTER with an escaped header in the Contact URI: ok",
    ),
    "sdp01": (
        frozenset({406} | CHALLENGED_INVITE),
        "§3.3.15 Accept excludes application/sdp: 406 (after authentication)",
    ),
    # §3.4 backward compatibility.
    "inv2543": (
        frozenset({400} | CHALLENGED_INVITE),
        "§3.4.1 RFC 2543 INVITE (no branch, no tags): accept (challenged) or 400",
    ),
    # Not in the RFC text: the tarball's extra file, a request line without SIP-Version.
    "test": (frozenset({400, SILENT}), "malformed request line: 400 or silence"),
}


def _status(data: bytes) -> int | None:
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _cseq_method(data: bytes) -> bytes | None:
    for line in data.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"cseq":
            parts = value.split()
            return parts[-1] if parts else None
    return None


@pytest.fixture(scope="module")
def torture_answers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Switchboard, dict[str, list[bytes]]]]:
    """Send every RFC 4475 message once, each from its own socket; collect what came back."""
    from tests.peers.conftest import free_udp_port

    workdir = tmp_path_factory.mktemp("torture")
    sb = Switchboard(workdir, free_udp_port(), auth=NO_THROTTLE).start()
    socks: dict[str, socket.socket] = {}
    try:
        for path in sorted((CORPUS / "rfc4475").glob("*.dat")):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            socks[path.stem] = s
            s.sendto(
                rewrite_addresses(path.read_bytes(), s.getsockname()[1]), ("127.0.0.1", sb.sip_port)
            )
            time.sleep(0.01)
        answers: dict[str, list[bytes]] = {name: [] for name in socks}
        deadline = time.monotonic() + 2.0  # finals come at once; silence needs a wait
        while time.monotonic() < deadline:
            r, _, _ = select.select(list(socks.values()), [], [], 0.1)
            for s in r:
                name = next(k for k, v in socks.items() if v is s)
                with contextlib.suppress(BlockingIOError):
                    answers[name].append(s.recv(65535))
        yield sb, answers
    finally:
        for s in socks.values():
            s.close()
        sb.stop()


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_torture_messages_over_the_wire(
    name: str, torture_answers: tuple[Switchboard, dict[str, list[bytes]]]
) -> None:
    sb, answers = torture_answers
    allowed, why = TORTURE[name]
    got = answers[name]
    finals = [d for d in got if (_status(d) or 0) >= 200]
    # Retransmissions of the same final are fine (no ACK from us); different finals are not.
    first_lines = {d.split(b"\r\n", 1)[0] for d in finals}
    assert len(first_lines) <= 1, (name, first_lines)
    outcome = _status(finals[0]) if finals else None
    assert outcome in allowed, (
        f"{name}: got {outcome}, want one of {sorted(map(str, allowed))}: {why}"
    )
    for d in got:
        assert _status(d) is not None, d[:200]
    if name == "dblreq" and finals:
        assert _cseq_method(finals[0]) == b"REGISTER", finals[0][:300]
    assert_healthy(sb, wait=10)


def test_torture_table_covers_corpus() -> None:
    names = {p.stem for p in (CORPUS / "rfc4475").glob("*.dat")}
    assert names == set(TORTURE)


def test_mutations_never_touch_via_lines() -> None:
    """The rule the fuzz relies on: a mutated message keeps its Via lines byte for byte (or
    loses them whole, when a truncation cuts before them), and every address is loopback."""
    mut = Mutator(SEED)
    for seed_msg in load_corpus(5999):
        vias = {seed_msg[s:e].rstrip(b"\r\n") for s, e in via_line_spans(seed_msg)}
        for via in vias:
            assert b"127.0.0.1:5999" in via, via
        for _ in range(20):
            out = mut.mutate(seed_msg)
            for s, e in via_line_spans(out):
                assert out[s:e].rstrip(b"\r\n") in vias, (seed_msg[:300], out[:600])
