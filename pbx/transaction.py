"""SIP transactions (RFC 3261 §17, updated by RFC 6026), sans-IO.

Theory of operation
-------------------
A transaction is one request and its responses. There are four state machines: the INVITE
client transaction (ICT, §17.1.1, figure 5), the non-INVITE client transaction (NICT,
§17.1.2, figure 6), the INVITE server transaction (IST, §17.2.1, figure 7) and the non-INVITE
server transaction (NIST, §17.2.2, figure 8). Each machine is *data*: ``TABLES[kind]`` maps
``(State, Input)`` to ``(next State, Actions)``. An input missing from a table is an illegal
transition and raises :class:`IllegalTransition`. The tables are complete for everything a
*peer* or a timer can cause (a stray or duplicated message never raises); only a transaction
user (TU) misusing the API — e.g. sending a second final response — reaches the exception.

:class:`TransactionLayer` owns every transaction of one SIP element, client and server side.
It does no I/O and reads no clock, in the style of aioquic:

* inputs: :meth:`~TransactionLayer.receive` (a parsed message, its source address and
  transport), :meth:`~TransactionLayer.send_request`, :meth:`~TransactionLayer.send_response`,
  :meth:`~TransactionLayer.handle_timer`, all taking ``now`` (seconds, any monotonic origin);
* outputs, pulled by the adapter: :meth:`~TransactionLayer.datagrams_to_send` (bytes,
  destination, transport), :meth:`~TransactionLayer.next_event` (events for the TU) and
  :meth:`~TransactionLayer.get_timer` (the earliest deadline; the adapter arms one
  ``loop.call_at`` for it and calls ``handle_timer``).

Timers live in one heap of ``(deadline, seq, owner, name)`` with lazy deletion: stopping a
timer only forgets its ``seq``, and stale heap entries are skipped when popped. A timer whose
duration is zero (K, D, I, J on reliable transports, §17) is scheduled at ``now`` and fires
before the entry point returns, so "zero" really means "immediately".

Retransmission timers (A, E, G, the 2xx retransmission) run only over UDP; over TCP/TLS the
transport is reliable and the RFC's zero values apply to D, I, J and K.

Matching (§17.1.3, §17.2.3): a client transaction is keyed by the top Via branch and the CSeq
method; a server transaction by the branch, the sent-by and the method, with ACK matching its
INVITE. Requests whose branch lacks the ``z9hG4bK`` cookie (RFC 2543 peers) are keyed by
Call-ID, From tag, CSeq number, top-Via sent-by and branch, and method. This simplifies §17.2.3's
fallback: the Request-URI and To tag are left out so that the *response* (which carries neither
the Request-URI nor, before the TU adds it, the To tag) finds the same transaction and so that
the ACK, whose To tag comes from the response, matches its INVITE.

Behaviour beyond the bare machines, because every user agent needs it:

* The IST sends ``100 Trying`` as soon as the INVITE arrives (§17.2.1 allows sending it at
  once instead of waiting 200 ms for the TU; sending immediately removes a timer and a race).
* On receipt, the top Via of every request gets ``received`` (§18.2.1, when the sent-by host
  differs from the source address, or always when ``rport`` is present) and the ``rport``
  value (RFC 3581 §4, when the client asked for it), so responses built from the request with
  :func:`~pbx.message.make_response` carry them. Responses always go back to the request's
  source address and transport (RFC 3581 §4 behaviour for every request; over TCP/TLS the
  adapter maps the address to the connection the request came on, §18.2.2).
* RFC 6026: after a 2xx the IST stays in *Accepted* for Timer L (absorbing INVITE
  retransmissions, passing a same-branch ACK up) and the ICT in *Accepted* for Timer M (every
  2xx retransmission goes up to the TU, which ACKs it, §13.2.2.4).
* §13.3.1.4 (the UAS core's 2xx retransmission) is done here: after the TU sends a 2xx to an
  INVITE the layer resends it at T1, 2T1, … capped at T2 (UDP only) until an ACK with the same
  Call-ID, CSeq number and To tag arrives, or reports :class:`AckNotReceived` after 64*T1
  (over reliable transports too, without resending).
* ACK is not a transaction: ACK for a 2xx and stateless replies go through
  :meth:`~TransactionLayer.send_stateless`; the ACK for a non-2xx final is built and sent by
  the ICT itself with the INVITE's branch (§17.1.1.3).
* A response matching no client transaction is dropped, except a 2xx to INVITE, which is
  passed up with ``key=None`` so the TU can re-ACK it (§13.2.2.4). Terminated transactions are
  removed at once, so memory is bounded by the live transactions.

Implemented: RFC 3261 §17.1.1, §17.1.2, §17.1.3, §17.2.1, §17.2.2, §17.2.3, §9.2 (CANCEL
matching), §13.3.1.4, §18.2.1, §18.2.2, table of timers in §A; RFC 6026 §7 and §8; RFC 3581 §4.
"""

from __future__ import annotations

import heapq
import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto

import structlog

from pbx.message import (
    ParseError,
    Request,
    Response,
    Via,
    make_response,
    split_list,
)

__all__ = [
    "BRANCH_COOKIE",
    "COUNTED_METHODS",
    "INITIAL",
    "T1",
    "T2",
    "T4",
    "TABLES",
    "TIMER_B",
    "TIMER_D",
    "TIMER_F",
    "TIMER_H",
    "TIMER_I",
    "TIMER_J",
    "TIMER_K",
    "TIMER_L",
    "TIMER_M",
    "AckNotReceived",
    "Action",
    "Address",
    "Event",
    "IllegalTransition",
    "Input",
    "Kind",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "Timers",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "new_branch",
]

log = structlog.get_logger(__name__)

Address = tuple[str, int]

# RFC 3261 §17.1.1.1 and table 4 (§A).
T1 = 0.5  # RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message remains in the network
TIMER_B = 64 * T1  # INVITE transaction timeout
TIMER_D = 32.0  # wait time for response retransmits (UDP; 0 on reliable transports)
TIMER_F = 64 * T1  # non-INVITE transaction timeout
TIMER_H = 64 * T1  # wait time for ACK receipt
TIMER_I = T4  # wait time for ACK retransmits (UDP; 0 reliable)
TIMER_J = 64 * T1  # wait time for non-INVITE request retransmits (UDP; 0 reliable)
TIMER_K = T4  # wait time for response retransmits (UDP; 0 reliable)
TIMER_L = 64 * T1  # RFC 6026: IST wait time for accepted INVITE request retransmits
TIMER_M = 64 * T1  # RFC 6026: ICT wait time for retransmission of 2xx responses

BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7 magic cookie

# Methods counted by name in TransactionLayer.requests_received (others count as OTHER).
COUNTED_METHODS = (
    *("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK"),
    *("SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"),
)


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 64 random bits (§8.1.1.7)."""
    return BRANCH_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Timers:
    """The RFC 3261 timer base values; everything else derives from them (§A)."""

    t1: float = T1
    t2: float = T2
    t4: float = T4
    d: float = TIMER_D

    def duration(self, name: str, reliable: bool) -> float | None:
        """Initial value of timer ``name``; ``None`` when it does not run on this transport."""
        if name in ("A", "E", "G"):  # retransmission timers: unreliable only
            return None if reliable else self.t1
        if name in ("B", "F", "H", "L", "M"):
            return 64 * self.t1
        if name == "D":
            return 0.0 if reliable else self.d
        if name in ("I", "K"):
            return 0.0 if reliable else self.t4
        if name == "J":
            return 0.0 if reliable else 64 * self.t1
        raise ValueError(f"unknown timer {name!r}")


# ---------------------------------------------------------------------------------------
# Events (what the TU pulls with next_event)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A request the TU must handle.

    ``key`` is the new server transaction, or ``None`` for an ACK (the ACK for a 2xx is not
    part of any transaction, §17). For CANCEL, ``cancelled_key`` is the INVITE server
    transaction it matches (§9.2), or ``None`` (the TU then answers 481).
    """

    request: Request
    source: Address
    transport: str
    key: str | None
    cancelled_key: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction ``key``; ``None`` for a stray 2xx to INVITE
    (a retransmission after the ICT ended) that the TU must ACK again (§13.2.2.4)."""

    response: Response
    key: str | None


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F (no final response: the TU acts as if it got 408, §8.1.3.1), or Timer H
    (no ACK for a non-2xx final response)."""

    key: str
    method: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported a failure for the transaction's peer (§17.1.4, §17.2.4)."""

    key: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone; its key may be forgotten."""

    key: str


@dataclass(frozen=True, slots=True)
class AckNotReceived:
    """No ACK for the 2xx ``response`` within 64*T1 (§13.3.1.4): the TU should send BYE."""

    key: str
    response: Response


Event = (
    RequestReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
    | AckNotReceived
)


# ---------------------------------------------------------------------------------------
# The machines as tables
# ---------------------------------------------------------------------------------------


class Kind(Enum):
    ICT = "INVITE client"
    NICT = "non-INVITE client"
    IST = "INVITE server"
    NIST = "non-INVITE server"


class State(Enum):
    CALLING = auto()
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()  # RFC 6026
    TERMINATED = auto()


class Input(Enum):
    # Responses: received from the peer by client transactions, sent by the TU through
    # server transactions.
    PROVISIONAL = auto()  # 1xx
    SUCCESS = auto()  # 2xx
    FAILURE = auto()  # 300-699
    REQUEST = auto()  # retransmission of the server transaction's request
    ACK = auto()  # ACK matching an INVITE server transaction
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()
    TRANSPORT_ERROR = auto()
    ABANDONED = auto()  # the TU gives up on a client transaction


class Action(Enum):
    SEND_REQUEST = auto()  # (re)transmit the client transaction's request
    SEND_ACK = auto()  # ACK for a non-2xx final, same branch (§17.1.1.3)
    SEND_TRYING = auto()  # 100 Trying (§17.2.1)
    SEND_RESPONSE = auto()  # transmit the TU's response and remember it
    RESEND_RESPONSE = auto()  # retransmit the last response
    RESPONSE_TO_TU = auto()
    ACK_TO_TU = auto()
    REPORT_TIMEOUT = auto()
    REPORT_TRANSPORT_ERROR = auto()
    AWAIT_ACK = auto()  # start the core's 2xx retransmission (§13.3.1.4)
    STOP_TIMERS = auto()
    START_A = auto()
    BACKOFF_A = auto()  # A doubles without cap (§17.1.1.2)
    START_B = auto()
    START_D = auto()
    START_E = auto()
    BACKOFF_E = auto()  # min(2E, T2) (§17.1.2.2)
    E_TO_T2 = auto()  # in Proceeding E is reset to T2 (§17.1.2.2)
    START_F = auto()
    START_G = auto()
    BACKOFF_G = auto()  # min(2G, T2) (§17.2.1)
    START_H = auto()
    START_I = auto()
    START_J = auto()
    START_K = auto()
    START_L = auto()
    START_M = auto()


S = State
I = Input  # noqa: E741
A = Action
Transition = tuple[State, tuple[Action, ...]]

# The first transition of each machine, taken when the transaction is created.
INITIAL: dict[Kind, Transition] = {
    Kind.ICT: (S.CALLING, (A.SEND_REQUEST, A.START_A, A.START_B)),
    Kind.NICT: (S.TRYING, (A.SEND_REQUEST, A.START_E, A.START_F)),
    Kind.IST: (S.PROCEEDING, (A.SEND_TRYING,)),
    Kind.NIST: (S.TRYING, ()),
}

_TERMINATE: Transition = (S.TERMINATED, ())
_TRANSPORT_FAILED: Transition = (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,))
_ABSORB_PROCEEDING: Transition = (S.PROCEEDING, ())

# RFC 3261 §17.1.1.2, figure 5, with RFC 6026 §7.2 (Accepted, Timer M).
_ICT: dict[tuple[State, Input], Transition] = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.SEND_REQUEST, A.BACKOFF_A)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, (A.STOP_TIMERS, A.RESPONSE_TO_TU)),
    (S.CALLING, I.SUCCESS): (S.ACCEPTED, (A.STOP_TIMERS, A.RESPONSE_TO_TU, A.START_M)),
    (S.CALLING, I.FAILURE): (
        S.COMPLETED,
        (A.STOP_TIMERS, A.SEND_ACK, A.RESPONSE_TO_TU, A.START_D),
    ),
    (S.CALLING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.CALLING, I.ABANDONED): _TERMINATE,
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.RESPONSE_TO_TU,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.RESPONSE_TO_TU, A.START_M)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.RESPONSE_TO_TU, A.START_D)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.PROCEEDING, I.ABANDONED): _TERMINATE,
    # Retransmitted finals are absorbed by re-sending the ACK (§17.1.1.2).
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, I.PROVISIONAL): (S.COMPLETED, ()),
    # A 2xx after a non-2xx final can only come from a misbehaving or forking peer; the
    # TU must still ACK and BYE it, so it goes up.
    (S.COMPLETED, I.SUCCESS): (S.COMPLETED, (A.RESPONSE_TO_TU,)),
    (S.COMPLETED, I.TIMER_D): _TERMINATE,
    (S.COMPLETED, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.COMPLETED, I.ABANDONED): _TERMINATE,
    # RFC 6026 §7.2: every 2xx (retransmission or another fork) goes to the TU.
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.RESPONSE_TO_TU,)),
    (S.ACCEPTED, I.PROVISIONAL): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.FAILURE): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.TIMER_M): _TERMINATE,
    (S.ACCEPTED, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.ACCEPTED, I.ABANDONED): _TERMINATE,
}

# RFC 3261 §17.1.2.2, figure 6.
_NICT_FINAL_FROM_ACTIVE: Transition = (
    S.COMPLETED,
    (A.STOP_TIMERS, A.RESPONSE_TO_TU, A.START_K),
)
_NICT: dict[tuple[State, Input], Transition] = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.SEND_REQUEST, A.BACKOFF_E)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    # E and F keep running in Proceeding.
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.RESPONSE_TO_TU,)),
    (S.TRYING, I.SUCCESS): _NICT_FINAL_FROM_ACTIVE,
    (S.TRYING, I.FAILURE): _NICT_FINAL_FROM_ACTIVE,
    (S.TRYING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.TRYING, I.ABANDONED): _TERMINATE,
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.SEND_REQUEST, A.E_TO_T2)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.RESPONSE_TO_TU,)),
    (S.PROCEEDING, I.SUCCESS): _NICT_FINAL_FROM_ACTIVE,
    (S.PROCEEDING, I.FAILURE): _NICT_FINAL_FROM_ACTIVE,
    (S.PROCEEDING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.PROCEEDING, I.ABANDONED): _TERMINATE,
    # Completed buffers response retransmissions (§17.1.2.2).
    (S.COMPLETED, I.PROVISIONAL): (S.COMPLETED, ()),
    (S.COMPLETED, I.SUCCESS): (S.COMPLETED, ()),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, ()),
    (S.COMPLETED, I.TIMER_K): _TERMINATE,
    (S.COMPLETED, I.TRANSPORT_ERROR): _TERMINATE,
    (S.COMPLETED, I.ABANDONED): _TERMINATE,
}

# RFC 3261 §17.2.1, figure 7, with RFC 6026 §7.1 (Accepted, Timer L). PROVISIONAL, SUCCESS
# and FAILURE here are responses the TU sends.
_IST: dict[tuple[State, Input], Transition] = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.ACK): _ABSORB_PROCEEDING,  # ACK before any final: nothing to confirm
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.SEND_RESPONSE, A.AWAIT_ACK, A.START_L)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_RESPONSE, A.START_G, A.START_H)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RESEND_RESPONSE, A.BACKOFF_G)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, (A.STOP_TIMERS, A.START_I)),
    (S.COMPLETED, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    # Confirmed absorbs ACK retransmissions (§17.2.1).
    (S.CONFIRMED, I.REQUEST): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.TIMER_I): _TERMINATE,
    (S.CONFIRMED, I.TRANSPORT_ERROR): _TERMINATE,
    # RFC 6026 §7.1: INVITE retransmissions are absorbed, not passed up as new requests; an
    # ACK that matches (same branch: RFC 2543 peers) is the 2xx's ACK and goes to the TU;
    # 2xx retransmissions from the TU go out.
    (S.ACCEPTED, I.REQUEST): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.ACK_TO_TU,)),
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.SEND_RESPONSE,)),
    (S.ACCEPTED, I.TIMER_L): _TERMINATE,
    (S.ACCEPTED, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
}

# RFC 3261 §17.2.2, figure 8.
_NIST_FINAL: Transition = (S.COMPLETED, (A.SEND_RESPONSE, A.START_J))
_NIST: dict[tuple[State, Input], Transition] = {
    (S.TRYING, I.REQUEST): (S.TRYING, ()),  # nothing to resend yet
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.TRYING, I.SUCCESS): _NIST_FINAL,
    (S.TRYING, I.FAILURE): _NIST_FINAL,
    (S.TRYING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): _NIST_FINAL,
    (S.PROCEEDING, I.FAILURE): _NIST_FINAL,
    (S.PROCEEDING, I.TRANSPORT_ERROR): _TRANSPORT_FAILED,
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_J): _TERMINATE,
    (S.COMPLETED, I.TRANSPORT_ERROR): _TERMINATE,
}

TABLES: dict[Kind, dict[tuple[State, Input], Transition]] = {
    Kind.ICT: _ICT,
    Kind.NICT: _NICT,
    Kind.IST: _IST,
    Kind.NIST: _NIST,
}

del S, I, A

# Actions that (re)start a timer, with the timer's name.
_STARTS: dict[Action, str] = {
    Action.START_A: "A",
    Action.START_B: "B",
    Action.START_D: "D",
    Action.START_E: "E",
    Action.START_F: "F",
    Action.START_G: "G",
    Action.START_H: "H",
    Action.START_I: "I",
    Action.START_J: "J",
    Action.START_K: "K",
    Action.START_L: "L",
    Action.START_M: "M",
}

_TIMER_INPUTS: dict[str, Input] = {name: Input[f"TIMER_{name}"] for name in _STARTS.values()}


class IllegalTransition(RuntimeError):
    """The TU asked for something the transaction's state does not allow."""

    def __init__(self, kind: Kind, state: State, event: Input) -> None:
        super().__init__(f"{kind.value} transaction in {state.name}: illegal input {event.name}")
        self.kind = kind
        self.state = state
        self.input = event


# ---------------------------------------------------------------------------------------
# Transactions and the layer
# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Transaction:
    key: str
    kind: Kind
    state: State
    method: str
    # Client transactions keep their request (the ICT builds the ACK of a non-2xx final from
    # it, §17.1.1.3); server transactions drop it once started (see TransactionLayer._start).
    request: Request | None
    request_bytes: bytes
    peer: Address
    transport: str
    reliable: bool
    timers: dict[str, int] = field(default_factory=dict)  # live timer name -> heap seq
    intervals: dict[str, float] = field(default_factory=dict)  # A, E, G current values
    last_response_bytes: bytes | None = None
    ack_bytes: bytes | None = None


@dataclass(slots=True)
class _AckWait:
    """The UAS core waiting for the ACK of a 2xx (§13.3.1.4)."""

    key: str
    txn_key: str
    response: Response
    data: bytes
    peer: Address
    transport: str
    interval: float
    timers: dict[str, int] = field(default_factory=dict)


def _normalize_transport(transport: str) -> str:
    return transport.upper()


def _sent_by(via: Via) -> str:
    default = 5061 if via.transport == "TLS" else 5060
    return f"{via.host.lower()}:{via.port if via.port is not None else default}"


def _client_key(branch: str, method: str) -> str:
    # RFC 3261 §17.1.3: branch of the top Via plus the CSeq method.
    return f"client|{branch}|{method}"


def _server_key(msg: Request | Response, via: Via, method: str) -> str:
    """RFC 3261 §17.2.3: branch + sent-by + method (ACK is matched with ``method='INVITE'``).

    Without the magic cookie, the simplified RFC 2543 fallback described in the module
    docstring is used; it is computable from both the request and the TU's response.
    """
    branch = via.branch or ""
    if branch.startswith(BRANCH_COOKIE):
        return f"server|{branch}|{_sent_by(via)}|{method}"
    num, _ = msg.cseq
    return f"server2543|{msg.call_id}|{msg.from_.tag or ''}|{num}|{_sent_by(via)}|{branch}|{method}"


def _ack_key(msg: Request | Response) -> str:
    # §13.3.1.4: the ACK of a 2xx is recognised by Call-ID, CSeq number and To tag.
    num, _ = msg.cseq
    return f"ack|{msg.call_id}|{num}|{msg.to.tag or ''}"


def _classify(status: int) -> Input:
    if status < 200:
        return Input.PROVISIONAL
    if status < 300:
        return Input.SUCCESS
    return Input.FAILURE


def _stamp_via(request: Request, via: Via, source: Address) -> None:
    """Add ``received``/``rport`` to the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    host = via.host[1:-1] if via.host.startswith("[") else via.host
    # ``via`` is the message's cached, read-only value: the stamped one is a copy.
    if via.has_rport:
        params = dict(via.params)
        params["rport"] = str(source[1])
        params["received"] = source[0]  # RFC 3581 §4: even when equal to sent-by
    elif host != source[0]:
        params = dict(via.params)
        params["received"] = source[0]
    else:
        return
    request.set_top_via(Via(via.transport, via.host, via.port, params, via.protocol))


def _build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
    num, _ = request.cseq
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "Via":
            if not any(k == "Via" for k, _ in headers):
                headers.append(("Via", split_list(value)[0]))  # only the top Via
        elif name in ("Max-Forwards", "Route", "From", "Call-ID"):
            headers.append((name, value))
        elif name == "To":
            headers.append(("To", response.get("To") or value))  # with the response's tag
        elif name == "CSeq":
            headers.append(("CSeq", f"{num} ACK"))
    return Request("ACK", request.uri, headers)


class TransactionLayer:
    """Every client and server transaction of one SIP element (sans-IO)."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers if timers is not None else Timers()
        self._txns: dict[str, _Transaction] = {}
        self._ack_waits: dict[str, _AckWait] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Address, str]] = []
        # Traffic counters (metrics): every request that arrives, retransmissions included, by
        # method (COUNTED_METHODS, the rest as OTHER, so a fuzzer cannot add labels); every
        # response sent, by status, once (a retransmission resends the same response).
        self.requests_received: dict[str, int] = dict.fromkeys((*COUNTED_METHODS, "OTHER"), 0)
        self.responses_sent: dict[int, int] = {}

    # -- outputs -----------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address, str]]:
        """Everything to transmit since the last call, as ``(data, destination, transport)``."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any timer, or ``None`` when none is armed."""
        while self._heap and not self._is_live(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # -- introspection (tests, diagnostics) ----------------------------------------------

    def state_of(self, key: str) -> State | None:
        """The state of transaction ``key``, or ``None`` once it is gone."""
        txn = self._txns.get(key)
        return txn.state if txn is not None else None

    def __len__(self) -> int:
        return len(self._txns)

    @property
    def awaiting_ack(self) -> int:
        """How many 2xx responses are still waiting for their ACK."""
        return len(self._ack_waits)

    # -- inputs ------------------------------------------------------------------------

    def send_request(
        self, request: Request, destination: Address, transport: str, now: float
    ) -> str:
        """Start a client transaction for ``request`` and return its key.

        The top Via must carry an RFC 3261 branch (see :func:`new_branch`). ACK is not a
        transaction: send it with :meth:`send_stateless`.
        """
        if request.method == "ACK":
            raise ValueError("ACK is not a transaction; use send_stateless")
        branch = request.top_via.branch
        if branch is None or not branch.startswith(BRANCH_COOKIE):
            raise ValueError(f"top Via branch must start with {BRANCH_COOKIE}")
        key = _client_key(branch, request.method)
        if key in self._txns:
            raise ValueError(f"client transaction {key} already exists")
        transport = _normalize_transport(transport)
        kind = Kind.ICT if request.method == "INVITE" else Kind.NICT
        self._start(kind, key, request, destination, transport, now)
        self._fire_expired(now)
        return key

    def send_response(self, response: Response, now: float) -> None:
        """Send ``response`` through the server transaction it answers.

        The transaction is found from the top Via and CSeq method the response copied from its
        request (§17.2.3). A response whose transaction is already gone (e.g. the TU answers
        after a transport failure it has not yet seen) is logged and dropped.
        """
        try:
            via = response.top_via
            _, method = response.cseq
            key = _server_key(response, via, method)
        except ParseError as exc:
            raise ValueError(f"response cannot be matched to a transaction: {exc}") from exc
        txn = self._txns.get(key)
        if txn is None:
            log.warning("response_without_transaction", key=key, status=response.status)
            return
        self._feed(txn, _classify(response.status), now, response)
        self._fire_expired(now)

    def count_response(self, status: int) -> None:
        """Count a response sent (the layer counts its own; the adapter its stateless
        replies)."""
        self.responses_sent[status] = self.responses_sent.get(status, 0) + 1

    def send_stateless(
        self, message: Request | Response, destination: Address, transport: str
    ) -> None:
        """Send without a transaction: ACK for a 2xx (§13.2.2.4), stateless replies."""
        self._out.append((message.serialize(), destination, _normalize_transport(transport)))

    def receive(self, msg: Request | Response, source: Address, transport: str, now: float) -> None:
        """Feed one parsed message received from ``source`` over ``transport``."""
        transport = _normalize_transport(transport)
        try:
            if isinstance(msg, Request):
                counts, method = self.requests_received, msg.method
                counts[method if method in counts else "OTHER"] += 1
                self._receive_request(msg, source, transport, now)
            else:
                self._receive_response(msg, now)
        except ParseError as exc:
            # The parser validates Via and CSeq; this only guards hand-built messages.
            log.info("unmatchable_message_dropped", error=str(exc), source=source)
        self._fire_expired(now)

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``."""
        self._fire_expired(now)

    def cancel_client(self, key: str, now: float) -> None:
        """The TU gives up on client transaction ``key`` (e.g. after its CANCEL got a final
        response and no final came for the INVITE in 64*T1, §9.1)."""
        txn = self._txns.get(key)
        if txn is not None and txn.kind in (Kind.ICT, Kind.NICT):
            self._feed(txn, Input.ABANDONED, now)
        self._fire_expired(now)

    def report_transport_error(self, destination: Address, transport: str, now: float) -> None:
        """The adapter could not deliver to ``destination`` (connection refused, ICMP, …):
        every transaction with that peer ends with :class:`TransportFailed` (§17.1.4, §17.2.4).
        """
        transport = _normalize_transport(transport)
        for txn in list(self._txns.values()):
            if txn.peer == destination and txn.transport == transport:
                self._feed(txn, Input.TRANSPORT_ERROR, now)
        self._fire_expired(now)

    # -- receiving -----------------------------------------------------------------------

    def _receive_request(
        self, request: Request, source: Address, transport: str, now: float
    ) -> None:
        via = request.top_via
        _stamp_via(request, via, source)
        if request.method == "ACK":
            # §17.2.3: an ACK matches the INVITE server transaction it acknowledges.
            txn = self._txns.get(_server_key(request, via, "INVITE"))
            if txn is not None:
                self._feed(txn, Input.ACK, now, request, source)
            else:
                # ACK for a 2xx: its own "transaction", straight to the TU.
                self._ack_to_tu(request, source, transport)
            return
        key = _server_key(request, via, request.method)
        txn = self._txns.get(key)
        if txn is not None:
            self._feed(txn, Input.REQUEST, now, request, source)
            return
        cancelled: str | None = None
        if request.method == "CANCEL":
            # §9.2: the CANCEL matches the INVITE whose transaction matches it by §17.2.3
            # with the method taken as INVITE.
            invite_key = _server_key(request, via, "INVITE")
            if invite_key in self._txns:
                cancelled = invite_key
        self._events.append(RequestReceived(request, source, transport, key, cancelled))
        kind = Kind.IST if request.method == "INVITE" else Kind.NIST
        self._start(kind, key, request, source, transport, now)

    def _receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        _, method = response.cseq
        txn = self._txns.get(_client_key(via.branch or "", method))
        if txn is not None:
            self._feed(txn, _classify(response.status), now, response)
        elif method == "INVITE" and 200 <= response.status < 300:
            # A 2xx retransmission after the ICT ended: the TU must ACK it (§13.2.2.4).
            self._events.append(ResponseReceived(response, None))
        else:
            # RFC 6026 §8.4: stray responses are dropped.
            log.debug(
                "stray_response_dropped",
                status=response.status,
                method=method,
                call_id=response.call_id,
            )

    def _ack_to_tu(self, ack: Request, source: Address, transport: str) -> None:
        try:
            wait = self._ack_waits.pop(_ack_key(ack), None)
        except ParseError:
            wait = None
        if wait is not None:
            wait.timers.clear()
        self._events.append(RequestReceived(ack, source, transport, None))

    # -- the machine ---------------------------------------------------------------------

    def _start(
        self,
        kind: Kind,
        key: str,
        request: Request,
        peer: Address,
        transport: str,
        now: float,
    ) -> None:
        state, actions = INITIAL[kind]
        txn = _Transaction(
            key=key,
            kind=kind,
            state=state,
            method=request.method,
            request=request,
            # Only client transactions resend their request.
            request_bytes=request.serialize() if kind in (Kind.ICT, Kind.NICT) else b"",
            peer=peer,
            transport=transport,
            reliable=transport != "UDP",
        )
        self._txns[key] = txn
        for action in actions:
            self._execute(txn, action, now, None, peer)
        if kind in (Kind.IST, Kind.NIST):
            # Only the initial 100 Trying needed the parsed request; a NIST lives 64*T1 after
            # its final response, and thousands of parsed messages (with their cached header
            # values) kept alive that long made the garbage collector's passes long enough to
            # cause retransmissions at a few hundred REGISTER/s.
            txn.request = None

    def _feed(
        self,
        txn: _Transaction,
        event: Input,
        now: float,
        msg: Request | Response | None = None,
        source: Address | None = None,
    ) -> None:
        transition = TABLES[txn.kind].get((txn.state, event))
        if transition is None:
            raise IllegalTransition(txn.kind, txn.state, event)
        txn.state, actions = transition
        for action in actions:
            self._execute(txn, action, now, msg, source)
        if txn.state is State.TERMINATED:
            txn.timers.clear()
            del self._txns[txn.key]
            self._events.append(TransactionTerminated(txn.key))

    def _execute(
        self,
        txn: _Transaction,
        action: Action,
        now: float,
        msg: Request | Response | None,
        source: Address | None,
    ) -> None:
        timer = _STARTS.get(action)
        if timer is not None:
            self._start_timer(txn, timer, now)
        elif action is Action.SEND_REQUEST:
            self._send(txn.request_bytes, txn.peer, txn.transport)
        elif action is Action.SEND_ACK:
            if txn.ack_bytes is None:
                assert isinstance(msg, Response) and txn.request is not None
                txn.ack_bytes = _build_ack(txn.request, msg).serialize()
            self._send(txn.ack_bytes, txn.peer, txn.transport)
        elif action is Action.SEND_TRYING:
            assert txn.request is not None
            self._send_response(txn, make_response(txn.request, 100))
        elif action is Action.SEND_RESPONSE:
            assert isinstance(msg, Response)
            self._send_response(txn, msg)
        elif action is Action.RESEND_RESPONSE:
            # The tables only resend from states entered by sending a response.
            assert txn.last_response_bytes is not None
            self._send(txn.last_response_bytes, txn.peer, txn.transport)
        elif action is Action.RESPONSE_TO_TU:
            assert isinstance(msg, Response)
            self._events.append(ResponseReceived(msg, txn.key))
        elif action is Action.ACK_TO_TU:
            assert isinstance(msg, Request) and source is not None
            self._ack_to_tu(msg, source, txn.transport)
        elif action is Action.REPORT_TIMEOUT:
            self._events.append(TransactionTimedOut(txn.key, txn.method))
        elif action is Action.REPORT_TRANSPORT_ERROR:
            self._events.append(TransportFailed(txn.key))
        elif action is Action.AWAIT_ACK:
            assert isinstance(msg, Response)
            self._await_ack(txn, msg, now)
        elif action is Action.STOP_TIMERS:
            txn.timers.clear()
        elif action is Action.BACKOFF_A:
            self._restart_timer(txn, "A", txn.intervals["A"] * 2, now)  # no cap, §17.1.1.2
        elif action is Action.BACKOFF_E:
            self._restart_timer(txn, "E", min(txn.intervals["E"] * 2, self.timers.t2), now)
        elif action is Action.E_TO_T2:
            self._restart_timer(txn, "E", self.timers.t2, now)
        else:  # Action.BACKOFF_G (exhaustive: every other action is handled above)
            assert action is Action.BACKOFF_G, action
            self._restart_timer(txn, "G", min(txn.intervals["G"] * 2, self.timers.t2), now)

    def _send(self, data: bytes, destination: Address, transport: str) -> None:
        self._out.append((data, destination, transport))

    def _send_response(self, txn: _Transaction, response: Response) -> None:
        self.count_response(response.status)
        txn.last_response_bytes = response.serialize()
        self._send(txn.last_response_bytes, txn.peer, txn.transport)

    # -- timers --------------------------------------------------------------------------

    def _schedule(self, owner: str, timers: dict[str, int], name: str, deadline: float) -> None:
        self._seq += 1
        timers[name] = self._seq
        heapq.heappush(self._heap, (deadline, self._seq, owner, name))

    def _start_timer(self, txn: _Transaction, name: str, now: float) -> None:
        duration = self.timers.duration(name, txn.reliable)
        if duration is None:
            return  # a retransmission timer on a reliable transport
        txn.intervals[name] = duration
        self._schedule(txn.key, txn.timers, name, now + duration)

    def _restart_timer(self, txn: _Transaction, name: str, interval: float, now: float) -> None:
        txn.intervals[name] = interval
        self._schedule(txn.key, txn.timers, name, now + interval)

    def _is_live(self, entry: tuple[float, int, str, str]) -> bool:
        _, seq, owner, name = entry
        holder = self._txns.get(owner) or self._ack_waits.get(owner)
        return holder is not None and holder.timers.get(name) == seq

    def _fire_expired(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._is_live(entry):
                continue
            _, _, owner, name = entry
            txn = self._txns.get(owner)
            if txn is not None:
                del txn.timers[name]
                self._feed(txn, _TIMER_INPUTS[name], now)
            else:
                self._fire_ack_wait(self._ack_waits[owner], name, now)

    # -- the UAS core's 2xx retransmission (§13.3.1.4) -------------------------------------

    def _await_ack(self, txn: _Transaction, response: Response, now: float) -> None:
        try:
            key = _ack_key(response)
        except ParseError:
            log.warning("unacknowledgeable_2xx", txn=txn.key)
            return
        if key in self._ack_waits:
            return
        wait = _AckWait(
            key=key,
            txn_key=txn.key,
            response=response,
            data=txn.last_response_bytes or response.serialize(),
            peer=txn.peer,
            transport=txn.transport,
            interval=self.timers.t1,
        )
        self._ack_waits[key] = wait
        if not txn.reliable:
            self._schedule(key, wait.timers, "2xx", now + wait.interval)
        self._schedule(key, wait.timers, "giveup", now + 64 * self.timers.t1)

    def _fire_ack_wait(self, wait: _AckWait, name: str, now: float) -> None:
        if name == "2xx":
            self._send(wait.data, wait.peer, wait.transport)
            wait.interval = min(wait.interval * 2, self.timers.t2)
            self._schedule(wait.key, wait.timers, "2xx", now + wait.interval)
        else:
            wait.timers.clear()
            del self._ack_waits[wait.key]
            self._events.append(AckNotReceived(wait.txn_key, wait.response))
