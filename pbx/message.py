"""SIP messages: parsing, serialization and the structured header values we use.

Theory of operation
-------------------
A SIP message (RFC 3261 §7) is a start line, header fields and an optional body. We parse
it in one pass into :class:`Request` or :class:`Response`, keeping every header as a
``(canonical name, raw value)`` pair in wire order. Nothing is interpreted eagerly except the
headers every layer needs (``Via``, ``CSeq``, ``Call-ID``, ``From``, ``To``,
``Content-Length``), which are validated here so that the transaction layer can rely on them.
Structured values (URIs, name-addr headers, Via) are parsed on demand by small total
functions (:func:`parse_uri`, :func:`parse_name_addr`, :func:`parse_via`).

Checks come in two levels. :func:`parse_message` refuses what no layer can work with: bad
framing, a malformed start line, a missing, duplicated or malformed Via, From, To, Call-ID,
CSeq, Max-Forwards or Content-Length, and a Request-URI that does not parse. What only an
element acting on a request reads (Contact, Route, Date, Expires, Content-Type, the scheme
and headers of the Request-URI) is checked by :func:`validate_for_uas`, which the server
calls before it acts. tests/unit/test_torture.py records, for each RFC 4475 torture message,
which level refuses it and what the transaction and application layers must still do.

Every input either parses or raises :class:`ParseError`, whose ``status`` is the SIP status a
server should answer with (400, 505, 413, 416…). The parser never raises anything else; the
hypothesis and fuzz tests (tests/unit/test_message_props.py, tests/fuzz/) hold it to that.

Implemented: RFC 3261 §7 (message format), §7.3.1 (header field format: LWS, folding, comma
lists), §7.3.3 (compact forms), §7.4.1 (Content-Length), §7.5 (framing, leading CRLFs),
§18.3 (framing on streams), §19.1 (SIP URIs and escapes), §20 (header names), §25.1 (ABNF);
§8.2.2 (UAS request checks: 416, 420 helpers); RFC 4475 (torture tests) behaviour.
Deliberate leniencies: bare LF line ends, a missing final empty line on a datagram, "#" and
an empty user part in SIP URIs, UTF-8 letters in unquoted display names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

__all__ = [
    "DEFAULT_URI_SCHEMES",
    "MAX_BODY_SIZE",
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "SipMessage",
    "StreamParser",
    "Uri",
    "Via",
    "canonical_name",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "reason_phrase",
    "split_list",
    "unsupported_extensions",
    "validate_for_uas",
]

# Size caps (STYLE.md §6): parsers are total and bounded.
MAX_MESSAGE_SIZE = 65535  # a UDP datagram cannot be larger; TCP messages share the cap
MAX_HEADERS = 256
MAX_BODY_SIZE = 60000
MAX_HEADER_LINE = 8192

SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 compact forms, plus the later RFCs that registered one.
_COMPACT: dict[str, str] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

# Header names whose canonical spelling is not plain Title-Case.
_SPECIAL_NAMES: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers that may appear at most once (RFC 3261 §20 and §7.3.1): a message with two
# of these is ambiguous and is rejected with 400.
_SINGLE: frozenset[str] = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards", "Content-Type", "Expires"}
)

# Headers whose value grammar is a comma-separated list (RFC 3261 §7.3.1). Authorization
# style headers are *not* lists even though they contain commas.
_LIST_HEADERS: frozenset[str] = frozenset(
    {
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Allow-Events",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Path",
        "Service-Route",
    }
)

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")

_REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC 3261 §21 reason phrase for ``status`` (or a class default)."""
    phrase = _REASONS.get(status)
    if phrase is not None:
        return phrase
    return {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}.get(
        status // 100, "Global Failure"
    )


class ParseError(ValueError):
    """A message or header value we cannot accept.

    ``status`` is what a server should answer (RFC 3261 §21.4); a response that fails to
    parse is simply dropped by the caller.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# canonical_name() runs for every header of every message: memoize the spellings seen.
# Bounded, so a peer inventing header names cannot grow it without limit.
_CANONICAL_CACHE: dict[str, str] = {}
_CANONICAL_CACHE_MAX = 2048


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: expands compact forms (RFC 3261 §7.3.3)."""
    cached = _CANONICAL_CACHE.get(name)
    if cached is not None:
        return cached
    if len(name) == 1 and name.lower() in _COMPACT:
        result = _COMPACT[name.lower()]
    else:
        low = name.lower()
        special = _SPECIAL_NAMES.get(low)
        if special is not None:
            result = special
        else:
            result = "-".join(part[:1].upper() + part[1:] for part in low.split("-"))
    if len(_CANONICAL_CACHE) < _CANONICAL_CACHE_MAX:
        _CANONICAL_CACHE[name] = result
    return result


def _is_digits(s: str) -> bool:
    """``1*DIGIT`` in the ASCII sense (``str.isdigit`` also accepts ``²`` and friends)."""
    return s.isascii() and s.isdigit()


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value at top-level commas (RFC 3261 §7.3.1).

    Commas inside quoted strings or ``<...>`` do not split. Empty elements are dropped.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            item = value[start:i].strip()
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        out.append(item)
    return out


# ---------------------------------------------------------------------------------------
# Parameters, URIs, name-addr, Via
# ---------------------------------------------------------------------------------------


def _split_semicolons(s: str) -> list[str]:
    """Split at ``;`` outside quoted strings."""
    if '"' not in s:
        return s.split(";")
    out: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(s):
        ch = s[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ";":
            out.append(s[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ParseError("unterminated quoted string in parameters")
    out.append(s[start:])
    return out


def parse_params(s: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` parameters (leading ``;`` optional).

    Names are lower-cased (RFC 3261 §7.3.1: parameter names are case-insensitive); values
    keep their case and quotes are removed. A flag parameter has the value ``None``.
    """
    params: dict[str, str | None] = {}
    s = s.strip()
    if not s:
        return params
    if s.startswith(";"):
        s = s[1:]
    for part in _split_semicolons(s):
        part = part.strip()
        if not part:
            raise ParseError("empty parameter")
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name or not _TOKEN_RE.match(name):
            raise ParseError(f"bad parameter name {name!r}")
        if eq:
            value = value.strip()
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    raise ParseError("bad quoted parameter value")
                value = _unquote(value)
            elif not value:
                raise ParseError(f"empty value for parameter {name!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    parts: list[str] = []
    for k, v in params.items():
        if v is None:
            parts.append(f";{k}")
        elif v == "" or any(c not in _TOKEN_CHARS and c not in ":[]" for c in v):
            parts.append(f';{k}="{_escape_quoted(v)}"')
        else:
            parts.append(f";{k}={v}")
    return "".join(parts)


def _unquote(q: str) -> str:
    inner = q[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _escape_quoted(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?\Z")


def _parse_hostport(s: str) -> tuple[str, int | None]:
    m = _HOST_RE.match(s)
    if m is None:
        raise ParseError(f"bad host {s!r}")
    host = m.group(1)
    port: int | None = None
    if m.group(2) is not None:
        port = int(m.group(2))
        if port > 65535:
            raise ParseError(f"port out of range in {s!r}")
    return host, port


@dataclass(slots=True)
class Uri:
    """A SIP or SIPS URI (RFC 3261 §19.1), or an opaque absolute URI of another scheme.

    ``user`` keeps its escapes as received (``%41`` stays ``%41``) so a URI serializes back to
    what the peer sent; :meth:`user_unescaped` gives the comparison form (§19.1.4).
    """

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None  # body of a non-SIP absolute URI (tel:, http:, …)

    @property
    def is_sip(self) -> bool:
        return self.opaque is None

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    def user_unescaped(self) -> str | None:
        return None if self.user is None else _percent_decode(self.user)

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else default_port

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for k, v in self.params.items():
            # URI parameters are escaped, never quoted (RFC 3261 §19.1.1): emit them raw.
            out.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)


def _percent_decode(s: str) -> str:
    if "%" not in s:
        return s
    out = bytearray()
    i = 0
    raw = s.encode("utf-8", "surrogateescape")
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) + 0 and i + 2 <= len(raw) - 1:
            try:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(b)
        i += 1
    return out.decode("utf-8", "surrogateescape")


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ). We also take a raw
# "#": phones send feature codes such as "*72#" unescaped, and it cannot be misread. An
# empty user ("sip:@host") is accepted too: real user agents send it (corpus 087-INVITE).
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%#]*\Z")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*\Z")
# Every character a SIP URI may hold unescaped (unreserved, reserved, "%", "[]" for IPv6
# references and in header values, and the "#" allowed above).
_SIP_URI_CHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%;/?:@&=+$,\[\]#]+\Z")
# absoluteURI (RFC 3261 §25.1, RFC 2396): printable ASCII without space, quotes and <>.
_OPAQUE_RE = re.compile(r"[\x21\x23-\x3b\x3d\x3f-\x7e]+\Z")


# uri-parameter pname / pvalue = 1*paramchar (RFC 3261 §25.1), escapes kept as received.
_PARAMCHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+\Z")


def _parse_uri_params(s: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in s.split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS_RE.match(name) or (eq and not _PARAMCHARS_RE.match(value)):
            raise ParseError(f"bad URI parameter {part[:40]!r}")
        params[name.lower()] = value if eq else None
    return params


# The everyday shape, ``sip:user@host:port;params`` without password or headers, in one
# match. Every class is a subset of what the general path below accepts, so a match gives
# the same Uri; anything else (passwords, headers, IPv6, odd case) takes the general path.
_COMMON_SIP_URI_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/%#]*)@)?([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    r"(?:;([A-Za-z0-9\-_.!~*'()%\[\]/:&+$;=]*))?\Z"
)


def parse_uri(s: str) -> Uri:
    """Parse a URI. SIP/SIPS URIs are taken apart; other schemes are kept opaque.

    RFC 3261 §19.1.1 / §25.1: ``sip:user:password@host:port;params?headers``. A raw "@" can
    only end the userinfo (it must be escaped everywhere else), so the *first* "@" splits
    userinfo from hostport even when the user part holds "?" or ";" (RFC 4475 §3.1.1.2).
    """
    s = s.strip()
    m = _COMMON_SIP_URI_RE.match(s)
    if m is not None:
        m_scheme, m_user, m_host, port_s, params_s = m.groups()
        m_port = int(port_s) if port_s is not None else None
        if m_port is None or m_port <= 65535:
            return Uri(
                scheme=m_scheme,
                host=m_host,
                user=m_user,
                port=m_port,
                params=_parse_uri_params(params_s) if params_s is not None else {},
            )
    scheme, colon, rest = s.partition(":")
    if not colon or not scheme or not _SCHEME_RE.match(scheme):
        raise ParseError(f"bad URI {s[:80]!r}")
    low = scheme.lower()
    if low not in ("sip", "sips"):
        if not _OPAQUE_RE.match(rest):
            raise ParseError(f"bad URI {s[:80]!r}")
        return Uri(scheme=low, opaque=rest)
    if not _SIP_URI_CHARS_RE.match(rest):
        raise ParseError(f"bad SIP URI {s[:80]!r}")
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, pw_colon, pw = userinfo.partition(":")
        if not _USER_RE.match(user):
            raise ParseError(f"bad user part in {s[:80]!r}")
        if pw_colon:
            if not _PASSWORD_RE.match(pw):
                raise ParseError(f"bad password in {s[:80]!r}")
            password = pw
    rest, qmark, headers = rest.partition("?")
    hostport, semi, params_s = rest.partition(";")
    host, port = _parse_hostport(hostport)
    params = _parse_uri_params(params_s) if semi else {}
    return Uri(
        scheme=low,
        host=host,
        user=user,
        password=password,
        port=port,
        params=params,
        headers=headers if qmark else None,
    )


@dataclass(slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` header value with its header parameters
    (From, To, Contact, Route, Record-Route, Refer-To…; RFC 3261 §20.10, §25.1)."""

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False  # ``Contact: *`` (RFC 3261 §10.2.2)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        disp = ""
        if self.display is not None:
            disp = f'"{_escape_quoted(self.display)}" '
        return f"{disp}<{self.uri}>{_format_params(self.params)}"


# display-name = *(token LWS) / quoted-string (RFC 3261 §25.1). Unquoted names may also hold
# UTF-8 letters: phones send them, and unlike "," or ";" they cannot confuse the parser.
_DISPLAY_WORD = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+"
_DISPLAY_TOKENS_RE = re.compile(rf"{_DISPLAY_WORD}(?:[ \t]+{_DISPLAY_WORD})*\Z")


def parse_name_addr(value: str) -> NameAddr:
    """Parse a name-addr / addr-spec with header parameters.

    Without angle brackets, everything after the first ``;`` belongs to the header, not the
    URI, and the URI may not contain ``?`` or ``,`` (RFC 3261 §20.10; RFC 4475 §3.1.2.13).
    Inside ``<...>`` no whitespace is allowed (LAQUOT/RAQUOT, §25.1; RFC 4475 §3.1.2.14), and
    an unquoted display name is tokens only (RFC 4475 §3.1.2.15).
    """
    v = value.strip()
    if v == "*":
        return NameAddr(uri=Uri(scheme="*"), wildcard=True)
    display: str | None = None
    if v.startswith('"'):
        i = 1
        n = len(v)
        while i < n:
            ch = v[i]
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                break
            i += 1
        if i >= n:
            raise ParseError("unterminated display name")
        display = _unquote(v[: i + 1])
        v = v[i + 1 :].lstrip()
        if not v.startswith("<"):
            raise ParseError("display name without <URI>")
    lt = v.find("<")
    if lt >= 0:
        if display is None and lt > 0:
            d = v[:lt].strip()
            if d:
                if not _DISPLAY_TOKENS_RE.match(d):
                    raise ParseError(f"bad display name {d[:40]!r}")
                display = d
        gt = v.find(">", lt)
        if gt < 0:
            raise ParseError("missing '>' in name-addr")
        inner = v[lt + 1 : gt]
        if inner[:1] in (" ", "\t") or inner[-1:] in (" ", "\t"):
            raise ParseError("whitespace inside <...>")
        uri = parse_uri(inner)
        rest = v[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise ParseError("garbage after '>'")
        return NameAddr(uri=uri, display=display, params=parse_params(rest) if rest else {})
    addr, semi, rest = v.partition(";")
    addr = addr.rstrip(" \t")
    if any(c in addr for c in " \t?,"):
        raise ParseError("addr-spec with whitespace, '?' or ',' must be enclosed in <>")
    uri = parse_uri(addr)
    return NameAddr(uri=uri, params=parse_params(rest) if semi else {})


@dataclass(slots=True)
class Via:
    """One Via header value (RFC 3261 §20.42, RFC 3581 for ``rport``)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        v = self.params.get("rport")
        return int(v) if v is not None and _is_digits(v) and len(v) <= 5 else None

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    def response_address(self, default_port: int = 5060) -> tuple[str, int]:
        """Where a response to this hop goes (RFC 3261 §18.2.2, RFC 3581 §4)."""
        host = self.received or self.host
        if host.startswith("["):
            host = host[1:-1]
        port = self.rport or self.port or default_port
        return host, port

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{_format_params(self.params)}"


_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*([0-9]{1,5}))?\s*(.*)\Z",
    re.S,
)


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from a comma list)."""
    m = _VIA_RE.match(value)
    if m is None:
        raise ParseError(f"bad Via {value!r}")
    name, version, transport, host, port_s, rest = m.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise ParseError(f"bad Via protocol in {value!r}")
    port = int(port_s) if port_s is not None else None
    if port is not None and port > 65535:
        raise ParseError("Via port out of range")
    rest = rest.strip()
    if rest and not rest.startswith(";"):
        raise ParseError(f"garbage in Via {value!r}")
    return Via(
        transport=transport.upper(),
        host=host,
        port=port,
        params=parse_params(rest) if rest else {},
        protocol=f"{name.upper()}/{version}",
    )


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


def _index_add(index: dict[str, str | tuple[str, ...]], name: str, value: str) -> None:
    # One line: the value itself; more: a tuple (a tuple of strings, unlike a list, is not
    # traversed by the garbage collector once it has survived one pass).
    prev = index.get(name)
    if prev is None:
        index[name] = value
    elif isinstance(prev, str):
        index[name] = (prev, value)
    else:
        index[name] = (*prev, value)


class SipMessage:
    """Headers and body shared by requests and responses.

    Headers are kept as ``[canonical name, value]`` pairs in wire order; lookups are by
    canonical name (compact forms are expanded on parse).

    Lookups go through an index (canonical name -> values in order) that the parser builds
    in the same pass as the header list, and the structured values every layer reads
    (``from_``, ``to``, ``top_via``, ``cseq``, ``contacts``, ``request_uri``) are parsed once
    and cached: a request is read by the parser's checks, the transaction layer, the TU and
    the response builder, and re-parsing From/To/Via each time was a quarter of the REGISTER
    path. Each cached value remembers the raw header string it came from and is used only
    while that very string is still the header's value, so a stale value is never returned.

    Two rules keep this right:

    * Change headers with :meth:`set`, :meth:`add`, :meth:`remove` and
      :meth:`set_top_via`. After mutating the ``headers`` list directly, call
      :meth:`headers_changed` (a change of the list's length or a new list is noticed anyway).
    * Parsed values returned by the properties are shared and **read-only**: copy before
      changing one (e.g. ``dict(na.params)``).
    """

    # Raw value and parsed value are separate slots rather than one tuple: messages live for
    # a transaction's lifetime, and every extra container is one more object for the
    # garbage collector to traverse.
    __slots__ = (
        "_contacts_raw",
        "_contacts_v",
        "_cseq_raw",
        "_cseq_v",
        "_from_raw",
        "_from_v",
        "_index",
        "_index_len",
        "_index_src",
        "_to_raw",
        "_to_v",
        "_via_raw",
        "_via_v",
        "body",
        "headers",
    )

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        # Canonical name -> its value, or a tuple of its values when it has several lines.
        self._index: dict[str, str | tuple[str, ...]] | None = None
        self._index_src: list[tuple[str, str]] | None = None
        self._index_len = 0
        # Parsed-value caches: the raw value parsed (None: nothing cached) and the result.
        self._from_raw: str | None = None
        self._from_v: NameAddr | None = None
        self._to_raw: str | None = None
        self._to_v: NameAddr | None = None
        self._via_raw: str | None = None
        self._via_v: Via | None = None
        self._cseq_raw: str | None = None
        self._cseq_v: tuple[int, str] = (0, "")
        self._contacts_raw: str | tuple[str, ...] | None = None
        self._contacts_v: list[NameAddr] | None = None

    # -- the header index ----------------------------------------------------------------

    def _idx(self) -> dict[str, str | tuple[str, ...]]:
        idx = self._index
        headers = self.headers
        if idx is not None and self._index_src is headers and self._index_len == len(headers):
            return idx
        idx = {}
        for k, v in headers:
            _index_add(idx, k, v)
        self._index = idx
        self._index_src = headers
        self._index_len = len(headers)
        return idx

    def headers_changed(self) -> None:
        """Forget the header index after the ``headers`` list was changed in place."""
        self._index = None

    # -- generic access ------------------------------------------------------------------

    def _first(self, name: str) -> str | None:
        """The first value of header ``name``, given in canonical spelling."""
        v = self._idx().get(name)
        return v if v is None or isinstance(v, str) else v[0]

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (any spelling), or ``None``."""
        v = self._idx().get(canonical_name(name))
        return v if v is None or isinstance(v, str) else v[0]

    def get_all(self, name: str) -> list[str]:
        """Every header line named ``name``, unsplit."""
        v = self._idx().get(canonical_name(name))
        if v is None:
            return []
        return [v] if isinstance(v, str) else list(v)

    def get_list(self, name: str) -> list[str]:
        """Every element of a comma-list header, across all its lines, in order."""
        v = self._idx().get(canonical_name(name))
        if v is None:
            return []
        if isinstance(v, str):
            return split_list(v)
        out: list[str] = []
        for line in v:
            out.extend(split_list(line))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one value (kept at the first one's place)."""
        name = canonical_name(name)
        self._index = None
        for i, (k, _) in enumerate(self.headers):
            if k == name:
                self.headers[i] = (name, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != name]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line; with ``first`` it goes before any line of the same name."""
        name = canonical_name(name)
        if first:
            self._index = None
            for i, (k, _) in enumerate(self.headers):
                if k == name:
                    self.headers.insert(i, (name, value))
                    return
            self.headers.insert(0, (name, value))
            return
        idx = self._index
        headers = self.headers
        if idx is not None and self._index_src is headers and self._index_len == len(headers):
            # Appending keeps the index valid: extend it instead of rebuilding it.
            _index_add(idx, name, value)
            self._index_len += 1
        headers.append((name, value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._index = None
        self.headers = [h for h in self.headers if h[0] != name]

    def set_top_via(self, via: Via) -> None:
        """Replace the topmost Via value (the first element of the first Via line) with
        ``via``, e.g. after adding ``received``/``rport`` (RFC 3261 §18.2.1, RFC 3581 §4)."""
        headers = self.headers
        for i, (k, v) in enumerate(headers):
            if k == "Via":
                items = split_list(v)
                items[0] = str(via)
                raw = items[0] if len(items) == 1 else ", ".join(items)
                headers[i] = ("Via", raw)
                self._index = None
                self._via_raw = raw
                self._via_v = via
                return
        raise ParseError("missing Via")

    # -- frequently used structured headers --------------------------------------------
    # Parsed once per raw value (see the class docstring); the results are read-only.

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self._first("CSeq") or ""
        if raw is not self._cseq_raw:
            self._cseq_v = _parse_cseq(raw)
            self._cseq_raw = raw
        return self._cseq_v

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.get_list("Via")]

    @property
    def top_via(self) -> Via:
        raw = self._first("Via")
        if raw is None:
            raise ParseError("missing Via")
        if raw is self._via_raw and self._via_v is not None:
            return self._via_v
        items = split_list(raw)
        if not items:
            raise ParseError("missing Via")
        via = parse_via(items[0])
        self._via_raw = raw
        self._via_v = via
        return via

    @property
    def from_(self) -> NameAddr:
        raw = self._first("From") or ""
        if raw is self._from_raw and self._from_v is not None:
            return self._from_v
        na = parse_name_addr(raw)
        self._from_raw = raw
        self._from_v = na
        return na

    @property
    def to(self) -> NameAddr:
        raw = self._first("To") or ""
        if raw is self._to_raw and self._to_v is not None:
            return self._to_v
        na = parse_name_addr(raw)
        self._to_raw = raw
        self._to_v = na
        return na

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value, parsed (a new list; its elements are shared, read-only)."""
        raw = self._idx().get("Contact")
        if raw is None:
            return []
        if self._contacts_v is not None and raw == self._contacts_raw:
            return list(self._contacts_v)
        parsed = [parse_name_addr(v) for v in self.get_list("Contact")]
        self._contacts_raw = raw
        self._contacts_v = parsed
        return list(parsed)

    @property
    def content_type(self) -> str:
        return (self.get("Content-Type") or "").split(";")[0].strip().lower()

    # -- serialization ------------------------------------------------------------------

    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The message on the wire; ``Content-Length`` always reflects the body."""
        lines = [self._start_line()]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        data = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        return data + self.body if self.body else data

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(SipMessage):
    __slots__ = ("_ruri_raw", "_ruri_v", "method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version
        self._ruri_raw: str | None = None
        self._ruri_v: Uri | None = None

    @property
    def request_uri(self) -> Uri:
        """The Request-URI, parsed (cached while ``uri`` is unchanged; read-only)."""
        raw = self.uri
        if raw is self._ruri_raw and self._ruri_v is not None:
            return self._ruri_v
        uri = parse_uri(raw)
        self._ruri_raw = raw
        self._ruri_v = uri
        return uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


class Response(SipMessage):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else reason_phrase(status)
        self.version = version

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6.2): copy Via, From, Call-ID, CSeq and
    To, adding ``to_tag`` to To when it has none (never for 100 Trying, §8.2.6.1)."""
    out: list[tuple[str, str]] = []
    for k, v in request.headers:
        if k in ("Via", "From", "Call-ID", "CSeq") or (k == "Record-Route" and status < 300):
            out.append((k, v))
        elif k == "To":
            if to_tag is not None and status != 100 and ";tag=" not in v.replace(" ", "").lower():
                v = f"{v};tag={to_tag}"
            out.append((k, v))
    if status == 100 and request.get("Timestamp"):
        out.append(("Timestamp", request.get("Timestamp") or ""))  # RFC 3261 §8.2.6.1
    out.extend(headers)
    resp = Response(status, reason, out, body)
    # The copied Via/From/To/CSeq are the request's very strings: its parsed values stay
    # valid for the response (each cache entry is checked against its raw string on use).
    resp._via_raw, resp._via_v = request._via_raw, request._via_v
    resp._from_raw, resp._from_v = request._from_raw, request._from_v
    resp._to_raw, resp._to_v = request._to_raw, request._to_v
    resp._cseq_raw, resp._cseq_v = request._cseq_raw, request._cseq_v
    return resp


# ---------------------------------------------------------------------------------------
# Checks a UAS makes before acting on a request
# ---------------------------------------------------------------------------------------

# RFC 3261 §25.1: rfc1123-date = wkday "," SP date1 SP time SP "GMT".
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"
)
_MAX_DELTA_SECONDS = 2**32 - 1  # RFC 3261 §20.19 / §20.10: (2**32)-1 at most
DEFAULT_URI_SCHEMES: frozenset[str] = frozenset({"sip", "sips", "tel"})


def validate_for_uas(msg: Request, *, schemes: Iterable[str] = DEFAULT_URI_SCHEMES) -> None:
    """Check the parts of a request that only an element acting on it needs to read.

    :func:`parse_message` validates what every layer relies on (framing, CSeq, Call-ID, top
    Via, From, To, Request-URI syntax). A UAS that will act on a request calls this as
    well; it raises :class:`ParseError` with the status to answer:

    * 416 if the Request-URI scheme is not in ``schemes`` (RFC 3261 §8.2.2.1; RFC 4475
      §3.3.2 unkscm, §3.3.3 novelsc);
    * 400 if the Request-URI carries headers (RFC 3261 §19.1.1 table; RFC 4475 §3.1.2.11
      escruri);
    * 400 if a Contact, Route or Record-Route value does not parse (RFC 4475 §3.1.2.13
      regbadct), or Contact ``*`` is used outside a lone REGISTER Contact (§10.3 step 6);
    * 400 if Date is not an RFC 1123 date in GMT (§20.17; RFC 4475 §3.1.2.12 baddate);
    * 400 if Expires is not delta-seconds up to 2**32-1 (§20.19; RFC 4475 §3.1.2.4);
    * 400 if Content-Type is not a media-type (§20.15).

    Apart from the scheme it does not check what is *supported*: 405/501 (method), 420
    (extensions, see :func:`unsupported_extensions`) and 415 (body type) are the
    application's.
    """
    uri = msg.request_uri
    if uri.scheme not in schemes:
        raise ParseError(f"unsupported URI scheme {uri.scheme!r}", 416)
    if uri.headers is not None:
        raise ParseError("headers are not allowed in a Request-URI")
    contacts = msg.contacts
    if any(c.wildcard for c in contacts) and (len(contacts) > 1 or msg.method != "REGISTER"):
        raise ParseError("Contact '*' must be alone, in a REGISTER")
    for name in ("Route", "Record-Route"):
        for v in msg.get_list(name):
            parse_name_addr(v)
    date = msg.get("Date")
    if date is not None and not _DATE_RE.match(date):
        raise ParseError(f"bad Date {date[:40]!r}")
    expires = msg.get("Expires")
    if expires is not None and (
        not _is_digits(expires) or len(expires) > 10 or int(expires) > _MAX_DELTA_SECONDS
    ):
        raise ParseError(f"bad Expires {expires[:20]!r}")
    ctype = msg.get("Content-Type")
    if ctype is not None:
        _parse_media_type(ctype)


def _parse_media_type(value: str) -> tuple[str, str, dict[str, str | None]]:
    """``type/subtype;params`` (RFC 3261 §20.15, §25.1 media-type), lower-cased."""
    mtype, slash, rest = value.partition("/")
    sub, _, params_s = rest.partition(";")
    mtype = mtype.strip()
    sub = sub.strip()
    if not slash or not _TOKEN_RE.match(mtype) or not _TOKEN_RE.match(sub):
        raise ParseError(f"bad Content-Type {value[:40]!r}")
    return mtype.lower(), sub.lower(), parse_params(params_s)


def unsupported_extensions(msg: Request, supported: Iterable[str]) -> list[str]:
    """Option tags in ``Require`` that are not in ``supported``: a UAS answers 420 Bad
    Extension listing them in ``Unsupported`` (RFC 3261 §8.2.2.3; RFC 4475 §3.3.5 bext01).
    CANCEL and ACK are exempt (their Require is ignored)."""
    if msg.method in ("ACK", "CANCEL"):
        return []
    ok = {t.lower() for t in supported}
    return [t for t in msg.get_list("Require") if t.lower() not in ok]


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not _is_digits(parts[0]) or not _TOKEN_RE.match(parts[1]):
        raise ParseError(f"bad CSeq {value[:40]!r}")
    if len(parts[0]) > 10:  # int() of a huge digit string is slow or refused; RFC 4475 §3.1.2.4
        raise ParseError("CSeq number out of range")
    num = int(parts[0])
    if num >= 2**31:  # RFC 3261 §8.1.1.5: must be less than 2**31
        raise ParseError("CSeq number out of range")
    return num, parts[1]


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)\Z", re.I)


def _head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Where the head ends: ``(end of the last header line, start of the body)``, or
    ``(-1, -1)`` without an empty line. An empty line is CRLF CRLF, or the same with bare LFs
    (RFC 3261 §7.5 robustness); the earliest one wins."""
    a = data.find(b"\n\r\n", start)
    b = data.find(b"\n\n", start)
    if a < 0 and b < 0:
        return -1, -1
    if b < 0 or (0 <= a < b):
        lf, body = a, a + 3
    else:
        lf, body = b, b + 2
    end = lf - 1 if lf > 0 and data[lf - 1] == 0x0D else lf
    return end, body


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split head and body at the first empty line."""
    end, body = _head_end(data)
    if end >= 0:
        return data[:end], data[body:]
    # No blank line: the whole datagram is the head (RFC 3261 §18.3 says it's malformed on
    # streams; on UDP we accept a message whose body is empty and whose last CRLF is missing,
    # as in RFC 4475 §3.1.2.15 baddn.dat).
    return data.rstrip(b"\r\n"), b""


def _unfold(text: str) -> list[str]:
    """Logical header lines of ``text`` (LF-separated), joining continuation lines
    (RFC 3261 §7.3.1: a line starting with SP or HTAB continues the previous one)."""
    out: list[str] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t"):
            if not out:
                raise ParseError("continuation line before the start line")
            out[-1] += " " + line.strip(" \t")
        else:
            out.append(line)
    return out


# Header names already seen and validated by the parser, with their canonical spelling.
# Bounded like _CANONICAL_CACHE.
_PARSED_NAMES: dict[str, str] = {}


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one complete SIP message.

    On a datagram (``stream=False``) a Content-Length larger than the data is an error (400,
    RFC 3261 §18.3); a missing Content-Length means the body runs to the end. On a stream the
    caller (:class:`StreamParser`) has already framed the message.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseError("message too large", 513)
    # RFC 3261 §7.5: implementations should ignore CRLFs before the start line.
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("empty message")
    head_b, body = _split_head(data)
    try:
        head = head_b.decode("utf-8")
    except UnicodeDecodeError:
        # Non-UTF-8 octets survive as lone surrogates so that serialize() gives them back.
        head = head_b.decode("utf-8", "surrogateescape")
    # CRLF ends a line; we also accept a bare LF (RFC 3261 §7.5 robustness).
    text = head.replace("\r\n", "\n")
    lines = _unfold(text) if ("\n " in text or "\n\t" in text) else text.split("\n")
    if len(lines) > MAX_HEADERS + 1:
        # The first empty line ends the head, so every line here is a header line.
        raise ParseError("too many headers", 400)
    start = lines[0]
    msg: Request | Response = (
        _parse_status_line(start) if start[:4].upper() == "SIP/" else _parse_request_line(start)
    )

    headers = msg.headers
    # The header index (see SipMessage) is built in the same pass.
    index: dict[str, str | tuple[str, ...]] = {}
    names = _PARSED_NAMES
    for i in range(1, len(lines)):
        line = lines[i]
        if not line:
            continue
        if len(line) > MAX_HEADER_LINE:
            raise ParseError("header line too long", 400)
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError(f"header line without ':': {line[:40]!r}")
        canon = names.get(name)
        if canon is None:
            bare = name.rstrip(" \t")
            if not bare or not _TOKEN_RE.match(bare):
                raise ParseError(f"bad header name {bare[:40]!r}")
            canon = canonical_name(bare)
            if len(names) < _CANONICAL_CACHE_MAX:
                names[name] = canon
        value = value.strip(" \t")
        headers.append((canon, value))
        if canon in index:
            _index_add(index, canon, value)
        else:
            index[canon] = value
    msg._index = index
    msg._index_src = headers
    msg._index_len = len(headers)

    _validate(msg, index, body, stream)
    return msg


# Methods seen every second skip the token regex.
_KNOWN_METHODS: frozenset[str] = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK"}
    | {"SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)


def _parse_request_line(line: str) -> Request:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"bad request line {line[:80]!r}")
    method, uri, version = parts
    if method not in _KNOWN_METHODS and not _METHOD_RE.match(method):
        raise ParseError(f"bad method {method[:40]!r}")
    if version != SIP_VERSION:
        if not _VERSION_RE.match(version):
            raise ParseError(f"bad SIP version {version[:20]!r}")
        if version.upper() != SIP_VERSION:
            raise ParseError(f"unsupported SIP version {version}", 505)
    if ":" not in uri or "<" in uri or ">" in uri or '"' in uri:
        raise ParseError(f"bad Request-URI {uri[:80]!r}")
    return Request(method, uri, version=SIP_VERSION)


def _parse_status_line(line: str) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not _VERSION_RE.match(version):
        raise ParseError(f"bad status line {line[:80]!r}")
    if version.upper() != SIP_VERSION:
        raise ParseError(f"unsupported SIP version {version}", 505)
    if len(code) != 3 or not _is_digits(code) or not 100 <= int(code) <= 699:
        raise ParseError(f"bad status code {code[:10]!r}")
    return Response(int(code), reason, version=SIP_VERSION)


def _validate(
    msg: Request | Response, index: dict[str, str | tuple[str, ...]], body: bytes, stream: bool
) -> None:
    # Duplicates of single-valued headers are ambiguous (RFC 3261 §7.3.1; RFC 4475 §3.3.8
    # multi01, §3.3.9 mcl01).
    first: dict[str, str] = {}
    for k, v in index.items():
        if isinstance(v, str):
            first[k] = v
        elif k in _SINGLE:
            raise ParseError(f"duplicate {k} header")
        else:
            first[k] = v[0]
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if required not in first:
            raise ParseError(f"missing {required} header")

    # What is parsed here is kept on the message (see SipMessage): every layer reads it.
    raw = first["CSeq"]
    cseq = _parse_cseq(raw)
    msg._cseq_raw, msg._cseq_v = raw, cseq
    if not first["Call-ID"]:
        raise ParseError("empty Call-ID")
    # The top Via must be parseable: responses are routed by it (RFC 3261 §18.2.2) and
    # transactions are matched on its branch (§17.2.3).
    raw = first["Via"]
    vias = split_list(raw)
    if not vias:
        raise ParseError("empty Via")
    msg._via_raw, msg._via_v = raw, parse_via(vias[0])
    # From and To must be parseable: dialogs are identified by their tags (§12).
    raw = first["From"]
    msg._from_raw, msg._from_v = raw, parse_name_addr(raw)
    raw = first["To"]
    msg._to_raw, msg._to_v = raw, parse_name_addr(raw)
    if isinstance(msg, Request):
        if cseq[1] != msg.method:
            raise ParseError("CSeq method does not match the request method")
        mf = first.get("Max-Forwards")
        if mf is not None and (not _is_digits(mf) or len(mf) > 10 or int(mf) > 255):
            raise ParseError("bad Max-Forwards")
        msg._ruri_raw, msg._ruri_v = msg.uri, parse_uri(msg.uri)

    cl = first.get("Content-Length")
    if cl is not None:
        if not _is_digits(cl):
            raise ParseError(f"bad Content-Length {cl[:20]!r}")
        if len(cl) > 10 or int(cl) > MAX_BODY_SIZE:
            raise ParseError("body too large", 413)
        length = int(cl)
        if length > len(body):
            raise ParseError("Content-Length larger than the body")
        # RFC 3261 §18.3: bytes beyond Content-Length in a datagram are discarded.
        body = body[:length]
    elif stream:
        raise ParseError("Content-Length is mandatory on a stream transport")
    msg.body = body


class StreamParser:
    """Frames SIP messages out of a byte stream (RFC 3261 §18.3, TCP and TLS).

    ``feed`` returns every complete message, each either a parsed message or the
    :class:`ParseError` it raised (so the transport can answer 400 and keep the connection
    only when framing is still intact). A stream whose framing is lost raises ``ParseError``
    from ``feed``; the transport then closes the connection. Framing is lost when a head has
    no usable Content-Length (missing, negative, not a number: RFC 4475 §3.1.2.3 ncl) or two
    different ones (RFC 4475 §3.3.9 mcl01), or when a head or body exceeds the size caps.

    Messages framed before the loss in the same ``feed`` are not thrown away: ``feed`` returns
    them, sets :attr:`framing_lost`, and raises that error on the next call. A transport
    should close the connection when ``feed`` raises *or* ``framing_lost`` is set.
    """

    def __init__(self, max_buffer: int = 2 * MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_buffer
        # Where to resume looking for the end of the head, so that a head arriving in many
        # small segments is not rescanned from its start each time.
        self._scanned = 0
        self.framing_lost: ParseError | None = None

    def feed(self, data: bytes) -> list[Request | Response | ParseError]:
        if self.framing_lost is not None:
            raise self.framing_lost
        self._buf += data
        if len(self._buf) > self._max:
            self._lose(ParseError("stream buffer overflow", 513))
        out: list[Request | Response | ParseError] = []
        try:
            self._frame(out)
        except ParseError:
            if not out:
                raise
        return out

    def _lose(self, exc: ParseError) -> NoReturn:
        self._buf.clear()
        self._scanned = 0
        self.framing_lost = exc
        raise exc

    def _frame(self, out: list[Request | Response | ParseError]) -> None:
        buf = self._buf
        while True:
            # Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
            i = 0
            n = len(buf)
            while i < n and buf[i] in (0x0D, 0x0A):
                i += 1
            if i:
                del buf[:i]
                self._scanned = 0
            if not buf:
                break
            # Resume two bytes back: the empty line may straddle two segments.
            base = max(0, self._scanned - 2)
            end, body_start = _head_end(buf, base)
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > MAX_MESSAGE_SIZE:
                    self._lose(ParseError("header section too large", 513))
                break
            length = _content_length_of(bytes(buf[:end]))
            if length is None:
                self._lose(ParseError("no usable Content-Length on a stream transport"))
            elif length > MAX_BODY_SIZE:
                self._lose(ParseError("body too large", 413))
            total = body_start + length
            if len(buf) < total:
                # Head complete; wait for the body. Remember the head end to avoid a rescan.
                self._scanned = base
                break
            raw = bytes(buf[:total])
            del buf[:total]
            self._scanned = 0
            try:
                out.append(parse_message(raw, stream=True))
            except ParseError as exc:
                out.append(exc)


# Content-Length (or its compact form "l") at the start of a header line. The value may
# follow a fold (RFC 3261 §7.3.1); anything but digits there makes the framing unknown.
_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(?:\r?\n[ \t]+)*([^\r\n]*)")


def _content_length_of(head: bytes) -> int | None:
    """The Content-Length of a head, or ``None`` when there is none we can frame by."""
    found: int | None = None
    for m in _CL_RE.finditer(head):
        value = m.group(1).strip(b" \t")
        if not value.isdigit() or len(value) > 10:
            return None
        n = int(value)
        if found is not None and n != found:
            return None  # two different lengths: RFC 4475 §3.3.9
        found = n
    return found
