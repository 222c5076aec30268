"""Trunk registration (RFC 3261 §10.2) and OPTIONS qualify (§11), sans-IO, on a fake clock.

The registrar on the other side is built from our own server-side digest code
(:class:`pbx.digest.DigestAuthenticator`), so every Authorization the client computes is
checked by an independent implementation of RFC 7616 / RFC 8760.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.digest import AuthOutcome, DigestAuthenticator
from pbx.message import Request, Response, make_response, parse_message
from pbx.trunks import (
    REGISTRATION_TRANSITIONS,
    Reachability,
    RegistrationState,
    Trunk,
    TrunkCameUp,
    TrunkEvent,
    TrunkQualify,
    TrunkRegistered,
    TrunkRegistration,
    TrunkRegistrationFailed,
    TrunkUnregistered,
    TrunkWentDown,
    authorization_for,
    refresh_delay,
    same_contact,
)

CONTACT = "<sip:sbtrunk@127.0.0.1:5070>"
TRUNK = Trunk(
    name="carrier",
    host="127.0.0.1",
    port=5062,
    username="sbtrunk",
    password="trunkpw",
    registers=True,
    expires=3600,
    retry_interval=60,
)
VIA = "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bKtest"


def wire(req: Request) -> Request:
    """The request as the carrier parses it (with the Via the adapter adds)."""
    req.add("Via", VIA, first=True)
    msg = parse_message(req.serialize())
    assert isinstance(msg, Request)
    return msg


@dataclass
class FakeRegistrar:
    """A registrar that challenges with our own DigestAuthenticator."""

    password: str = "trunkpw"
    algorithms: tuple[str, ...] = ("MD5",)
    auth: DigestAuthenticator = field(init=False)
    other_contacts: list[str] = field(default_factory=list)
    grant: int | None = None  # cap on the interval
    expires_in_contact: bool = True
    seen: list[Request] = field(default_factory=list)
    nonce_lifetime: float = 300.0

    def __post_init__(self) -> None:
        self.auth = DigestAuthenticator(
            "carrier.example", b"k" * 32, self.algorithms, self.nonce_lifetime
        )

    def handle(self, req: Request, now: float) -> Response:
        req = wire(req)
        self.seen.append(req)
        value = req.get("Authorization")
        if value is None:
            return self._challenge(req, now)
        result = self.auth.verify("REGISTER", value, now, lambda u, r: self.password)
        if result.outcome is AuthOutcome.STALE:
            return self._challenge(req, now, stale=True)
        if not result.ok:
            return self._challenge(req, now, nonce=result.nonce)
        asked = int(req.get("Expires") or "3600")
        granted = min(asked, self.grant) if self.grant is not None else asked
        resp = make_response(req, 200, to_tag="reg")
        contact = req.contacts[0]
        for other in self.other_contacts:
            resp.add("Contact", other)
        if self.expires_in_contact:
            resp.add("Contact", f"<{contact.uri}>;expires={granted}")
        else:
            resp.add("Contact", f"<{contact.uri}>")
            resp.add("Expires", str(granted))
        return resp

    def _challenge(
        self, req: Request, now: float, *, stale: bool = False, nonce: str | None = None
    ) -> Response:
        resp = make_response(req, 401, to_tag="reg")
        for value in self.auth.challenge(now, stale=stale, nonce=nonce):
            resp.add("WWW-Authenticate", value)
        return resp


def registration(trunk: Trunk = TRUNK) -> TrunkRegistration:
    return TrunkRegistration(trunk, CONTACT, call_id="fixed@switchboard")


def events(core: TrunkRegistration | TrunkQualify) -> list[TrunkEvent]:
    out = []
    while (ev := core.next_event()) is not None:
        out.append(ev)
    return out


def exchange(core: TrunkRegistration, registrar: FakeRegistrar, now: float) -> int:
    """Deliver every queued REGISTER and its answer, round after round; count requests."""
    sent = 0
    while reqs := core.requests_to_send():
        for req in reqs:
            sent += 1
            core.receive_response(registrar.handle(req, now), now)
    return sent


def fire(core: TrunkRegistration, now: float) -> None:
    core.handle_timer(now)


# -- building the REGISTER -----------------------------------------------------------------


def test_first_register_follows_rfc3261_10_2() -> None:
    core = registration()
    core.start(0.0)
    assert core.get_timer() == 0.0
    fire(core, 0.0)
    assert core.state is RegistrationState.REGISTERING
    [req] = core.requests_to_send()
    req = wire(req)
    assert req.method == "REGISTER"
    assert req.uri == "sip:127.0.0.1:5062"  # domain only, no user part (§10.2)
    assert str(req.to.uri) == "sip:sbtrunk@127.0.0.1" == str(req.from_.uri)
    assert req.from_.tag and req.to.tag is None
    assert req.call_id == "fixed@switchboard"
    assert req.cseq == (1, "REGISTER")
    assert req.get("Expires") == "3600"
    assert same_contact(req.get("Contact") or "", CONTACT)
    assert req.get("Authorization") is None


@pytest.mark.parametrize("algorithms", [("MD5",), ("SHA-256",), ("SHA-256", "MD5")])
def test_challenge_answered_and_registered(algorithms: tuple[str, ...]) -> None:
    registrar = FakeRegistrar(algorithms=algorithms)
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    assert exchange(core, registrar, 0.0) == 2
    assert core.state is RegistrationState.REGISTERED
    first, second = registrar.seen
    assert (first.cseq[0], second.cseq[0]) == (1, 2)  # CSeq up on the auth retry (§10.2)
    assert second.call_id == first.call_id
    auth = second.get("Authorization") or ""
    assert f"algorithm={algorithms[0]}" in auth  # RFC 8760 §2.4: the first one we support
    assert "qop=auth" in auth and "nc=00000001" in auth
    [ev] = events(core)
    assert ev == TrunkRegistered("carrier", 3600, refresh_delay(3600))
    assert core.expires_at == 3600.0


def test_refresh_reuses_the_nonce_with_the_next_nonce_count() -> None:
    registrar = FakeRegistrar()
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    exchange(core, registrar, 0.0)
    events(core)
    due = core.get_timer()
    assert due is not None
    assert due == pytest.approx(3060.0)  # 85 % of 3600
    registrar.auth.nonce_lifetime = 10_000
    fire(core, due - 1)
    assert core.requests_to_send() == []
    fire(core, due)
    assert exchange(core, registrar, due) == 1  # preemptive credentials, no round trip
    refresh = registrar.seen[-1]
    assert refresh.cseq[0] == 3 and refresh.call_id == "fixed@switchboard"
    assert "nc=00000002" in (refresh.get("Authorization") or "")
    assert core.state is RegistrationState.REGISTERED
    assert events(core) == []  # a refresh is no state change


def test_refresh_with_expired_nonce_gets_stale_and_recovers() -> None:
    registrar = FakeRegistrar()
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    exchange(core, registrar, 0.0)
    due = core.get_timer()
    assert due is not None
    fire(core, due)  # nonce_lifetime 300 s: the cached nonce is stale by now
    assert exchange(core, registrar, due) == 2
    assert core.state is RegistrationState.REGISTERED
    assert "nc=00000001" in (registrar.seen[-1].get("Authorization") or "")


def test_wrong_password_fails_without_looping() -> None:
    registrar = FakeRegistrar(password="other")
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    assert exchange(core, registrar, 0.0) == 2  # REGISTER, REGISTER with credentials, stop
    assert core.state is RegistrationState.FAILED
    assert (core.status, core.cause) == (401, "credentials rejected")
    [ev] = events(core)
    assert isinstance(ev, TrunkRegistrationFailed)
    assert ev.retry_at == 60.0


def test_fresh_nonce_after_a_refused_answer_also_fails() -> None:
    """Kamailio answers a wrong password with a new nonce and no stale: still refused."""
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    auth = DigestAuthenticator("carrier.example", b"k" * 32)
    for _ in range(2):
        [req] = core.requests_to_send()
        resp = make_response(wire(req), 401, to_tag="x")
        resp.add("WWW-Authenticate", auth.challenge(0.0)[0])
        core.receive_response(resp, 0.0)
    assert core.requests_to_send() == []
    assert core.state is RegistrationState.FAILED


def test_multi_contact_200_uses_our_binding() -> None:
    registrar = FakeRegistrar(
        other_contacts=[
            "<sip:sbtrunk@192.0.2.7:5060>;expires=3000",
            "<sip:sbtrunk@127.0.0.1:5999>;expires=100",
        ],
        grant=600,
    )
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    exchange(core, registrar, 0.0)
    assert core.expires_at == 600.0
    assert core.get_timer() == pytest.approx(510.0)


def test_expires_header_when_our_contact_has_no_param() -> None:
    registrar = FakeRegistrar(expires_in_contact=False, grant=120)
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    exchange(core, registrar, 0.0)
    assert core.expires_at == 120.0


def _answer(core: TrunkRegistration, status: int, now: float, **headers: str) -> Request:
    [req] = core.requests_to_send()
    req = wire(req)
    resp = make_response(req, status, to_tag="x")
    for name, value in headers.items():
        resp.add(name.replace("_", "-"), value)
    core.receive_response(resp, now)
    return req


def test_423_retries_with_min_expires() -> None:
    core = registration(dataclasses.replace(TRUNK, expires=60))
    core.start(0.0)
    fire(core, 0.0)
    _answer(core, 423, 0.0, Min_Expires="300")
    [retry] = core.requests_to_send()
    assert retry.get("Expires") == "300"  # RFC 3261 §10.2.8
    assert retry.cseq[0] == 2


def test_second_423_fails() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    _answer(core, 423, 0.0, Min_Expires="7200")
    _answer(core, 423, 0.0, Min_Expires="7200")
    assert core.state is RegistrationState.FAILED


def test_backoff_doubles_up_to_ten_times_retry_interval() -> None:
    core = registration()
    core.start(0.0)
    now = 0.0
    delays = []
    for _ in range(7):
        fire(core, now)
        _answer(core, 500, now)
        assert core.state is RegistrationState.FAILED
        due = core.get_timer()
        assert due is not None
        delays.append(due - now)
        now = due
    assert delays == [60, 120, 240, 480, 600, 600, 600]


def test_timeout_counts_as_failure() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    core.requests_to_send()
    core.timed_out(32.0)
    assert core.state is RegistrationState.FAILED
    assert (core.status, core.cause) == (None, "timeout")
    assert core.get_timer() == 92.0


def test_503_retry_after_is_honoured() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    _answer(core, 503, 0.0, Retry_After="900")
    assert core.get_timer() == 900.0


def test_403_is_forbidden_and_waits_the_longest_backoff() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    _answer(core, 403, 0.0)
    assert core.state is RegistrationState.FORBIDDEN
    assert core.get_timer() == 600.0
    for t in (60.0, 300.0, 599.0):
        fire(core, t)
        assert core.requests_to_send() == []
    fire(core, 600.0)
    assert len(core.requests_to_send()) == 1
    assert core.state.value == "registering"


def test_stale_responses_are_ignored() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    [req] = core.requests_to_send()
    old = make_response(wire(req), 200, to_tag="x")
    old.set("CSeq", "99 REGISTER")
    core.receive_response(old, 0.0)
    assert core.state is RegistrationState.REGISTERING
    core.receive_response(make_response(wire(req), 100), 0.0)
    assert core.pending


def test_unregister_on_stop() -> None:
    registrar = FakeRegistrar()
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    exchange(core, registrar, 0.0)
    events(core)
    core.stop(10.0)
    assert events(core) == [TrunkUnregistered("carrier")]
    assert exchange(core, registrar, 10.0) == 1
    last = registrar.seen[-1]
    assert last.get("Expires") == "0" and "expires=0" in (last.get("Contact") or "")
    assert core.state is RegistrationState.UNREGISTERED
    assert core.get_timer() is None


def test_stop_before_registering_sends_nothing() -> None:
    core = registration()
    core.start(0.0)
    core.stop(0.0)
    assert core.requests_to_send() == []
    assert core.state is RegistrationState.UNREGISTERED


def test_transition_table_is_closed() -> None:
    assert set(REGISTRATION_TRANSITIONS) == set(RegistrationState)
    core = registration()
    with pytest.raises(RuntimeError):
        core._move(RegistrationState.REGISTERED)  # UNREGISTERED -> REGISTERED skips a step


def test_registration_needs_credentials() -> None:
    with pytest.raises(ValueError):
        TrunkRegistration(Trunk(name="ip", host="127.0.0.1"), CONTACT)


# -- helpers ---------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=86400))
def test_refresh_is_inside_the_interval(granted: int) -> None:
    delay = refresh_delay(granted)
    assert granted / 2 <= delay < granted
    assert delay <= granted * 0.85 + 1e-9 or delay == granted / 2


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("<sip:u@127.0.0.1:5070>", "sip:u@127.0.0.1:5070", True),
        ("<sip:u@HOST.example>", "<sip:u@host.example:5060>", True),
        ("<sip:u@h;transport=udp>", "<sip:u@h>", True),
        ("<sip:u@h;transport=tcp>", "<sip:u@h>", False),
        ("<sip:U@h>", "<sip:u@h>", False),  # user part is case-sensitive (§19.1.4)
        ("<sip:u@h:5071>", "<sip:u@h:5070>", False),
        ("<tel:+4100>", "<tel:+4100>", False),
        ("garbage<", "<sip:u@h>", False),
    ],
)
def test_same_contact(a: str, b: str, same: bool) -> None:
    assert same_contact(a, b) is same


def test_authorization_for_407_uses_proxy_headers() -> None:
    auth = DigestAuthenticator("carrier", b"s" * 32, ("SHA-256", "MD5"))
    invite = Request(
        "INVITE",
        "sip:5551000@carrier",
        [
            ("Via", VIA),
            ("From", "<sip:sbtrunk@carrier>;tag=1"),
            ("To", "<sip:5551000@carrier>"),
            ("Call-ID", "c"),
            ("CSeq", "1 INVITE"),
        ],
    )
    challenge = make_response(invite, 407, to_tag="t")
    for value in auth.challenge(0.0):
        challenge.add("Proxy-Authenticate", value)
    name, value = authorization_for(challenge, "INVITE", invite.uri, "sbtrunk", "pw")
    assert name == "Proxy-Authorization"
    result = auth.verify("INVITE", value, 1.0, lambda u, r: "pw")
    assert result.ok and result.algorithm == "SHA-256"


# -- qualify ---------------------------------------------------------------------------------


def qualify(failures: int = 3, every: int = 30) -> TrunkQualify:
    t = Trunk(name="carrier", host="127.0.0.1", port=5062, qualify=every, qualify_failures=failures)
    return TrunkQualify(t, "127.0.0.1")


def _ping(core: TrunkQualify, now: float) -> Request:
    core.handle_timer(now)
    [req] = core.requests_to_send()
    return wire(req)


@pytest.mark.parametrize("status", [200, 404, 405, 483, 503])
def test_any_response_is_reachable(status: int) -> None:
    core = qualify()
    core.start(0.0)
    req = _ping(core, 0.0)
    assert req.method == "OPTIONS" and req.uri == "sip:127.0.0.1:5062"
    core.receive_response(make_response(req, status, to_tag="x"), 0.025)
    assert core.state is Reachability.UP
    assert core.rtt == pytest.approx(0.025)
    [ev] = events(core)
    assert isinstance(ev, TrunkCameUp) and ev.rtt == pytest.approx(0.025)
    assert core.get_timer() == 30.0


def test_down_after_n_failures_up_on_success() -> None:
    core = qualify(failures=3)
    core.start(0.0)
    now = 0.0
    for i in range(3):
        _ping(core, now)
        assert core.state is not Reachability.DOWN
        now += 32.0
        core.timed_out(now)
        timer = core.get_timer()
        assert timer is not None
        now = timer
        if i < 2:
            assert events(core) == []
    assert core.state is Reachability.DOWN
    assert events(core) == [TrunkWentDown("carrier", 3)]
    req = _ping(core, now)
    core.receive_response(make_response(req, 200, to_tag="x"), now + 0.01)
    assert core.state.value == "up"
    assert [type(e) for e in events(core)] == [TrunkCameUp]


def test_one_ping_at_a_time_and_late_answers_ignored() -> None:
    core = qualify(every=5)
    core.start(0.0)
    first = _ping(core, 0.0)
    core.handle_timer(10.0)
    assert core.requests_to_send() == []
    core.timed_out(32.0)
    assert core.get_timer() == 32.0  # overdue: ping again at once
    core.receive_response(make_response(first, 200, to_tag="x"), 33.0)
    assert core.state is Reachability.UNKNOWN  # nothing outstanding: ignored


def test_qualify_off() -> None:
    core = qualify(every=0)
    core.start(0.0)
    assert core.get_timer() is None


@given(st.lists(st.booleans(), max_size=40), st.integers(min_value=1, max_value=5))
def test_qualify_state_follows_the_outcomes(outcomes: list[bool], n: int) -> None:
    core = qualify(failures=n)
    core.start(0.0)
    now = 0.0
    in_a_row = 0
    for ok in outcomes:
        timer = core.get_timer()
        assert timer is not None
        now = max(now, timer)
        req = _ping(core, now)
        if ok:
            core.receive_response(make_response(req, 200, to_tag="x"), now)
            in_a_row = 0
        else:
            core.timed_out(now + 32)
            in_a_row += 1
            now += 32
        if ok:
            assert core.state is Reachability.UP
        elif in_a_row >= n:
            assert core.state is Reachability.DOWN
    events(core)


@given(st.lists(st.sampled_from([200, 401, 403, 408, 423, 500, 503, 0]), max_size=30))
def test_registration_never_breaks_its_table(statuses: list[int]) -> None:
    """Any sequence of answers (0: timeout) keeps the machine in its table and armed."""
    core = registration()
    core.start(0.0)
    now = 0.0
    for status in statuses:
        timer = core.get_timer()
        if timer is not None:
            now = max(now, timer)
            core.handle_timer(now)
        reqs = core.requests_to_send()
        if not reqs:
            continue
        req = wire(reqs[-1])
        if status == 0:
            core.timed_out(now + 32)
            continue
        resp = make_response(req, status, to_tag="x")
        if status == 401:
            resp.add("WWW-Authenticate", 'Digest realm="r", nonce="n1", qop="auth"')
        if status == 200:
            resp.add("Contact", f"{CONTACT};expires=60")
        if status == 423:
            resp.add("Min-Expires", "7200")
        core.receive_response(resp, now)
        assert core.pending or core.get_timer() is not None
    events(core)


def test_200_that_drops_our_binding_is_a_failure() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    [req] = core.requests_to_send()
    ok = make_response(wire(req), 200, to_tag="x")
    ok.add("Contact", f"{CONTACT};expires=0")
    ok.add("Contact", "<sip:sbtrunk@192.0.2.1>;expires=300")
    core.receive_response(ok, 0.0)
    assert core.state is RegistrationState.FAILED
    assert core.cause == "binding not granted"


def test_timeout_of_a_superseded_register_is_ignored() -> None:
    core = registration()
    core.start(0.0)
    fire(core, 0.0)
    [first] = core.requests_to_send()
    core.stop(1.0)  # the unregister (CSeq 2) supersedes the first REGISTER
    core.timed_out(32.0, first.cseq[0])
    assert core.pending
    core.timed_out(33.0, 2)
    assert not core.pending
    assert core.state is RegistrationState.UNREGISTERED
