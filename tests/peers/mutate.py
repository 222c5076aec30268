"""Address rewriting and message mutation for robustness tests against a running server.

Captured and torture messages carry the addresses of their original traffic. Before one is
sent anywhere, :func:`rewrite_addresses` moves every address in it to loopback: IPv4 and IPv6
literals, host names in SIP/SIPS URIs, Via sent-by hosts, ``received``/``maddr`` parameters
and SDP ``c=``/``o=`` lines. Every port next to an address, and every Via sent-by, becomes
the test's own socket, so anything the server sends in reply lands on that socket. The
Content-Length is fixed when the body changed length, unless the message lied about its
length to begin with (torture vectors such as ``clerr`` and ``ncl`` must stay invalid).

:class:`Mutator` then damages a message the way a fuzzer would (bit flips, truncation, line
deletion and duplication, junk header values, CR/LF/NUL insertion, huge Content-Length,
repeated headers) but never touches the Via header lines: whatever the server answers still
goes to the test socket.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "CORPUS",
    "Mutator",
    "load_corpus",
    "rebranch",
    "rewrite_addresses",
    "server_problems",
    "via_line_spans",
]

CORPUS = Path("/work/shared/corpus")
LOOPBACK = "127.0.0.1"
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4

_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|" + _LABEL + rb"(?:\." + _LABEL + rb")*\.?)"
_PORT = rb"(?:[ \t]*:[ \t]*\d{1,5})?"
# sip:user@host:port / sips:host — the userinfo part (which may hold ';' and escaped '@')
# ends at the first literal '@'; it never crosses '<', '>', '"' or white space.
_URI_RE = re.compile(rb"(?i)(\bsips?:(?:[^@\s<>\",]*@)?)(" + _HOST + rb")(" + _PORT + rb")")
# Via sent-by: "SIP / 2.0 / UDP host:port", with LWS (and folding) allowed around the slashes.
_VIA_RE = re.compile(
    rb"(?i)(SIP\s*/\s*\d+\.\d+\s*/\s*[A-Za-z0-9-]+\s+)(" + _HOST + rb")(" + _PORT + rb")"
)
_PARAM_RE = re.compile(rb"(?i)(;\s*(?:received|maddr)\s*=\s*)(" + _HOST + rb")")
_SDP_ADDR_RE = re.compile(rb"(?i)(\bIN[ \t]+)IP[46]([ \t]+)[^\s/]+")
_IPV4_RE = re.compile(rb"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(" + _PORT + rb")(?![\d.])")
_IPV6_RE = re.compile(rb"\[[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\](" + _PORT + rb")")
_CL_RE = re.compile(rb"(?im)^((?:content-length|l)[ \t]*:[ \t]*)(-?\d+)")


def _split(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, separator, body) at the first empty line; sep is b"" when there is none."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return data[:i], sep, data[i + len(sep) :]
    return data, b"", b""


def _rewrite_text(text: bytes, addr: bytes) -> bytes:
    def host_port(m: re.Match[bytes]) -> bytes:
        return m.group(1) + (addr if m.group(3) else LOOPBACK.encode())

    # Via sent-by always gets the port: messages from different test sockets then never look
    # like retransmissions of each other (RFC 3261 §17.2.3 matches on branch + sent-by).
    text = _VIA_RE.sub(lambda m: m.group(1) + addr, text)
    text = _URI_RE.sub(host_port, text)
    text = _PARAM_RE.sub(lambda m: m.group(1) + LOOPBACK.encode(), text)
    text = _SDP_ADDR_RE.sub(lambda m: m.group(1) + b"IP4" + m.group(2) + LOOPBACK.encode(), text)
    text = _IPV6_RE.sub(lambda m: addr if m.group(1) else LOOPBACK.encode(), text)
    text = _IPV4_RE.sub(lambda m: addr if m.group(1) else LOOPBACK.encode(), text)
    return text


def rewrite_addresses(data: bytes, port: int) -> bytes:
    """Move every address in a SIP message to 127.0.0.1 (ports next to them to ``port``)."""
    addr = f"{LOOPBACK}:{port}".encode()
    head, sep, body = _split(data)
    new_head = _rewrite_text(head, addr)
    new_body = _rewrite_text(body, addr) if sep else body
    if sep and len(new_body) != len(body):
        m = _CL_RE.search(new_head)
        if m is not None and int(m.group(2)) == len(body):
            new_head = new_head[: m.start(2)] + str(len(new_body)).encode() + new_head[m.end(2) :]
    return new_head + sep + new_body


def via_line_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of the Via header lines (with their continuation lines and
    line ends) in the head of ``data``."""
    head, _, _ = _split(data)
    spans: list[tuple[int, int]] = []
    pos = 0
    in_via = False
    for line in head.splitlines(keepends=True):
        start, end = pos, pos + len(line)
        pos = end
        if line[:1] in (b" ", b"\t") and in_via:
            spans[-1] = (spans[-1][0], end)
            continue
        in_via = re.match(rb"(?i)(via|v)[ \t]*:", line) is not None
        if in_via:
            spans.append((start, end))
    return spans


def _via_lines(data: bytes) -> set[bytes]:
    return {data[s:e].rstrip(b"\r\n") for s, e in via_line_spans(data)}


def rebranch(data: bytes, token: str) -> bytes:
    """Give the top Via a fresh branch (so the server sees a new transaction, not a
    retransmission of the seed). Only the branch value changes; addresses stay."""
    return re.sub(rb"(?i)(branch\s*=\s*z9hG4bK)[^\s;,]*", rb"\g<1>" + token.encode(), data, count=1)


def load_corpus(port: int) -> list[bytes]:
    """Every real and RFC 4475 message, addresses rewritten to 127.0.0.1 (ports to ``port``)."""
    files = sorted((CORPUS / "real").glob("*.sip")) + sorted((CORPUS / "rfc4475").glob("*.dat"))
    return [rewrite_addresses(p.read_bytes(), port) for p in files]


_JUNK_VALUES = [
    b"",
    b";;,;,,",
    b"<<<>>>",
    b'"unterminated',
    b"sip:",
    b"<sip:@:>",
    b"99999999999999999999999",
    b"-1",
    b"\xff\xfe\xfd",
    b"%00%zz%",
    b"SIP/2.0 200 OK",
    b"a" * 5000,
    b"Digest " + b"x=" * 300,
    b'Digest realm="switchboard", nonce="AAAA", response="zz", uri="sip:x"',
]


class Mutator:
    """Deterministic (seeded) mutations that leave every Via line byte-for-byte intact."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ops: list[Callable[[bytes], bytes]] = [
            self.bit_flips,
            self.truncate,
            self.delete_line,
            self.duplicate_line,
            self.junk_value,
            self.insert_control,
            self.huge_content_length,
            self.repeat_header,
            self.swap_lines,
        ]

    # -- helpers -------------------------------------------------------------------------

    def _free_positions(self, data: bytes) -> list[tuple[int, int]]:
        """Byte ranges outside the Via lines."""
        ranges: list[tuple[int, int]] = []
        pos = 0
        for s, e in via_line_spans(data):
            if s > pos:
                ranges.append((pos, s))
            pos = e
        if pos < len(data):
            ranges.append((pos, len(data)))
        return ranges

    def _pick_pos(self, data: bytes) -> int | None:
        ranges = self._free_positions(data)
        if not ranges:
            return None
        total = sum(e - s for s, e in ranges)
        k = self.rng.randrange(total)
        for s, e in ranges:
            if k < e - s:
                return s + k
            k -= e - s
        return None

    def _lines(self, data: bytes) -> tuple[list[bytes], set[int], bytes]:
        """Head lines (with line ends), indices of Via lines, and the rest (separator+body)."""
        head, sep, body = _split(data)
        lines = (
            (head + sep[: len(sep) // 2]).splitlines(keepends=True)
            if sep
            else (head.splitlines(keepends=True))
        )
        rest = sep[len(sep) // 2 :] + body if sep else b""
        protected: set[int] = set()
        in_via = False
        for i, line in enumerate(lines):
            if line[:1] in (b" ", b"\t") and in_via:
                protected.add(i)
                continue
            in_via = re.match(rb"(?i)(via|v)[ \t]*:", line) is not None
            if in_via:
                protected.add(i)
        return lines, protected, rest

    def _free_line(self, lines: list[bytes], protected: set[int], skip_first: bool) -> int | None:
        choices = [i for i in range(1 if skip_first else 0, len(lines)) if i not in protected]
        return self.rng.choice(choices) if choices else None

    # -- mutations -----------------------------------------------------------------------

    def bit_flips(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            p = self._pick_pos(data)
            if p is not None:
                buf[p] ^= 1 << self.rng.randrange(8)
        return bytes(buf)

    def truncate(self, data: bytes) -> bytes:
        p = self._pick_pos(data)
        if p is None:
            return data
        # Cut outside the Via lines: before them (no Via left at all) or after them.
        return data[:p]

    def delete_line(self, data: bytes) -> bytes:
        lines, protected, rest = self._lines(data)
        i = self._free_line(lines, protected, skip_first=self.rng.random() < 0.8)
        if i is None:
            return data
        del lines[i]
        return b"".join(lines) + rest

    def duplicate_line(self, data: bytes) -> bytes:
        lines, protected, rest = self._lines(data)
        i = self._free_line(lines, protected, skip_first=False)
        if i is None:
            return data
        lines.insert(i, lines[i])
        return b"".join(lines) + rest

    def swap_lines(self, data: bytes) -> bytes:
        lines, protected, rest = self._lines(data)
        i = self._free_line(lines, protected, skip_first=False)
        j = self._free_line(lines, protected, skip_first=False)
        if i is None or j is None:
            return data
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines) + rest

    def junk_value(self, data: bytes) -> bytes:
        lines, protected, rest = self._lines(data)
        i = self._free_line(lines, protected, skip_first=True)
        if i is None or b":" not in lines[i]:
            return data
        name = lines[i].split(b":", 1)[0]
        end = b"\r\n" if lines[i].endswith(b"\r\n") else b"\n"
        junk = self.rng.choice(_JUNK_VALUES)
        if self.rng.random() < 0.3:
            junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 64)))
        lines[i] = name + b": " + junk + end
        return b"".join(lines) + rest

    def insert_control(self, data: bytes) -> bytes:
        out = data
        for _ in range(self.rng.randint(1, 4)):
            p = self._pick_pos(out)
            if p is None:
                return out
            ins = self.rng.choice([b"\r", b"\n", b"\x00", b"\r\n", b"\r\n\r\n", b"\x00" * 16])
            out = out[:p] + ins + out[p:]
        return out

    def huge_content_length(self, data: bytes) -> bytes:
        value = self.rng.choice(
            [b"4294967296", b"99999999999999999999", b"65536", b"-1", b"1e9", b"0x10", b"  7 7"]
        )
        if _CL_RE.search(data):
            return _CL_RE.sub(lambda m: m.group(1) + value, data, count=1)
        lines, _, rest = self._lines(data)
        lines.insert(1, b"Content-Length: " + value + b"\r\n")
        return b"".join(lines) + rest

    def repeat_header(self, data: bytes) -> bytes:
        lines, protected, rest = self._lines(data)
        i = self._free_line(lines, protected, skip_first=True)
        if i is None:
            return data
        n = self.rng.choice([2, 3, 10, 100, 500])
        lines[i : i + 1] = [lines[i]] * n
        return b"".join(lines) + rest

    def mutate(self, data: bytes, max_size: int = MAX_DATAGRAM) -> bytes:
        """One to three random mutations of ``data``, at most ``max_size`` bytes long."""
        vias = _via_lines(data)
        for _ in range(10):
            out = data
            for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                out = self.rng.choice(self.ops)(out)
            # Moving a folded line under a Via, or a flip that turns some header into "v:",
            # would change a Via after all: try again.
            if len(out) <= max_size and _via_lines(out) <= vias:
                return out
        return data

    def random_bytes(self, max_len: int = 2048) -> bytes:
        n = self.rng.randint(0, max_len)
        return self.rng.randbytes(n)


def server_problems(log_events: list[dict[str, object]], log_text: str) -> list[str]:
    """Crash signs in a Switchboard JSON log: tracebacks and error/critical events."""
    problems: list[str] = []
    if "Traceback" in log_text:
        i = log_text.index("Traceback")
        problems.append("Traceback in log: " + log_text[max(0, i - 300) : i + 1500])
    for ev in log_events:
        if str(ev.get("level", "")).lower() in ("error", "critical") or "exception" in ev:
            problems.append(f"error event: {ev}")
    return problems
