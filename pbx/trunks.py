"""SIP trunks (sans-IO): the carrier account, its registration as a UAC, and OPTIONS qualify.

Theory of operation
-------------------
A :class:`Trunk` is the domain view of one ``trunks:`` entry (built in ``app/settings.py``,
the only place config becomes settings). Two small state machines run per trunk; neither
does I/O or reads a clock. The adapter (:mod:`pbx.trunk_driver`) feeds them ``now``,
responses and timeouts, sends what :meth:`requests_to_send` gives (adding the top Via), logs
what :meth:`next_event` gives, and sleeps until :meth:`get_timer`.

:class:`TrunkRegistration` (RFC 3261 §10.2, the UAC side of a registrar)
    One Call-ID for the life of the registration, the CSeq going up by one for every
    REGISTER, including the retry that answers a challenge (§10.2: "the same Call-ID ...
    CSeq value incremented"). To and From carry our address-of-record ``sip:user@host``; the
    Request-URI names the registrar's domain without user part (§10.2). The state moves
    along :data:`REGISTRATION_TRANSITIONS`; anything else raises.

    * 401/407 are answered with :func:`authorization_for` (RFC 3261 §22.2/§22.3; RFC 7616
      and RFC 8760: MD5 or SHA-256, ``qop=auth``, the first challenge we support). The
      challenge is kept: refreshes send credentials for the same nonce at once with the
      nonce-count one higher (RFC 7616 §3.4), saving a round trip. A challenge that answers
      credentials we computed for a challenge (not the cached, possibly expired one) and
      says neither ``stale=true`` nor offers a new nonce means the password is wrong: the
      attempt fails instead of looping. Two ``stale`` rounds in a row fail the same way.
    * 200: our binding is the Contact whose URI matches ours (§19.1.4 comparison, reduced
      to scheme, user, host, port and transport); its ``expires`` parameter, else the
      Expires header, else what we asked for, is the granted interval (§10.2.4). A
      registrar may list other devices' bindings of the same AOR; they are ignored.
    * The refresh is due at ``min(0.85 × granted, granted − 5 s)``, never before half the
      interval. §10.2.1 lets the UA choose; 15 % (at least 5 s) of headroom covers a lost
      request and its retransmissions for the usual 3600 s (540 s ≫ Timer F's 32 s) and
      still leaves a short test interval (10 s → refresh at 5 s) safe.
    * 423 Interval Too Brief: retry at once asking for the Min-Expires value (§10.2.8);
      a second 423 that asks for no more than we sent fails.
    * 403: state ``forbidden``; the next try only after the longest back-off. A carrier
      that forbids an account does not change its mind in seconds, and some ban an
      address that keeps asking.
    * Other failures (transaction timeout, 5xx, other 4xx, rejected credentials): state
      ``failed``, retry after ``retry_interval``, doubling after every failure in a row up
      to ten times it (a 503's Retry-After is honoured when longer, RFC 3261 §21.5.4).
    * :meth:`TrunkRegistration.stop` sends ``Expires: 0`` for our contact (§10.2.2) when a
      binding may be in force.

:class:`TrunkQualify` (RFC 3261 §11)
    An OPTIONS every ``qualify`` seconds, one outstanding at a time. *Any* final response
    proves the carrier is there (a 404 or 405 is still an answer from its SIP stack); only
    a transaction timeout counts as a failure. ``qualify_failures`` failures in a row put
    the trunk ``down``; the next answer puts it ``up`` and records the round-trip time.
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from dataclasses import dataclass, field

from .digest import DigestError, build_authorization, choose_challenge, parse_challenge
from .message import ParseError, Request, Response, Uri, parse_name_addr

__all__ = [
    "QUALIFY_TRANSITIONS",
    "REGISTRATION_TRANSITIONS",
    "Reachability",
    "RegistrationState",
    "Trunk",
    "TrunkCameUp",
    "TrunkEvent",
    "TrunkQualify",
    "TrunkRegistered",
    "TrunkRegistration",
    "TrunkRegistrationFailed",
    "TrunkStatus",
    "TrunkUnregistered",
    "TrunkWentDown",
    "authorization_for",
    "refresh_delay",
    "same_contact",
]

# Back-off: retry_interval doubled per failure in a row, up to this many times it.
MAX_BACKOFF_FACTOR = 10
# A refresh is due at the earlier of this share of the interval and REFRESH_MARGIN before
# its end, but never before half of it (see the module docstring).
REFRESH_SHARE = 0.85
REFRESH_MARGIN = 5.0
# Challenges marked stale=true answered in a row before the attempt counts as failed.
MAX_STALE_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class Trunk:
    """One carrier account (the ``trunks:`` section of the config, one entry)."""

    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str | None = None
    password: str | None = None
    registers: bool = False
    expires: int = 3600
    retry_interval: int = 60
    max_channels: int = 0
    acl: tuple[str, ...] = ()
    did_from: str = "request_uri"
    country_code: str | None = None
    national_prefix: str = "0"
    international_prefix: str = "00"
    dids: tuple[str, ...] = ()
    caller_id: str | None = None
    from_user: str | None = None
    qualify: int = 60
    qualify_failures: int = 3

    @property
    def aor(self) -> str:
        """Our address-of-record at the carrier (RFC 3261 §10.2: To and From of REGISTER)."""
        return f"sip:{self.username or 'switchboard'}@{self.host}"

    @property
    def registrar_uri(self) -> str:
        """The REGISTER Request-URI: the registrar's domain, no user part (RFC 3261 §10.2)."""
        port = "" if self.port == 5060 else f":{self.port}"
        tp = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.host}{port}{tp}"

    @property
    def max_backoff(self) -> float:
        return float(self.retry_interval * MAX_BACKOFF_FACTOR)


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    FORBIDDEN = "forbidden"


_R = RegistrationState
# The whole registration state machine: from -> the states it may go to. REGISTERED ->
# REGISTERED is a refresh; FAILED/FORBIDDEN -> REGISTERING a retry.
REGISTRATION_TRANSITIONS: dict[RegistrationState, frozenset[RegistrationState]] = {
    _R.UNREGISTERED: frozenset({_R.REGISTERING}),
    _R.REGISTERING: frozenset({_R.REGISTERED, _R.FAILED, _R.FORBIDDEN, _R.UNREGISTERED}),
    _R.REGISTERED: frozenset({_R.REGISTERED, _R.FAILED, _R.FORBIDDEN, _R.UNREGISTERED}),
    _R.FAILED: frozenset({_R.REGISTERING, _R.UNREGISTERED}),
    _R.FORBIDDEN: frozenset({_R.REGISTERING, _R.UNREGISTERED}),
}


class Reachability(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


_Q = Reachability
QUALIFY_TRANSITIONS: dict[Reachability, frozenset[Reachability]] = {
    _Q.UNKNOWN: frozenset({_Q.UP, _Q.DOWN}),
    _Q.UP: frozenset({_Q.DOWN}),
    _Q.DOWN: frozenset({_Q.UP}),
}


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrunkRegistered:
    trunk: str
    expires: int  # granted interval, seconds
    refresh_at: float


@dataclass(frozen=True, slots=True)
class TrunkRegistrationFailed:
    trunk: str
    state: RegistrationState  # FAILED or FORBIDDEN
    status: int | None  # None: no response (timeout, DNS, send error)
    cause: str
    retry_at: float


@dataclass(frozen=True, slots=True)
class TrunkUnregistered:
    trunk: str


@dataclass(frozen=True, slots=True)
class TrunkWentDown:
    trunk: str
    failures: int


@dataclass(frozen=True, slots=True)
class TrunkCameUp:
    trunk: str
    rtt: float


TrunkEvent = (
    TrunkRegistered | TrunkRegistrationFailed | TrunkUnregistered | TrunkWentDown | TrunkCameUp
)


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """A snapshot of one trunk for the CLI, the API and routing (``SipServer.trunk_states``).

    ``registration`` is None for a trunk that does not register; ``reachability`` is
    UNKNOWN while qualify is off or has not answered yet. ``expires_at``/``rtt`` are in the
    adapter's clock (the event loop's), ``status`` and ``cause`` those of the last outcome.
    """

    name: str
    registration: RegistrationState | None
    status: int | None = None
    cause: str = ""
    expires_at: float | None = None
    retry_at: float | None = None
    reachability: Reachability = Reachability.UNKNOWN
    rtt: float | None = None
    qualify_failures: int = 0

    @property
    def usable(self) -> bool:
        """Worth sending a call to: registered (or not registering) and not down."""
        reg_ok = self.registration in (None, RegistrationState.REGISTERED)
        return reg_ok and self.reachability is not Reachability.DOWN


# -- helpers ---------------------------------------------------------------------------------


def authorization_for(
    challenge: Response,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
) -> tuple[str, str]:
    """The (header name, value) that answers a 401 or 407 to ``method uri``.

    RFC 3261 §22.2 (401: WWW-Authenticate → Authorization) and §22.3 (407:
    Proxy-Authenticate → Proxy-Authorization); the first Digest challenge we support wins
    (RFC 8760 §2.4). Raises ``DigestError`` when none is usable. For challenged INVITEs and
    BYEs towards a trunk as well as REGISTER.
    """
    if challenge.status == 407:
        offered, name = challenge.get_all("Proxy-Authenticate"), "Proxy-Authorization"
    else:
        offered, name = challenge.get_all("WWW-Authenticate"), "Authorization"
    value = choose_challenge(offered)
    return name, build_authorization(method, uri, username, password, value, nc, cnonce)


def _uri_key(uri: Uri) -> tuple[str, str, str, int, str]:
    # RFC 3261 §19.1.4, reduced: user case-sensitive, host case-insensitive, default port
    # and transport filled in.
    host, port = uri.host_port(5061 if uri.scheme == "sips" else 5060)
    return (uri.scheme, uri.user_unescaped() or "", host.lower(), port, uri.transport or "udp")


def same_contact(a: str, b: str) -> bool:
    """Whether two Contact URIs (``<...>`` allowed) designate the same binding."""
    try:
        ua, ub = parse_name_addr(a).uri, parse_name_addr(b).uri
    except ParseError:
        return False
    return ua.is_sip and ub.is_sip and _uri_key(ua) == _uri_key(ub)


def refresh_delay(granted: float) -> float:
    """Seconds after a 200 at which the binding is refreshed (see the module docstring)."""
    return max(granted / 2, min(granted * REFRESH_SHARE, granted - REFRESH_MARGIN))


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value.strip().split(";")[0].split("(")[0].strip())
    except ValueError:
        return None
    return n if n >= 0 else None


# -- registration ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Challenge:
    response: Response  # the 401/407 itself
    nonce: str
    nc: int  # the last nonce-count used with it


@dataclass(slots=True)
class _Attempt:
    cseq: int
    expires: int
    # Credentials of this request answered the challenge just received (not a cached one).
    fresh_answer: bool = False
    stale_rounds: int = 0
    retried_423: bool = False


class _Outputs:
    """The outputs every sans-IO machine here shares: requests to send, events, the next
    timer (the driver reads them after each input)."""

    __slots__ = ()
    _out: deque[Request]
    _events: deque[TrunkEvent]
    _timer: float | None

    def requests_to_send(self) -> list[Request]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> TrunkEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self._timer


class TrunkRegistration(_Outputs):
    """The registration of one trunk at its carrier (see the module docstring).

    ``contact`` is our Contact for this trunk, with angle brackets
    (``SipStack.contact_for``). Inputs: :meth:`start`, :meth:`handle_timer`,
    :meth:`receive_response`, :meth:`timed_out`, :meth:`stop`. Outputs:
    :meth:`requests_to_send` (without Via), :meth:`next_event`, :meth:`get_timer`.
    """

    def __init__(self, trunk: Trunk, contact: str, *, call_id: str | None = None) -> None:
        if trunk.username is None or trunk.password is None:
            raise ValueError(f"trunk {trunk.name!r} registers without credentials")
        self.trunk = trunk
        self.contact = contact
        self.call_id = call_id or f"{secrets.token_hex(10)}@switchboard"
        self.from_tag = secrets.token_hex(6)
        self.state = RegistrationState.UNREGISTERED
        self.status: int | None = None
        self.cause = ""
        self.expires = trunk.expires  # what we ask for (423 raises it)
        self.expires_at: float | None = None
        self.retry_at: float | None = None
        self.failures = 0  # in a row
        self._cseq = 0
        self._attempt: _Attempt | None = None
        self._challenge: _Challenge | None = None
        self._timer: float | None = None
        self._stopping = False
        self._out: deque[Request] = deque()
        self._events: deque[TrunkEvent] = deque()

    # -- outputs -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """A REGISTER is waiting for its final response."""
        return self._attempt is not None

    def status_snapshot(self) -> TrunkStatus:
        return TrunkStatus(
            name=self.trunk.name,
            registration=self.state,
            status=self.status,
            cause=self.cause,
            expires_at=self.expires_at,
            retry_at=self.retry_at,
        )

    # -- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register now."""
        self._stopping = False
        self._timer = now

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer or self._stopping:
            return
        self._timer = None
        if self._attempt is not None:
            return  # still waiting for the last one; its outcome re-arms the timer
        if self.state is not RegistrationState.REGISTERED:
            self._move(RegistrationState.REGISTERING)
        self._send(self.expires)

    def receive_response(self, response: Response, now: float) -> None:
        """A response to one of our REGISTERs (stale transactions are ignored)."""
        attempt = self._attempt
        if attempt is None or response.cseq[0] != attempt.cseq or response.status < 200:
            return
        self._attempt = None
        status = response.status
        if self._stopping:
            # Unregistering: answer one challenge, accept whatever else comes.
            if status in (401, 407) and not attempt.fresh_answer:
                self._send(0, answer=response)
            return
        if status in (401, 407):
            self._on_challenge(response, attempt, now)
        elif 200 <= status < 300:
            self._on_ok(response, attempt, now)
        elif status == 423:
            self._on_too_brief(response, attempt, now)
        elif status == 403:
            self._fail(now, status, "forbidden", forbidden=True)
        else:
            retry_after = _int_or_none(response.get("Retry-After"))
            self._fail(now, status, response.reason or str(status), retry_after=retry_after)

    def timed_out(self, now: float, cseq: int | None = None, cause: str = "timeout") -> None:
        """The REGISTER got no final response (RFC 3261 §17.1.2.2, Timer F), or the
        transport could not deliver it (§8.1.3.1; ``cause`` says why, e.g. a carrier
        certificate that failed verification). ``cseq`` names the request that timed out;
        a superseded one is ignored."""
        if self._attempt is None or (cseq is not None and cseq != self._attempt.cseq):
            return
        self._attempt = None
        if not self._stopping:
            self._fail(now, None, cause)

    def stop(self, now: float) -> None:
        """Remove our binding (``Expires: 0``, RFC 3261 §10.2.2) and stop refreshing."""
        had_binding = self.state is RegistrationState.REGISTERED or self._attempt is not None
        self._stopping = True
        self._timer = None
        if had_binding:
            self._send(0)
        if self.state is not RegistrationState.UNREGISTERED:
            self._move(RegistrationState.UNREGISTERED)
            self.expires_at = None
            self.retry_at = None
            self._events.append(TrunkUnregistered(self.trunk.name))

    # -- internals ---------------------------------------------------------------------

    def _move(self, new: RegistrationState) -> None:
        if new not in REGISTRATION_TRANSITIONS[self.state]:
            raise RuntimeError(f"registration of {self.trunk.name}: {self.state} -> {new}")
        self.state = new

    def _build(self, expires: int) -> Request:
        self._cseq += 1
        t = self.trunk
        contact = self.contact + (";expires=0" if expires == 0 else "")
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"<{t.aor}>;tag={self.from_tag}"),
            ("To", f"<{t.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", contact),
            ("Expires", str(expires)),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE"),
        ]
        return Request("REGISTER", t.registrar_uri, headers)

    def _send(self, expires: int, *, answer: Response | None = None) -> None:
        req = self._build(expires)
        attempt = _Attempt(cseq=self._cseq, expires=expires)
        assert self.trunk.username is not None and self.trunk.password is not None
        if answer is not None:
            # Credentials for the challenge just received: nc starts again at 1.
            nonce = self._nonce_of(answer)
            self._challenge = _Challenge(answer, nonce, 0) if nonce is not None else None
            attempt.fresh_answer = True
        ch = self._challenge
        if ch is not None:
            ch.nc += 1
            try:
                name, value = authorization_for(
                    ch.response,
                    "REGISTER",
                    req.uri,
                    self.trunk.username,
                    self.trunk.password,
                    nc=ch.nc,
                )
            except DigestError:
                self._challenge = None
            else:
                req.add(name, value)
        self._attempt = attempt
        self._out.append(req)

    @staticmethod
    def _nonce_of(response: Response) -> str | None:
        header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        try:
            return parse_challenge(choose_challenge(response.get_all(header))).nonce
        except DigestError:
            return None

    def _on_challenge(self, response: Response, attempt: _Attempt, now: float) -> None:
        nonce = self._nonce_of(response)
        if nonce is None:
            self._challenge = None
            self._fail(now, response.status, "no usable challenge")
            return
        header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        stale = parse_challenge(choose_challenge(response.get_all(header))).stale
        previous = self._challenge
        same_nonce = previous is not None and previous.nonce == nonce
        stale_rounds = attempt.stale_rounds + 1 if stale else 0
        # RFC 7616 §3.3: a refused answer is challenged again without stale; the same nonce
        # again says so plainly (RFC 7616 §3.3), a fresh one after our fresh answer too.
        if (attempt.fresh_answer and not stale) or (same_nonce and not stale):
            self._challenge = None
            self._fail(now, response.status, "credentials rejected")
            return
        if stale_rounds > MAX_STALE_ROUNDS:
            self._challenge = None
            self._fail(now, response.status, "stale nonce again")
            return
        self._send(attempt.expires, answer=response)
        assert self._attempt is not None
        self._attempt.stale_rounds = stale_rounds
        self._attempt.retried_423 = attempt.retried_423

    def _on_ok(self, response: Response, attempt: _Attempt, now: float) -> None:
        if attempt.expires == 0:
            return  # our unregister went through
        granted = self._granted(response, attempt.expires)
        self.status, self.cause = response.status, ""
        self.failures = 0
        self.retry_at = None
        if granted <= 0:
            # The registrar kept no binding for us (RFC 3261 §10.3 step 8 lists the ones in
            # force): try again as after a failure.
            self._fail(now, response.status, "binding not granted")
            return
        changed = self.state is not RegistrationState.REGISTERED
        self._move(RegistrationState.REGISTERED)
        self.expires_at = now + granted
        self._timer = now + refresh_delay(granted)
        if changed:
            self._events.append(TrunkRegistered(self.trunk.name, granted, self._timer))

    def _granted(self, response: Response, asked: int) -> int:
        """Our binding's interval in a 200 (RFC 3261 §10.2.4)."""
        try:
            contacts = response.contacts
        except ParseError:
            contacts = []
        header = _int_or_none(response.get("Expires"))
        for c in contacts:
            if not c.wildcard and _uri_key_safe(c.uri) == _uri_key_safe(self._contact_uri()):
                value = _int_or_none(c.params.get("expires"))
                if value is not None:
                    return value
                return header if header is not None else asked
        if contacts and header is None:
            # Bindings listed, ours not among them (a registrar that rewrote our Contact,
            # e.g. for NAT): take what we asked for rather than fail a working trunk.
            self.cause = "own contact not listed"
        return header if header is not None else asked

    def _contact_uri(self) -> Uri:
        return parse_name_addr(self.contact).uri

    def _on_too_brief(self, response: Response, attempt: _Attempt, now: float) -> None:
        minimum = _int_or_none(response.get("Min-Expires"))
        if minimum is None or minimum <= attempt.expires or attempt.retried_423:
            self._fail(now, 423, "interval too brief")
            return
        self.expires = minimum  # RFC 3261 §10.2.8: ask again with at least Min-Expires
        self._send(minimum)
        assert self._attempt is not None
        self._attempt.retried_423 = True

    def _fail(
        self,
        now: float,
        status: int | None,
        cause: str,
        *,
        forbidden: bool = False,
        retry_after: int | None = None,
    ) -> None:
        self.failures += 1
        self.status, self.cause = status, cause
        self.expires_at = None
        if forbidden:
            delay = self.trunk.max_backoff
            state = RegistrationState.FORBIDDEN
        else:
            delay = min(
                self.trunk.retry_interval * 2.0 ** (self.failures - 1), self.trunk.max_backoff
            )
            if retry_after is not None:
                delay = max(delay, float(min(retry_after, 86400)))
            state = RegistrationState.FAILED
        if self.state is not state:
            self._move(state)
        self.retry_at = self._timer = now + delay
        self._events.append(
            TrunkRegistrationFailed(self.trunk.name, state, status, cause, self.retry_at)
        )


def _uri_key_safe(uri: Uri) -> tuple[str, str, str, int, str] | None:
    return _uri_key(uri) if uri.is_sip else None


# -- qualify ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TrunkQualify(_Outputs):
    """OPTIONS pings to one trunk (see the module docstring).

    ``from_host`` is our address as the carrier sees it (for From). Inputs: :meth:`start`,
    :meth:`handle_timer`, :meth:`receive_response`, :meth:`timed_out`. Outputs as for
    :class:`TrunkRegistration`.
    """

    trunk: Trunk
    from_host: str
    state: Reachability = Reachability.UNKNOWN
    failures: int = 0  # in a row
    rtt: float | None = None
    _timer: float | None = None
    _sent_at: float | None = None
    _cseq: int = 0
    _call_id: str = ""
    _out: deque[Request] = field(default_factory=deque)
    _events: deque[TrunkEvent] = field(default_factory=deque)

    @property
    def pending(self) -> bool:
        return self._sent_at is not None

    def start(self, now: float) -> None:
        if self.trunk.qualify > 0:
            self._timer = now

    def stop(self) -> None:
        self._timer = None

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer or self._sent_at is not None:
            return
        self._timer = None
        self._sent_at = now
        self._cseq += 1
        self._call_id = f"{secrets.token_hex(10)}@switchboard"
        t = self.trunk
        user = t.username or "switchboard"
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{self.from_host}>;tag={secrets.token_hex(6)}"),
            ("To", f"<{t.registrar_uri}>"),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} OPTIONS"),
            ("Accept", "application/sdp"),
        ]
        self._out.append(Request("OPTIONS", t.registrar_uri, headers))

    def receive_response(self, response: Response, now: float) -> None:
        # RFC 3261 §11.2: any final response shows the carrier's SIP stack is alive.
        if self._sent_at is None or response.status < 200 or response.call_id != self._call_id:
            return
        self.rtt = now - self._sent_at
        self._done(now)
        self.failures = 0
        if self.state is not Reachability.UP:
            self._move(Reachability.UP)
            self._events.append(TrunkCameUp(self.trunk.name, self.rtt))

    def timed_out(self, now: float) -> None:
        if self._sent_at is None:
            return
        self._done(now)
        self.failures += 1
        if self.failures >= self.trunk.qualify_failures and self.state is not Reachability.DOWN:
            self._move(Reachability.DOWN)
            self._events.append(TrunkWentDown(self.trunk.name, self.failures))

    def _done(self, now: float) -> None:
        assert self._sent_at is not None
        self._timer = max(now, self._sent_at + self.trunk.qualify)
        self._sent_at = None

    def _move(self, new: Reachability) -> None:
        if new not in QUALIFY_TRANSITIONS[self.state]:
            raise RuntimeError(f"qualify of {self.trunk.name}: {self.state} -> {new}")
        self.state = new
