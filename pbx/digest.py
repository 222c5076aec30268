"""SIP digest authentication (sans-IO): challenges, credential checks and a client helper.

Theory of operation
-------------------
A UAS (the registrar, or the B2BUA acting as a proxy) that wants to authenticate a request
answers it with 401/407 carrying one challenge per supported algorithm, most preferred first
(RFC 8760 §2.4): ``DigestAuthenticator.challenge(now)`` returns those header *values*. The
client retries with an Authorization/Proxy-Authorization value, which
``DigestAuthenticator.verify(method, value, now, lookup)`` turns into an ``AuthResult``:

``OK``
    The response digest is right, the nonce is ours, fresh, and its nonce-count went up.
``STALE``
    The response digest is right but the nonce is too old (or was issued "in the future",
    i.e. before a clock reset), or its nonce-count was not greater than the last one seen.
    The caller answers 401/407 with ``challenge(now, stale=True)`` so that the phone retries
    with a fresh nonce without asking its user for a password (RFC 7616 §3.3 ``stale``).
``FAILED``
    Wrong password, unknown user, foreign/forged nonce, wrong realm, unsupported algorithm or
    qop. The caller answers 401/407 with a fresh challenge and feeds a ``FailureThrottle``.
    An unknown user is answered exactly like a wrong password (same outcome and reason, and
    the same hashing work against a dummy password) so that extensions cannot be enumerated.
``MALFORMED``
    The header value does not parse or lacks a required parameter; the caller answers 400
    (or 401 with a fresh challenge, RFC 3261 leaves it open).

Nonces are stateless (nothing is stored when a challenge is sent). Layout, 36 bytes encoded
as unpadded base64url (48 characters)::

    issued_ms (8 bytes, big-endian, int(now * 1000))
    || random (12 bytes)
    || HMAC-SHA256(secret, issued_ms || random || realm)[:16]

``verify`` recomputes the HMAC (a forged or foreign nonce fails) and checks the age against
``nonce_lifetime``. The only state kept is a bounded map nonce → highest nonce-count
(RFC 7616 §3.4 / §5.3 replay protection), filled only after a *successful* check so that an
unauthenticated peer cannot grow it or poison the counter of somebody else's nonce. Entries
leave when their nonce expires or, when the map is full, oldest first; a nonce whose entry
was pushed out while still alive is then answered STALE rather than accepted with a forgotten
counter (see ``_evicted_watermark``).

``now`` must come from one clock for ``challenge`` and ``verify`` (the adapter's choice;
wall-clock ``time.time()`` keeps nonces meaningful across a restart when ``secret`` is
persistent). Nothing here reads a clock or does I/O; randomness comes from ``secrets``
unless a ``random_bytes`` callable is injected (tests).

Implemented: RFC 3261 §22.4 and §25.1 (Authorization / WWW-Authenticate syntax: auth-params,
token or quoted-string values with backslash escapes, LWS), RFC 7616 §3.3-§3.4 (MD5, SHA-256
and their ``-sess`` variants, qop=auth, nc/cnonce, stale), RFC 8760 (SHA-256 for SIP, several
challenges in preference order), RFC 2617 §3.2.2 (request-digest). Not implemented: qop
``auth-int`` (no body hashing), ``userhash`` and ``username*`` (RFC 7616 §3.4.4), SHA-512-256,
Authentication-Info/rspauth (RFC 7616 §3.5).

RFC 2069 compatibility (credentials without ``qop``): refused unless ``allow_rfc2069=True``.
Our challenges always carry ``qop="auth"``, and RFC 3261 §22.4 says a client that received a
qop MUST send one back; a response without qop has no nonce-count, so replay within the nonce
lifetime could not be detected.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthOutcome",
    "AuthResult",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "PasswordLookup",
    "build_authorization",
    "choose_challenge",
    "compute_response",
    "parse_auth_header",
    "parse_challenge",
    "parse_credentials",
    "quote",
]

PasswordLookup = Callable[[str, str], str | None]
"""``(username, realm) -> password`` or ``None`` when the user does not exist."""

# Canonical algorithm name -> hashlib name. RFC 7616 §3.2 / RFC 8760 §2.2.
_HASHES: dict[str, str] = {
    "MD5": "md5",
    "MD5-sess": "md5",
    "SHA-256": "sha256",
    "SHA-256-sess": "sha256",
}
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(_HASHES)
_CANONICAL = {name.lower(): name for name in _HASHES}

MAX_HEADER_LENGTH = 8192
MAX_PARAMS = 32

_NONCE_TS_LEN = 8
_NONCE_RANDOM_LEN = 12
_NONCE_MAC_LEN = 16
_NONCE_LEN = _NONCE_TS_LEN + _NONCE_RANDOM_LEN + _NONCE_MAC_LEN
_NONCE_TEXT_LEN = (_NONCE_LEN * 4 + 2) // 3  # unpadded base64url
_NONCE_TEXT = re.compile(rf"[A-Za-z0-9_-]{{{_NONCE_TEXT_LEN}}}")
# A nonce stamped slightly after `now` is accepted (several adapters may stamp from clocks
# that differ by a few ms); further in the future means the clock went backwards.
_FUTURE_SKEW = 5.0


class DigestError(ValueError):
    """A Digest header value could not be parsed, or misses a required parameter."""


class AuthOutcome(enum.Enum):
    OK = "ok"
    STALE = "stale"
    FAILED = "failed"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What ``DigestAuthenticator.verify`` decided.

    ``username`` and ``uri`` are the values the client sent (``None`` only when MALFORMED).
    The caller should check that ``uri`` designates the Request-URI (RFC 3261 §22.4 leaves
    it to the server; RFC 2617 §3.2.2.5 answers a mismatch with 400). ``reason`` is a short
    machine-readable word for logs; never send it to the peer. ``nonce`` is the nonce the
    client answered (for :meth:`DigestAuthenticator.challenge` after a FAILED check);
    ``fingerprint`` identifies the answer itself (user, realm, nonce, nonce-count, cnonce
    and response digest): the same fingerprint again is the same credential resent, not a
    new guess, so a failure throttle counts it once.
    """

    outcome: AuthOutcome
    username: str | None = None
    uri: str | None = None
    algorithm: str | None = None
    reason: str = ""
    # What was answered, not what was decided: left out of ==.
    nonce: str | None = field(default=None, compare=False)
    fingerprint: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A parsed WWW-Authenticate / Proxy-Authenticate Digest value (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # canonical name when supported, else as received
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed Authorization / Proxy-Authorization Digest value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"  # canonical name when supported, else as received
    qop: str | None = None
    cnonce: str | None = None
    nc: str | None = None  # exactly as sent (8 hex digits); it enters the digest verbatim
    opaque: str | None = None
    userhash: bool = False

    @property
    def nc_value(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)


# ---------------------------------------------------------------------------------------------
# Parsing: RFC 3261 §25.1 / RFC 7616 §3.3-3.4 auth-param lists.

# RFC 3261 §25.1 token characters.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
# Unquoted values: be liberal (real UAs send nonces such as `1566926808/1dd6...` or base64
# with '=' unquoted), anything visible ASCII except the list and quote delimiters.
_BARE_VALUE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {",", '"', "\\"}
# RFC 3261 LWS = [*WSP CRLF] 1*WSP: unfold line continuations first.
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_WS = " \t"


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _read_token(s: str, i: int, chars: frozenset[str]) -> tuple[str, int]:
    start = i
    while i < len(s) and s[i] in chars:
        i += 1
    return s[start:i], i


def _read_quoted(s: str, i: int) -> tuple[str, int]:
    # s[i] is the opening DQUOTE. RFC 3261 §25.1 quoted-string with quoted-pair.
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(s):
                break
            out.append(s[i + 1])
            i += 2
            continue
        if (c < " " and c != "\t") or c == "\x7f":
            raise DigestError(f"control character {c!r} in quoted-string at offset {i}")
        out.append(c)
        i += 1
    raise DigestError("unterminated quoted-string")


# Fast path for the common, simple spelling (what every phone sends): one regex step per
# auth-param, quoted values without quoted-pairs or control characters, bare values from
# _BARE_VALUE_CHARS. Anything else (escapes, duplicates, errors) goes through the
# character-by-character parser below, which has the precise error messages; both give the
# same result for the inputs the fast path accepts.
_TOKEN_CLASS = r"[A-Za-z0-9\-.!%*_+`'~]"
_FAST_SCHEME = re.compile(rf"({_TOKEN_CLASS}+)[ \t]+(?=[^ \t])")
_FAST_PARAM = re.compile(
    rf"[ \t,]*({_TOKEN_CLASS}+)[ \t]*=[ \t]*"
    r'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|([\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+))'
    r"[ \t]*(?=,|\Z)"
)
_ONLY_SEPARATORS = re.compile(r"[ \t,]*\Z")


def _parse_auth_header_fast(s: str) -> tuple[str, dict[str, str]] | None:
    m = _FAST_SCHEME.match(s)
    if m is None:
        return None
    scheme = m.group(1)
    pos = m.end()
    params: dict[str, str] = {}
    n = len(s)
    match = _FAST_PARAM.match
    while pos < n:
        m = match(s, pos)
        if m is None:
            if params and _ONLY_SEPARATORS.match(s, pos):
                break
            return None
        key = m.group(1).lower()
        if key in params or len(params) >= MAX_PARAMS:
            return None  # let the slow path raise its error
        quoted = m.group(2)
        params[key] = quoted if quoted is not None else m.group(3)
        pos = m.end()
    if not params:
        return None
    return scheme, params


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a credentials/challenge header value into (scheme, params).

    The scheme is returned as sent; parameter names are lower-cased; values are unquoted and
    unescaped. Raises ``DigestError`` for anything that is not ``scheme 1*SP auth-param
    *("," auth-param)``, for duplicate parameters and for oversize input.
    """
    if not isinstance(value, str):
        raise DigestError("header value must be str")
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError(f"header value longer than {MAX_HEADER_LENGTH} characters")
    s = _FOLD.sub(" ", value).strip(_WS) if "\n" in value else value.strip(_WS)
    if "\r" in s or "\n" in s:
        raise DigestError("bare CR or LF in header value")
    fast = _parse_auth_header_fast(s)
    if fast is not None:
        return fast
    scheme, i = _read_token(s, 0, _TOKEN_CHARS)
    if not scheme:
        raise DigestError("missing authentication scheme")
    j = _skip_ws(s, i)
    if j == i or j >= len(s):
        raise DigestError(f"no parameters after scheme {scheme!r}")
    i = j
    params: dict[str, str] = {}
    while True:
        # RFC 7230 §7 #rule: tolerate empty list elements (", ,").
        while i < len(s) and s[i] in _WS + ",":
            i += 1
        if i >= len(s):
            break
        name, i = _read_token(s, i, _TOKEN_CHARS)
        if not name:
            raise DigestError(f"expected parameter name at offset {i}")
        i = _skip_ws(s, i)
        if i >= len(s) or s[i] != "=":
            raise DigestError(f"expected '=' after parameter {name!r}")
        i = _skip_ws(s, i + 1)
        if i < len(s) and s[i] == '"':
            val, i = _read_quoted(s, i)
        else:
            val, i = _read_token(s, i, _BARE_VALUE_CHARS)
            if not val:
                raise DigestError(f"empty value for parameter {name!r}")
        key = name.lower()
        if key in params:
            raise DigestError(f"duplicate parameter {key!r}")
        if len(params) >= MAX_PARAMS:
            raise DigestError(f"more than {MAX_PARAMS} parameters")
        params[key] = val
        i = _skip_ws(s, i)
        if i < len(s) and s[i] != ",":
            raise DigestError(f"expected ',' at offset {i}")
    if not params:
        raise DigestError("no parameters")
    return scheme, params


def _digest_params(value: str) -> dict[str, str]:
    scheme, params = parse_auth_header(value)
    if scheme.lower() != "digest":  # RFC 7235 §2.1: scheme is case-insensitive
        raise DigestError(f"unsupported authentication scheme {scheme!r}")
    return params


def _canonical_algorithm(name: str) -> str:
    return _CANONICAL.get(name.lower(), name)


def _require(params: dict[str, str], name: str) -> str:
    try:
        return params[name]
    except KeyError:
        raise DigestError(f"missing parameter {name!r}") from None


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate Digest value."""
    p = _digest_params(value)
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=_require(p, "realm"),
        nonce=_require(p, "nonce"),
        algorithm=_canonical_algorithm(p.get("algorithm", "MD5")),
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
        domain=p.get("domain"),
    )


_NC = re.compile(r"[0-9a-fA-F]{8}")


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization Digest value.

    Requires username, realm, nonce, uri and response; when qop is present, cnonce and an
    8-hex-digit nc too (RFC 3261 §25.1 ``nc-value = 8LHEX``). Raises ``DigestError``.
    """
    if not isinstance(value, str):
        raise DigestError("header value must be str")
    # The server parses the same value twice per request (realm selection, then verify):
    # the result is immutable, so a small cache makes the second parse free. Errors are
    # not cached (lru_cache does not store exceptions).
    return _parse_credentials_cached(value)


@functools.lru_cache(maxsize=256)
def _parse_credentials_cached(value: str) -> DigestCredentials:
    p = _digest_params(value)
    qop = p.get("qop")
    cnonce = p.get("cnonce")
    nc = p.get("nc")
    if qop is not None:
        qop = qop.lower()
        if cnonce is None or nc is None:
            raise DigestError("qop given without cnonce and nc")  # RFC 7616 §3.4
    algorithm = _canonical_algorithm(p.get("algorithm", "MD5"))
    if algorithm.endswith("-sess") and cnonce is None:
        raise DigestError(f"{algorithm} needs cnonce")  # RFC 7616 §3.4.2
    if nc is not None and not _NC.fullmatch(nc):
        raise DigestError("nc must be 8 hexadecimal digits")
    return DigestCredentials(
        username=_require(p, "username"),
        realm=_require(p, "realm"),
        nonce=_require(p, "nonce"),
        uri=_require(p, "uri"),
        response=_require(p, "response"),
        algorithm=algorithm,
        qop=qop,
        cnonce=cnonce,
        nc=nc,
        opaque=p.get("opaque"),
        userhash=p.get("userhash", "").lower() == "true",
    )


# ---------------------------------------------------------------------------------------------
# Digest computation: RFC 7616 §3.4.1-3.4.3 (RFC 2617 §3.2.2).


def _h(algorithm: str, data: str) -> str:
    return hashlib.new(_HASHES[algorithm], data.encode("utf-8")).hexdigest()


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (``response=``) for qop=auth, or RFC 2069 style when qop is None.

    ``algorithm`` must be one of ``SUPPORTED_ALGORITHMS`` (KeyError otherwise).
    """
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        # RFC 7616 §3.4.2: HA1 = H(H(user:realm:pass):nonce:cnonce)
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _h(algorithm, f"{method}:{uri}")  # RFC 7616 §3.4.3, qop=auth
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")  # RFC 2069
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string (RFC 3261 §25.1), escaping '"' and '\\'."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Server side.


@dataclass(slots=True)
class _NonceUse:
    issued_at: float
    highest_nc: int


def _checked_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    """``algorithms`` in canonical spelling; ValueError when empty or unsupported."""
    if not algorithms:
        raise ValueError("at least one algorithm is required")
    canon = tuple(_canonical_algorithm(a) for a in algorithms)
    unknown = [a for a in canon if a not in _HASHES]
    if unknown:
        raise ValueError(f"unsupported digest algorithm(s): {unknown}")
    return canon


class DigestAuthenticator:
    """Issues Digest challenges and checks credentials for one realm.

    ``secret`` keys the nonce HMAC; keep it stable across restarts (config or store) or
    phones holding a nonce get one FAILED round before re-authenticating. ``algorithms`` is
    the preference order of the challenges and also the set accepted in credentials; a caller
    may narrow or widen both per user (``challenge(algorithms=…)``, ``verify(algorithms_of=…)``),
    e.g. SHA-256 opted in for one extension while the realm offers MD5 only.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        algorithms: Sequence[str] = ("MD5",),
        nonce_lifetime: float = 300.0,
        *,
        max_tracked_nonces: int = 10_000,
        allow_rfc2069: bool = False,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if max_tracked_nonces <= 0:
            raise ValueError("max_tracked_nonces must be positive")
        self.realm = realm
        self.algorithms: tuple[str, ...] = ()
        self.nonce_lifetime = nonce_lifetime
        self.configure(algorithms, nonce_lifetime)
        self.allow_rfc2069 = allow_rfc2069
        self._secret = secret
        self._random = random_bytes
        self._max_tracked = max_tracked_nonces
        self._realm_bytes = realm.encode("utf-8")
        # Dummy password for unknown users: random, so nobody can ever match it.
        self._dummy_password = secrets.token_hex(16)
        self._default_opaque = (
            base64.urlsafe_b64encode(
                hmac.new(secret, b"opaque\x00" + self._realm_bytes, hashlib.sha256).digest()[:12]
            )
            .rstrip(b"=")
            .decode("ascii")
        )
        # nonce -> use; insertion order == first successful use, roughly issue order.
        self._uses: OrderedDict[str, _NonceUse] = OrderedDict()
        # Highest issue time of a nonce forgotten while still alive (see _check_nc).
        self._evicted_watermark = float("-inf")

    def configure(self, algorithms: Sequence[str], nonce_lifetime: float) -> None:
        """Change the offered algorithms and the nonce lifetime (a config reload). Nonces
        already issued stay valid, and their nonce-counts are kept, so replay protection
        survives the change."""
        canon = _checked_algorithms(algorithms)
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        self.algorithms = canon
        self.nonce_lifetime = nonce_lifetime

    # -- nonces -------------------------------------------------------------------------------

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head + self._realm_bytes, hashlib.sha256).digest()[
            :_NONCE_MAC_LEN
        ]

    def make_nonce(self, now: float) -> str:
        """A fresh stateless nonce stamped with ``now`` (layout in the module docstring)."""
        ts = max(0, int(now * 1000)).to_bytes(_NONCE_TS_LEN, "big")
        head = ts + self._random(_NONCE_RANDOM_LEN)
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def _nonce_issued_at(self, nonce: str) -> float | None:
        """Issue time of a nonce we minted, or None when it is foreign or forged."""
        # Strict alphabet: b64decode would also take '+' '/' and skip junk, letting two
        # spellings of one nonce get separate nonce-count entries.
        if not _NONCE_TEXT.fullmatch(nonce):
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_LEN:
            return None
        head, mac = raw[: _NONCE_TS_LEN + _NONCE_RANDOM_LEN], raw[-_NONCE_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        return int.from_bytes(head[:_NONCE_TS_LEN], "big") / 1000.0

    def _is_fresh(self, nonce: str, now: float) -> bool:
        issued_at = self._nonce_issued_at(nonce)
        if issued_at is None:
            return False
        age = now - issued_at
        return -_FUTURE_SKEW <= age <= self.nonce_lifetime

    # -- challenges ---------------------------------------------------------------------------

    def challenge(
        self,
        now: float,
        *,
        stale: bool = False,
        opaque: str | None = None,
        nonce: str | None = None,
        algorithms: Sequence[str] | None = None,
    ) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, preferred first.

        RFC 8760 §2.4: a UAS offering several algorithms sends one challenge per algorithm
        in preference order. Each carries its own nonce. ``opaque`` defaults to a constant
        derived from the secret; it is echoed back by clients but not checked (many UAs drop
        or mangle it and it protects nothing the nonce HMAC does not).

        ``nonce``: after a FAILED check, the nonce the client answered. When it is ours and
        still fresh, every challenge carries it again: the same nonce with stale=false tells
        the client its credential was refused (RFC 7616 §3.3), so it stops. A fresh nonce
        reads as "nonce changed, retry" (PJSIP does, up to 3 times, with the same wrong
        password) and one typo would cost several failures in a throttle.

        ``algorithms``: offer these instead of the realm's (a user who opted in to SHA-256).
        """
        op = self._default_opaque if opaque is None else opaque
        again = nonce if nonce is not None and self._is_fresh(nonce, now) else None
        offered = self.algorithms if algorithms is None else _checked_algorithms(algorithms)
        values = []
        for algorithm in offered:
            parts = [
                f"Digest realm={quote(self.realm)}",
                f"nonce={quote(again or self.make_nonce(now))}",
                f"opaque={quote(op)}",
                f"algorithm={algorithm}",
                'qop="auth"',  # RFC 3261 §22.4: servers MUST always send qop
            ]
            if stale:
                parts.append("stale=true")  # RFC 7616 §3.3
            values.append(", ".join(parts))
        return values

    # -- verification -------------------------------------------------------------------------

    def verify(
        self,
        method: str,
        authorization_value: str,
        now: float,
        lookup: PasswordLookup,
        *,
        algorithms_of: Callable[[str], Sequence[str] | None] | None = None,
    ) -> AuthResult:
        """Check an Authorization / Proxy-Authorization value for a request ``method``.

        Never raises for bad header content (that is MALFORMED); exceptions from ``lookup``
        propagate. The nonce-count is recorded only when the result is OK.

        ``algorithms_of(username)``: the algorithms that user may answer with, or None for
        the realm's (also for unknown users, so the answer does not reveal who exists).
        """
        try:
            cred = parse_credentials(authorization_value)
        except DigestError as exc:
            return AuthResult(AuthOutcome.MALFORMED, reason=f"malformed: {exc}")

        fingerprint = hashlib.sha256(
            "\x00".join(
                (
                    cred.username,
                    cred.realm,
                    cred.nonce,
                    cred.nc or "",
                    cred.cnonce or "",
                    cred.response.lower(),
                )
            ).encode()
        ).hexdigest()[:32]

        def result(outcome: AuthOutcome, reason: str) -> AuthResult:
            return AuthResult(
                outcome, cred.username, cred.uri, cred.algorithm, reason, cred.nonce, fingerprint
            )

        if cred.realm != self.realm:
            return result(AuthOutcome.FAILED, "realm")
        allowed = algorithms_of(cred.username) if algorithms_of is not None else None
        if cred.algorithm not in (self.algorithms if allowed is None else allowed):
            return result(AuthOutcome.FAILED, "algorithm")
        if cred.qop is None:
            if not self.allow_rfc2069:
                return result(AuthOutcome.FAILED, "qop_missing")
        elif cred.qop != "auth":
            return result(AuthOutcome.FAILED, "qop")  # auth-int was never offered
        if cred.userhash:
            return result(AuthOutcome.FAILED, "userhash")  # never offered, RFC 7616 §3.4.4
        issued_at = self._nonce_issued_at(cred.nonce)
        if issued_at is None:
            return result(AuthOutcome.FAILED, "nonce")

        # Anti-enumeration: an unknown user costs the same hashing as a known one and ends in
        # the same outcome and reason as a wrong password.
        password = lookup(cred.username, self.realm)
        if password is None:
            password = self._dummy_password
        expected = compute_response(
            algorithm=cred.algorithm,
            username=cred.username,
            realm=cred.realm,
            password=password,
            method=method,
            uri=cred.uri,
            nonce=cred.nonce,
            qop=cred.qop,
            nc=cred.nc,
            cnonce=cred.cnonce,
        )
        if not hmac.compare_digest(expected.encode("ascii"), cred.response.lower().encode()):
            return result(AuthOutcome.FAILED, "response")

        # RFC 7616 §3.3: right digest, but the nonce is no longer good -> stale=true.
        age = now - issued_at
        if age > self.nonce_lifetime or age < -_FUTURE_SKEW:
            return result(AuthOutcome.STALE, "nonce_expired")
        if cred.qop is not None:
            nc_value = cred.nc_value
            assert nc_value is not None  # parse_credentials guarantees nc with qop
            replay = self._check_nc(cred.nonce, issued_at, nc_value, now)
            if replay:
                return result(AuthOutcome.STALE, replay)
        return result(AuthOutcome.OK, "")

    def _check_nc(self, nonce: str, issued_at: float, nc: int, now: float) -> str | None:
        """Record ``nc`` for ``nonce`` if it went up; else the reason to answer STALE.

        RFC 7616 §3.4 / §5.3: the server keeps the last nonce-count per nonce and rejects
        requests that do not increase it. A replay gets STALE, not FAILED: the digest was
        right, a legitimate UA that reordered two requests recovers with a fresh nonce, and
        a replaying attacker gains a challenge it cannot answer.
        """
        self._prune(now)
        use = self._uses.get(nonce)
        if use is None:
            if issued_at <= self._evicted_watermark:
                # We may have forgotten this nonce's counter; do not trust it any more.
                return "nonce_forgotten"
            if nc < 1:
                return "nc_replay"
            self._uses[nonce] = _NonceUse(issued_at, nc)
            while len(self._uses) > self._max_tracked:
                _, old = self._uses.popitem(last=False)
                if now - old.issued_at <= self.nonce_lifetime:
                    self._evicted_watermark = max(self._evicted_watermark, old.issued_at)
            return None
        if nc <= use.highest_nc:
            return "nc_replay"
        use.highest_nc = nc
        return None

    def _prune(self, now: float) -> None:
        # Insertion order is first use, which tracks issue order closely enough: stop at
        # the first live entry; the size cap bounds whatever is left behind.
        while self._uses:
            nonce, use = next(iter(self._uses.items()))
            if now - use.issued_at <= self.nonce_lifetime:
                break
            del self._uses[nonce]

    @property
    def tracked_nonces(self) -> int:
        """Number of nonces whose nonce-count is remembered (for metrics and tests)."""
        return len(self._uses)


# ---------------------------------------------------------------------------------------------
# Client side (tests, trunk registration).


def choose_challenge(values: Iterable[str]) -> str:
    """Pick the first Digest challenge whose algorithm we support (RFC 8760 §2.4).

    Challenges in other schemes, unsupported algorithms and unparsable values are skipped;
    raises ``DigestError`` when none is usable.
    """
    for value in values:
        try:
            ch = parse_challenge(value)
        except DigestError:
            continue
        if ch.algorithm in _HASHES:
            return value
    raise DigestError("no usable Digest challenge")


def build_authorization(
    method: str,
    uri: str,
    username: str,
    password: str,
    challenge_value: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Answer one challenge value with an Authorization / Proxy-Authorization value.

    Uses qop=auth when the challenge offers it, else the RFC 2069 form. Raises
    ``DigestError`` for an unparsable challenge or an unsupported algorithm or qop.
    """
    ch = parse_challenge(challenge_value)
    if ch.algorithm not in _HASHES:
        raise DigestError(f"unsupported algorithm {ch.algorithm!r}")
    if ch.qop and "auth" not in ch.qop:
        raise DigestError(f"unsupported qop {ch.qop!r}")
    qop = "auth" if ch.qop else None
    if not 0 < nc <= 0xFFFFFFFF:
        raise ValueError("nc out of range")
    nc_text = f"{nc:08x}" if qop else None
    if qop and cnonce is None:
        cnonce = secrets.token_hex(16)
    response = compute_response(
        algorithm=ch.algorithm,
        username=username,
        realm=ch.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=ch.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce if qop else None,
    )
    parts = [
        f"Digest username={quote(username)}",
        f"realm={quote(ch.realm)}",
        f"nonce={quote(ch.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={ch.algorithm}",
    ]
    if qop:
        assert cnonce is not None
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if ch.opaque is not None:
        parts.append(f"opaque={quote(ch.opaque)}")
    return ", ".join(parts)
