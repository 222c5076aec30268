"""RFC 3261 §17 transactions (with RFC 6026) on an in-memory pair with a fake clock."""

from __future__ import annotations

import pytest

from pbx.message import Request, Response, make_response, parse_message
from pbx.transaction import (
    BRANCH_COOKIE,
    T1,
    T2,
    T4,
    TABLES,
    TIMER_B,
    TIMER_D,
    TIMER_F,
    TIMER_H,
    TIMER_I,
    TIMER_J,
    TIMER_K,
    TIMER_L,
    TIMER_M,
    AckNotReceived,
    IllegalTransition,
    Input,
    Kind,
    RequestReceived,
    ResponseReceived,
    State,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    new_branch,
)
from tests.unit.txn_harness import CLIENT, SERVER, Pair, make_request

TO_TAG = "uas-tag-1"


def start(pair: Pair, method: str = "INVITE", **kw: object) -> tuple[str, Request]:
    request = make_request(method, transport=pair.transport, **kw)  # type: ignore[arg-type]
    key = pair.client.send_request(request, SERVER, pair.transport, pair.now)
    pair.collect()
    return key, request


def server_request(pair: Pair, method: str = "INVITE") -> RequestReceived:
    for _, event in reversed(pair.server_events):
        if isinstance(event, RequestReceived) and event.request.method == method:
            return event
    raise AssertionError(f"server got no {method}")


def reply(pair: Pair, status: int, method: str = "INVITE") -> Response:
    request = server_request(pair, method).request
    response = make_response(request, status, to_tag=TO_TAG)
    pair.server.send_response(response, pair.now)
    pair.collect()
    return response


def geometric(first: float, cap: float | None, until: float) -> list[float]:
    """Send times of a retransmission timer starting at ``first``, doubling, capped."""
    out, t, interval = [], 0.0, first
    while t + interval < until:
        t += interval
        out.append(t)
        interval = interval * 2 if cap is None else min(interval * 2, cap)
    return out


# ---------------------------------------------------------------------------------------
# The tables themselves
# ---------------------------------------------------------------------------------------

PEER_INPUTS = {
    Kind.ICT: (Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE, Input.TRANSPORT_ERROR),
    Kind.NICT: (Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE, Input.TRANSPORT_ERROR),
    Kind.IST: (Input.REQUEST, Input.ACK, Input.TRANSPORT_ERROR),
    Kind.NIST: (Input.REQUEST, Input.TRANSPORT_ERROR),
}


@pytest.mark.parametrize("kind", list(Kind))
def test_tables_cover_every_peer_input_in_every_live_state(kind: Kind) -> None:
    # A peer's message must never reach IllegalTransition.
    table = TABLES[kind]
    states = {state for state, _ in table}
    assert State.TERMINATED not in states
    for state in states:
        for event in PEER_INPUTS[kind]:
            assert (state, event) in table, (kind, state, event)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_state_in_a_table_is_reachable(kind: Kind) -> None:
    from pbx.transaction import INITIAL

    reached = {INITIAL[kind][0]}
    frontier = list(reached)
    while frontier:
        state = frontier.pop()
        for (src, _), (dst, _) in TABLES[kind].items():
            if src is state and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert {s for s, _ in TABLES[kind]} | {State.TERMINATED} == reached


@pytest.mark.parametrize(
    ("name", "reliable", "expected"),
    [
        ("A", False, T1),
        ("A", True, None),
        ("B", False, 64 * T1),
        ("D", False, 32.0),
        ("D", True, 0.0),
        ("E", False, T1),
        ("E", True, None),
        ("F", True, 64 * T1),
        ("G", False, T1),
        ("G", True, None),
        ("H", True, 64 * T1),
        ("I", False, T4),
        ("I", True, 0.0),
        ("J", False, 64 * T1),
        ("J", True, 0.0),
        ("K", False, T4),
        ("K", True, 0.0),
        ("L", False, 64 * T1),
        ("M", True, 64 * T1),
    ],
)
def test_timer_values_follow_rfc3261_table_4(
    name: str, reliable: bool, expected: float | None
) -> None:
    assert Timers().duration(name, reliable) == expected


def test_timer_constants() -> None:
    assert (T1, T2, T4) == (0.5, 4.0, 5.0)
    assert TIMER_B == TIMER_F == TIMER_H == TIMER_J == TIMER_L == TIMER_M == 32.0
    assert (TIMER_D, TIMER_I, TIMER_K) == (32.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        Timers().duration("Z", False)


def test_new_branch_has_the_magic_cookie_and_is_unique() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith(BRANCH_COOKIE) for b in branches)


# ---------------------------------------------------------------------------------------
# Client transactions: retransmission and timeouts
# ---------------------------------------------------------------------------------------


def test_ict_timer_a_doubles_without_cap_until_timer_b() -> None:
    pair = Pair()
    key, _ = start(pair)
    pair.advance(100)
    # RFC 3261 §17.1.1.2: A = T1, 2T1, 4T1, … ; B = 64*T1 ends it.
    assert pair.sent_times("INVITE", by=CLIENT) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert pair.events("client", TransactionTimedOut) == [
        (32.0, TransactionTimedOut(key, "INVITE"))
    ]
    assert pair.events("client", TransactionTerminated) == [(32.0, TransactionTerminated(key))]
    assert len(pair.client) == 0 and pair.client.get_timer() is None


def test_nict_timer_e_caps_at_t2_until_timer_f() -> None:
    pair = Pair()
    key, _ = start(pair, "OPTIONS")
    pair.advance(100)
    expected = [0.0, *geometric(T1, T2, 64 * T1)]
    assert expected[:7] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert pair.sent_times("OPTIONS", by=CLIENT) == expected
    assert pair.events("client", TransactionTimedOut) == [
        (32.0, TransactionTimedOut(key, "OPTIONS"))
    ]
    assert pair.client.state_of(key) is None


def test_nict_timer_e_is_t2_once_proceeding() -> None:
    pair = Pair()
    key, _ = start(pair, "OPTIONS")
    pair.transfer()
    reply(pair, 100, "OPTIONS")
    pair.transfer()
    assert pair.client.state_of(key) is State.PROCEEDING
    pair.advance(13)
    # §17.1.2.2: E fires at its pending deadline (0.5), then every T2.
    assert pair.sent_times("OPTIONS", by=CLIENT) == [0.0, 0.5, 4.5, 8.5, 12.5]
    pair.drop()
    pair.advance(40)
    assert pair.events("client", TransactionTimedOut)[0][0] == 32.0  # F still runs


def test_ict_provisional_stops_retransmission_and_timer_b() -> None:
    pair = Pair()
    key, _ = start(pair)
    pair.transfer()  # INVITE → server, which answers 100 Trying at once
    pair.transfer()
    assert pair.client.state_of(key) is State.PROCEEDING
    pair.advance(500)
    assert pair.sent_times("INVITE", by=CLIENT) == [0.0]
    assert pair.events("client", TransactionTimedOut) == []
    assert pair.client.state_of(key) is State.PROCEEDING  # waiting is the TU's business


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_reliable_client_transactions_do_not_retransmit(transport: str) -> None:
    pair = Pair(transport)
    ict, _ = start(pair)
    nict, _ = start(pair, "OPTIONS", call_id="other")
    pair.advance(100)
    assert pair.sent_times("INVITE", by=CLIENT) == [0.0]
    assert pair.sent_times("OPTIONS", by=CLIENT) == [0.0]
    assert {e.key for _, e in pair.events("client", TransactionTimedOut)} == {ict, nict}
    assert {t for t, _ in pair.events("client", TransactionTimedOut)} == {32.0}


# ---------------------------------------------------------------------------------------
# ICT: non-2xx final, ACK with the same branch, Timer D
# ---------------------------------------------------------------------------------------


def test_ict_acks_a_failure_with_the_invite_branch_and_waits_timer_d() -> None:
    pair = Pair()
    key, invite = start(pair, routes=("<sip:proxy.invalid;lr>",), one_via_line=True)
    pair.transfer()
    pair.transfer()  # 100 Trying
    pair.advance(1.0)
    reply(pair, 486)
    pair.transfer()  # the 486 reaches the client, which ACKs
    assert pair.client.state_of(key) is State.COMPLETED
    (ack,) = pair.transfer()
    assert isinstance(ack, Request) and ack.method == "ACK"
    # RFC 3261 §17.1.1.3
    assert ack.top_via.branch == invite.top_via.branch
    assert len(ack.vias) == 1
    assert ack.cseq == (1, "ACK")
    assert ack.to.tag == TO_TAG
    assert ack.from_.tag == "fromtag1"
    assert ack.uri == invite.uri
    assert ack.call_id == invite.call_id
    assert ack.get("Route") == "<sip:proxy.invalid;lr>"
    assert ack.get("Subject") is None
    responses = pair.events("client", ResponseReceived)
    assert [e.response.status for _, e in responses] == [100, 486]
    # Timer D = 32 s from the 486 (received at t=1.0).
    pair.advance(32.9)
    assert pair.client.state_of(key) is State.COMPLETED
    pair.advance(33.0)
    assert pair.client.state_of(key) is None
    assert pair.events("client", TransactionTerminated) == [(33.0, TransactionTerminated(key))]


def test_ict_completed_absorbs_retransmitted_finals_by_resending_the_ack() -> None:
    pair = Pair()
    key, _ = start(pair)
    pair.transfer()
    pair.transfer()  # 100 Trying
    reply(pair, 603)
    pair.transfer()
    pair.drop()  # the ACK is lost: the server retransmits 603 (Timer G)
    pair.advance(0.5)
    pair.transfer()  # 603 again
    assert pair.sent_times("ACK", by=CLIENT) == [0.0, 0.5]
    assert [e.response.status for _, e in pair.events("client", ResponseReceived)] == [100, 603]
    # A provisional or a 2xx after the failure does not resurrect anything; a 2xx goes up
    # so the TU can ACK and BYE it.
    late_180 = make_response(server_request(pair).request, 180, to_tag=TO_TAG)
    pair.deliver(late_180, to_server=False)
    late_200 = make_response(server_request(pair).request, 200, to_tag=TO_TAG)
    pair.deliver(late_200, to_server=False)
    assert [e.response.status for _, e in pair.events("client", ResponseReceived)] == [
        100,
        603,
        200,
    ]
    assert pair.client.state_of(key) is State.COMPLETED


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_ict_timer_d_is_zero_on_reliable_transports(transport: str) -> None:
    pair = Pair(transport)
    key, _ = start(pair)
    pair.transfer()
    pair.transfer()
    reply(pair, 404)
    pair.transfer()
    assert pair.client.state_of(key) is None  # Completed and Terminated at once
    assert pair.sent_times("ACK", by=CLIENT) == [0.0]
    assert pair.events("client", TransactionTerminated) == [(0.0, TransactionTerminated(key))]


# ---------------------------------------------------------------------------------------
# 2xx: RFC 6026 Accepted on both sides, and the UAS core's 2xx retransmission
# ---------------------------------------------------------------------------------------


def test_2xx_is_retransmitted_until_64_t1_without_ack() -> None:
    pair = Pair()
    ckey, _ = start(pair)
    pair.transfer()
    skey = server_request(pair).key
    assert skey is not None
    pair.transfer()  # 100
    ok = reply(pair, 200)
    assert pair.server.state_of(skey) is State.ACCEPTED
    pair.transfer()
    assert pair.client.state_of(ckey) is State.ACCEPTED
    pair.drop()
    pair.advance(100)
    # §13.3.1.4: T1, 2T1, … capped at T2, for 64*T1.
    assert pair.sent_times("200", by=SERVER) == [0.0, *geometric(T1, T2, 64 * T1)]
    assert pair.events("server", AckNotReceived) == [(32.0, AckNotReceived(skey, ok))]
    # Timer L and Timer M (RFC 6026) end both transactions at 64*T1.
    assert (32.0, TransactionTerminated(skey)) in pair.server_events
    assert (32.0, TransactionTerminated(ckey)) in pair.client_events
    assert pair.server.awaiting_ack == 0
    assert pair.server.get_timer() is None and pair.client.get_timer() is None


def test_2xx_retransmission_stops_on_the_matching_ack() -> None:
    pair = Pair()
    ckey, _ = start(pair)
    pair.transfer()
    pair.transfer()
    reply(pair, 200)
    pair.drop()  # first 200 lost
    pair.advance(0.5)
    (ok,) = pair.transfer()  # the retransmission arrives
    assert isinstance(ok, Response)
    assert [e.key for _, e in pair.events("client", ResponseReceived)] == [ckey, ckey]
    # The TU ACKs the 2xx itself, in a new transaction branch (§13.2.2.4).
    ack = make_request("ACK", to_tag=TO_TAG)
    pair.client.send_stateless(ack, SERVER, "UDP")
    pair.transfer()
    (_, event), *_ = pair.events("server", RequestReceived)[1:]
    assert isinstance(event, RequestReceived)
    assert event.request.method == "ACK" and event.key is None
    assert pair.server.awaiting_ack == 0
    pair.advance(100)
    assert pair.sent_times("200", by=SERVER) == [0.0, 0.5]
    assert pair.events("server", AckNotReceived) == []


def test_ack_with_another_to_tag_does_not_stop_2xx_retransmission() -> None:
    pair = Pair()
    start(pair)
    pair.transfer()
    reply(pair, 200)
    pair.deliver(make_request("ACK", to_tag="someone-else"))
    assert pair.server.awaiting_ack == 1
    pair.drop()
    pair.advance(2)
    assert pair.sent_times("200", by=SERVER) == [0.0, 0.5, 1.5]


def test_ict_accepted_passes_2xx_retransmissions_up_and_stray_2xx_after_timer_m() -> None:
    pair = Pair()
    ckey, _ = start(pair)
    pair.transfer()
    ok = reply(pair, 200)
    pair.transfer()
    pair.transfer()
    pair.deliver(ok, to_server=False)
    pair.deliver(make_response(server_request(pair).request, 180), to_server=False)
    pair.deliver(make_response(server_request(pair).request, 500), to_server=False)
    assert [(e.response.status, e.key) for _, e in pair.events("client", ResponseReceived)] == [
        (100, ckey),
        (200, ckey),
        (200, ckey),
    ]
    pair.advance(40)
    assert pair.client.state_of(ckey) is None
    pair.deliver(ok, to_server=False)
    stray = pair.events("client", ResponseReceived)[-1][1]
    assert isinstance(stray, ResponseReceived) and stray.key is None
    assert stray.response.status == 200


def test_ist_accepted_absorbs_invite_retransmissions_and_sends_tu_2xx_retransmissions() -> None:
    pair = Pair()
    ckey, _ = start(pair)
    pair.transfer()
    skey = server_request(pair).key or ""
    ok = reply(pair, 200)
    pair.drop()  # 100 and 200 lost: the client keeps retransmitting the INVITE
    pair.advance(0.5)
    assert [w.describe() for w in pair.in_flight] == ["INVITE", "200"]
    pair.transfer()
    # RFC 6026 §7.1: the INVITE retransmission is absorbed in Accepted, neither passed up
    # as a new request nor answered.
    assert len(pair.events("server", RequestReceived)) == 1
    assert pair.sent_times("200", by=SERVER) == [0.0, 0.5]
    assert pair.client.state_of(ckey) is State.ACCEPTED
    pair.server.send_response(ok, pair.now)  # a TU doing its own retransmission
    pair.collect()
    assert pair.sent_times("200", by=SERVER) == [0.0, 0.5, 0.5]
    assert pair.server.state_of(skey) is State.ACCEPTED
    with pytest.raises(IllegalTransition):
        reply(pair, 180)
    with pytest.raises(IllegalTransition):
        reply(pair, 486)


def test_same_branch_ack_in_accepted_goes_to_tu_and_stops_retransmission() -> None:
    # RFC 2543 peers ACK a 2xx with the INVITE's branch (or none): it matches the IST.
    pair = Pair()
    pair.deliver(make_request(branch=""))
    reply(pair, 200)
    ack = make_request("ACK", branch="", to_tag=TO_TAG)
    pair.deliver(ack)
    acks = [e for _, e in pair.events("server", RequestReceived) if e.request.method == "ACK"]
    assert len(acks) == 1 and acks[0].key is None
    assert pair.server.awaiting_ack == 0


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_reliable_2xx_is_not_retransmitted_but_a_missing_ack_is_reported(transport: str) -> None:
    pair = Pair(transport)
    start(pair)
    pair.transfer()
    skey = server_request(pair).key
    ok = reply(pair, 200)
    pair.advance(100)
    assert pair.sent_times("200", by=SERVER) == [0.0]
    assert pair.events("server", AckNotReceived) == [(32.0, AckNotReceived(skey or "", ok))]


# ---------------------------------------------------------------------------------------
# IST: 100 Trying, Timer G/H/I, Via stamping
# ---------------------------------------------------------------------------------------


def test_ist_sends_100_trying_at_once_and_answers_retransmissions_with_the_last_response() -> None:
    pair = Pair()
    start(pair)
    pair.transfer()
    assert pair.sent_times("100", by=SERVER) == [0.0]
    trying = parse_message(pair.sent[-1].data)
    assert isinstance(trying, Response) and trying.to.tag is None
    pair.drop()
    pair.advance(0.5)
    pair.transfer()  # INVITE retransmission → 100 again, not a new request
    assert pair.sent_times("100", by=SERVER) == [0.0, 0.5]
    reply(pair, 180)
    pair.drop()
    pair.advance(1.5)
    pair.transfer()
    assert pair.sent_times("180", by=SERVER) == [0.5, 1.5]
    assert len(pair.events("server", RequestReceived)) == 1


def test_ist_timer_g_caps_at_t2_and_timer_h_times_out() -> None:
    pair = Pair()
    start(pair)
    pair.transfer()
    skey = server_request(pair).key
    reply(pair, 486)
    pair.drop()
    pair.advance(100)
    assert pair.sent_times("486", by=SERVER) == [0.0, *geometric(T1, T2, 64 * T1)]
    assert pair.events("server", TransactionTimedOut) == [
        (32.0, TransactionTimedOut(skey or "", "INVITE"))
    ]
    assert pair.server.state_of(skey or "") is None


def test_ist_ack_confirms_and_timer_i_terminates() -> None:
    pair = Pair()
    ckey, _ = start(pair)
    pair.transfer()
    skey = server_request(pair).key or ""
    pair.advance(2.0)
    pair.drop()
    reply(pair, 486)
    pair.transfer()
    pair.transfer()  # the ACK
    assert pair.server.state_of(skey) is State.CONFIRMED
    assert all(e.request.method != "ACK" for _, e in pair.events("server", RequestReceived))
    # Confirmed absorbs ACK and INVITE retransmissions.
    pair.deliver(make_request("ACK", branch=server_request(pair).request.top_via.branch))
    pair.deliver(make_request(branch=server_request(pair).request.top_via.branch))
    assert pair.sent_times("486", by=SERVER) == [2.0]
    pair.advance(2.0 + T4 - 0.1)
    assert pair.server.state_of(skey) is State.CONFIRMED
    pair.advance(2.0 + T4)
    assert pair.server.state_of(skey) is None
    assert (7.0, TransactionTerminated(skey)) in pair.server_events
    pair.advance(40)
    assert len(pair.client) == 0 and len(pair.server) == 0
    assert pair.client.state_of(ckey) is None


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_ist_reliable_no_timer_g_and_zero_timer_i(transport: str) -> None:
    pair = Pair(transport)
    start(pair)
    pair.transfer()
    skey = server_request(pair).key or ""
    reply(pair, 500)
    pair.advance(10)
    assert pair.sent_times("500", by=SERVER) == [0.0]
    assert pair.server.state_of(skey) is State.COMPLETED
    pair.transfer()  # the 500 (the client then ACKs)
    pair.transfer()  # the ACK
    assert pair.server.state_of(skey) is None
    assert pair.events("server", TransactionTerminated) == [(10.0, TransactionTerminated(skey))]


@pytest.mark.parametrize(
    ("via_host", "rport", "expected"),
    [
        # §18.2.1: received when the sent-by host is not the source address.
        ("client.invalid", False, {"received": CLIENT[0]}),
        # RFC 3581 §4: rport filled in, received added even when equal.
        ("client.invalid", True, {"received": CLIENT[0], "rport": str(CLIENT[1])}),
        (CLIENT[0], True, {"received": CLIENT[0], "rport": str(CLIENT[1])}),
        (CLIENT[0], False, {}),
    ],
)
def test_received_and_rport_are_stamped_on_the_request_and_copied_to_responses(
    via_host: str, rport: bool, expected: dict[str, str]
) -> None:
    pair = Pair()
    pair.deliver(make_request("OPTIONS", via_host=via_host, rport=rport))
    request = server_request(pair, "OPTIONS").request
    via = request.top_via
    got = {k: v for k, v in via.params.items() if k in ("received", "rport") and v is not None}
    assert got == expected
    assert via.host == via_host and via.branch is not None
    assert len(request.vias) == 2  # the second Via is untouched
    reply(pair, 200, "OPTIONS")
    wire = pair.sent[-1]
    assert wire.dst == CLIENT  # always the source address (RFC 3581 behaviour)
    response = wire.message
    assert {k: v for k, v in response.top_via.params.items() if k in expected} == expected


def test_stamping_keeps_other_vias_on_the_same_header_line() -> None:
    pair = Pair()
    request = make_request("OPTIONS")
    vias = request.get_all("Via")
    request.remove("Via")
    request.add("Via", ", ".join(vias), first=True)
    pair.deliver(request)
    got = server_request(pair, "OPTIONS").request
    assert len(got.vias) == 2
    assert got.vias[1].host == "proxy.invalid"
    assert got.top_via.received == CLIENT[0]


# ---------------------------------------------------------------------------------------
# NIST and NICT completion
# ---------------------------------------------------------------------------------------


def test_nist_answers_retransmissions_with_the_last_response_and_timer_j() -> None:
    pair = Pair()
    start(pair, "REGISTER")
    pair.transfer()
    skey = server_request(pair, "REGISTER").key or ""
    assert pair.server.state_of(skey) is State.TRYING
    pair.advance(0.5)
    pair.transfer()  # retransmission in Trying: absorbed
    assert [w.src for w in pair.sent].count(SERVER) == 0
    reply(pair, 100, "REGISTER")
    assert pair.server.state_of(skey) is State.PROCEEDING
    pair.drop()
    pair.advance(1.5)
    pair.transfer()
    assert pair.sent_times("100", by=SERVER) == [0.5, 1.5]
    reply(pair, 200, "REGISTER")
    assert pair.server.state_of(skey) is State.COMPLETED
    with pytest.raises(IllegalTransition) as info:
        reply(pair, 500, "REGISTER")
    assert info.value.state is State.COMPLETED and info.value.kind is Kind.NIST
    pair.drop()
    pair.advance(3.5)
    pair.transfer()
    assert pair.sent_times("200", by=SERVER) == [1.5, 3.5]
    assert len(pair.events("server", RequestReceived)) == 1
    pair.advance(1.5 + 64 * T1 - 0.01)
    assert pair.server.state_of(skey) is State.COMPLETED
    pair.advance(1.5 + 64 * T1)
    assert pair.server.state_of(skey) is None


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_nist_timer_j_and_nict_timer_k_are_zero_on_reliable(transport: str) -> None:
    pair = Pair(transport)
    ckey, _ = start(pair, "BYE")
    pair.transfer()
    skey = server_request(pair, "BYE").key or ""
    reply(pair, 200, "BYE")
    assert pair.server.state_of(skey) is None
    pair.transfer()
    assert pair.client.state_of(ckey) is None
    assert pair.events("client", TransactionTerminated) == [(0.0, TransactionTerminated(ckey))]


def test_nict_timer_k_absorbs_retransmitted_finals() -> None:
    pair = Pair()
    ckey, _ = start(pair, "BYE")
    pair.transfer()
    reply(pair, 200, "BYE")
    pair.advance(1.0)
    pair.transfer()  # the 200, and the BYE retransmission of t=0.5 reaches the server
    pair.transfer()  # the server's retransmitted 200
    assert pair.client.state_of(ckey) is State.COMPLETED
    assert len(pair.events("client", ResponseReceived)) == 1
    late = make_response(server_request(pair, "BYE").request, 100)
    pair.deliver(late, to_server=False)
    assert len(pair.events("client", ResponseReceived)) == 1
    pair.advance(1.0 + T4 - 0.01)
    assert pair.client.state_of(ckey) is State.COMPLETED
    pair.advance(1.0 + T4)
    assert pair.client.state_of(ckey) is None
    assert pair.sent_times("BYE", by=CLIENT) == [0.0, 0.5]


def test_nict_provisional_then_final() -> None:
    pair = Pair()
    ckey, _ = start(pair, "OPTIONS")
    pair.transfer()
    reply(pair, 180, "OPTIONS")
    reply(pair, 181, "OPTIONS")
    reply(pair, 404, "OPTIONS")
    pair.transfer()
    assert [e.response.status for _, e in pair.events("client", ResponseReceived)] == [
        180,
        181,
        404,
    ]
    assert pair.client.state_of(ckey) is State.COMPLETED


# ---------------------------------------------------------------------------------------
# Matching: CANCEL, RFC 2543, stray responses
# ---------------------------------------------------------------------------------------


def test_cancel_gets_its_own_transaction_and_names_the_invite_it_matches() -> None:
    pair = Pair()
    ckey, invite = start(pair)
    pair.transfer()
    ist = server_request(pair).key
    # §9.1: the CANCEL has the INVITE's Request-URI, Call-ID, From, To, CSeq number and Via.
    branch = invite.top_via.branch
    cancel = make_request("CANCEL", branch=branch)
    cancel_key = pair.client.send_request(cancel, SERVER, "UDP", pair.now)
    assert cancel_key != ckey
    pair.transfer()
    event = server_request(pair, "CANCEL")
    assert event.cancelled_key == ist and event.key not in (None, ist)
    reply(pair, 200, "CANCEL")
    reply(pair, 487)
    pair.transfer()
    statuses = {(e.key, e.response.status) for _, e in pair.events("client", ResponseReceived)}
    assert {(cancel_key, 200), (ckey, 487)} <= statuses
    # A CANCEL for an unknown INVITE matches nothing (the TU answers 481).
    pair.deliver(make_request("CANCEL", call_id="unknown"))
    assert server_request(pair, "CANCEL").cancelled_key is None


def test_rfc2543_requests_without_the_cookie_are_matched_by_dialog_fields() -> None:
    pair = Pair()
    invite = make_request(branch="")  # no branch at all
    pair.deliver(invite)
    skey = server_request(pair).key or ""
    assert skey.startswith("server2543|")
    pair.deliver(make_request(branch=""))  # retransmission: same fields
    assert len(pair.events("server", RequestReceived)) == 1
    pair.deliver(make_request(branch="", cseq=2))  # another request
    assert len(pair.events("server", RequestReceived)) == 2
    first = pair.events("server", RequestReceived)[0][1]
    assert isinstance(first, RequestReceived)
    pair.server.send_response(make_response(first.request, 486, to_tag=TO_TAG), pair.now)
    assert pair.server.state_of(skey) is State.COMPLETED
    pair.deliver(make_request("ACK", branch="", to_tag=TO_TAG))
    assert pair.server.state_of(skey) is State.CONFIRMED
    # An old-style branch (no cookie) is part of the key too.
    pair.deliver(make_request(branch="oldbranch1"))
    assert len(pair.events("server", RequestReceived)) == 3


@pytest.mark.parametrize(
    ("status", "method", "passed_up"),
    [
        (180, "INVITE", False),
        (486, "INVITE", False),
        (200, "BYE", False),
        (100, "OPTIONS", False),
        (200, "INVITE", True),  # §13.2.2.4: the TU must re-ACK it
        (299, "INVITE", True),
    ],
)
def test_stray_responses(status: int, method: str, passed_up: bool) -> None:
    pair = Pair()
    response = make_response(make_request(method), status, to_tag=TO_TAG)
    pair.deliver(response, to_server=False)
    events = pair.events("client", ResponseReceived)
    if passed_up:
        assert len(events) == 1
        ((_, event),) = events
        assert isinstance(event, ResponseReceived)
        assert event.key is None and event.response.status == status
    else:
        assert events == []
    assert len(pair.client) == 0


def test_response_to_a_server_transaction_is_not_matched_as_a_client_response() -> None:
    # A layer that is both UAC and UAS (B2BUA) keeps the two key spaces apart.
    pair = Pair()
    request = make_request("OPTIONS")
    pair.deliver(request)
    response = make_response(server_request(pair, "OPTIONS").request, 200)
    pair.server.receive(response, CLIENT, "UDP", pair.now)
    pair.collect()
    assert pair.events("server", ResponseReceived) == []


# ---------------------------------------------------------------------------------------
# API edges
# ---------------------------------------------------------------------------------------


def test_send_request_rejects_ack_missing_cookie_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(make_request("ACK"), SERVER, "UDP", 0.0)
    with pytest.raises(ValueError, match="z9hG4bK"):
        layer.send_request(make_request(branch="oldstyle"), SERVER, "UDP", 0.0)
    request = make_request()
    layer.send_request(request, SERVER, "udp", 0.0)
    with pytest.raises(ValueError, match="already exists"):
        layer.send_request(request, SERVER, "UDP", 0.0)
    assert layer.datagrams_to_send()[0][2] == "UDP"


def test_response_without_transaction_is_dropped() -> None:
    layer = TransactionLayer()
    layer.send_response(make_response(make_request(), 200, to_tag=TO_TAG), 0.0)
    assert layer.datagrams_to_send() == [] and layer.next_event() is None
    bad = Response(200, headers=[("CSeq", "1 INVITE")])
    with pytest.raises(ValueError, match="cannot be matched"):
        layer.send_response(bad, 0.0)


def test_unmatchable_hand_built_messages_are_dropped() -> None:
    layer = TransactionLayer()
    layer.receive(Response(200, headers=[("CSeq", "1 INVITE")]), CLIENT, "UDP", 0.0)
    layer.receive(Request("OPTIONS", "sip:x@y", [("CSeq", "1 OPTIONS")]), CLIENT, "UDP", 0.0)
    assert layer.next_event() is None and layer.datagrams_to_send() == []


def test_2xx_without_to_header_tag_still_works_but_ack_wait_is_best_effort() -> None:
    pair = Pair()
    start(pair)
    pair.transfer()
    request = server_request(pair).request
    ok = make_response(request, 200)  # TU forgot the To tag
    ok.set("To", "not a valid name-addr <")
    pair.server.send_response(ok, pair.now)
    pair.collect()
    assert pair.server.awaiting_ack == 0
    assert pair.sent[-1].src == SERVER


def test_cancel_client_abandons_a_client_transaction() -> None:
    pair = Pair()
    key, _ = start(pair)
    pair.transfer()
    pair.transfer()
    pair.client.cancel_client(key, pair.now)
    pair.client.cancel_client("client|unknown|INVITE", pair.now)
    pair.collect()
    assert pair.client.state_of(key) is None
    assert pair.events("client", TransactionTerminated) == [(0.0, TransactionTerminated(key))]
    assert pair.events("client", TransactionTimedOut) == []


def test_cancel_client_ignores_server_keys() -> None:
    pair = Pair()
    start(pair)
    pair.transfer()
    skey = server_request(pair).key or ""
    pair.server.cancel_client(skey, pair.now)
    assert pair.server.state_of(skey) is State.PROCEEDING


def test_transport_error_ends_every_transaction_with_that_peer() -> None:
    pair = Pair("TCP")
    ict, _ = start(pair)
    nict, _ = start(pair, "OPTIONS", call_id="c2")
    pair.transfer()
    server_keys = {e.key for _, e in pair.events("server", RequestReceived)}
    pair.client.report_transport_error(SERVER, "tcp", pair.now)
    pair.client.report_transport_error(("192.0.2.9", 5060), "TCP", pair.now)
    pair.server.report_transport_error(CLIENT, "TCP", pair.now)
    pair.collect()
    assert {e.key for _, e in pair.events("client", TransportFailed)} == {ict, nict}
    assert {e.key for _, e in pair.events("server", TransportFailed)} == server_keys
    assert len(pair.client) == 0 and len(pair.server) == 0
    # The TU's late answer finds no transaction and is dropped, not raised.
    pair.server.send_response(make_response(server_request(pair).request, 486), pair.now)


@pytest.mark.parametrize(
    ("kind", "state"),
    [(k, s) for k in Kind for s in {s for s, _ in TABLES[k]}],
)
def test_transport_error_in_every_state_terminates(kind: Kind, state: State) -> None:
    nxt, _ = TABLES[kind][(state, Input.TRANSPORT_ERROR)]
    assert nxt is State.TERMINATED


def test_custom_timers() -> None:
    pair = Pair(timers=Timers(t1=0.1, t2=0.4, t4=1.0, d=2.0))
    start(pair, "OPTIONS")
    pair.advance(10)
    assert pair.sent_times("OPTIONS", by=CLIENT)[:6] == pytest.approx([0, 0.1, 0.3, 0.7, 1.1, 1.5])
    assert pair.events("client", TransactionTimedOut)[0][0] == pytest.approx(6.4)


def test_many_transactions_leave_nothing_behind() -> None:
    pair = Pair()
    for i in range(50):
        start(pair, "OPTIONS", call_id=f"c{i}")
    pair.transfer()
    for _, event in list(pair.server_events):
        assert isinstance(event, RequestReceived)
        pair.server.send_response(make_response(event.request, 200), pair.now)
    pair.transfer()
    pair.advance(100)
    assert len(pair.client) == 0 and len(pair.server) == 0
    assert pair.client.get_timer() is None and pair.server.get_timer() is None


def test_via_after_other_headers_is_stamped() -> None:
    pair = Pair()
    request = make_request("OPTIONS")
    request.remove("Max-Forwards")
    request.headers.insert(0, ("Max-Forwards", "69"))
    pair.deliver(request)
    assert server_request(pair, "OPTIONS").request.top_via.received == CLIENT[0]


def test_hand_built_ack_with_bad_cseq_still_goes_up() -> None:
    layer = TransactionLayer()
    via = f"SIP/2.0/UDP {CLIENT[0]}:5070;branch={new_branch()}"
    ack = Request("ACK", "sip:bob@server.invalid", [("Via", via), ("CSeq", "x ACK")])
    layer.receive(ack, CLIENT, "UDP", 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived) and event.key is None


def test_stopped_timers_are_skipped_when_their_deadline_passes() -> None:
    layer = TransactionLayer()
    request = make_request()
    key = layer.send_request(request, SERVER, "UDP", 0.0)
    layer.receive(make_response(request, 180, to_tag=TO_TAG), SERVER, "UDP", 0.1)
    layer.handle_timer(100.0)  # A and B were stopped by the 180: nothing fires
    assert layer.state_of(key) is State.PROCEEDING
    assert len(layer.datagrams_to_send()) == 1
    assert layer.get_timer() is None


def test_two_invites_answered_with_the_same_dialog_share_one_ack_wait() -> None:
    # Two server transactions whose 2xx have the same Call-ID, CSeq and To tag (a merged
    # request answered twice by a confused TU): one ACK settles both.
    pair = Pair()
    pair.deliver(make_request())
    pair.deliver(make_request())
    for _, event in pair.events("server", RequestReceived):
        assert isinstance(event, RequestReceived)
        pair.server.send_response(make_response(event.request, 200, to_tag=TO_TAG), 0.0)
    assert pair.server.awaiting_ack == 1
    pair.deliver(make_request("ACK", to_tag=TO_TAG))
    assert pair.server.awaiting_ack == 0


def test_traffic_counters_count_arrivals_and_each_response_once() -> None:
    # Metrics: every request that arrives counts (retransmissions too, by method); a response
    # counts when first sent, not when the transaction resends it.
    pair = Pair()
    start(pair)
    pair.transfer()  # INVITE arrives; the IST sends 100 Trying at once
    pair.drop()  # the 100 is lost...
    pair.advance(T1)
    pair.transfer()  # ...so the INVITE comes again and the 100 is resent
    reply(pair, 486)
    pair.transfer()  # the 486 reaches the client, which ACKs it
    pair.transfer()
    server = pair.server
    assert [w.describe() for w in pair.sent if w.src == SERVER] == ["100", "100", "486"]
    assert {m: n for m, n in server.requests_received.items() if n} == {"INVITE": 2, "ACK": 1}
    assert server.responses_sent == {100: 1, 486: 1}
    server.receive(make_request("FROB"), CLIENT, "UDP", pair.now)
    assert server.requests_received["OTHER"] == 1
    assert "FROB" not in server.requests_received
