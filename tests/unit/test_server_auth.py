"""REGISTER authentication in the server: one wrong credential is one failure.

The client below follows PJSIP's rules for answering a challenge (sip_auth_client.c
``process_auth``): a 401 whose nonce differs from the one it answered counts as "stale" and
is answered again with the same password, up to PJSIP_MAX_STALE_COUNT (3) times; a 401 with
the same nonce and stale=false means the credential was refused, and it stops.
"""

from __future__ import annotations

import secrets

from pbx.digest import build_authorization, choose_challenge, parse_challenge
from pbx.message import Request, Response, parse_message
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec
from pbx.transaction import RequestReceived
from tests.unit.call_harness import FakeMedia

PHONE = ("198.51.100.7", 5060)  # one NAT address: the whole office behind it
PJSIP_MAX_STALE_COUNT = 3


class Office:
    """A server with extension 1001 and a throttle of ``max_failures``; captures replies."""

    def __init__(self, max_failures: int) -> None:
        settings = ServerSettings(
            listen=(ListenSpec("UDP", "127.0.0.1", 5060),), max_failures=max_failures
        )
        self.server = SipServer(
            settings, {"1001": Extension("1001", "Alice", "right")}, media=FakeMedia()
        )
        self.replies: list[Response] = []
        self.server.stack.send_response = self.replies.append  # type: ignore[method-assign,assignment]

    def send(self, request: bytes) -> Response:
        req = parse_message(request)
        assert isinstance(req, Request)
        self.server.stack.on_request(RequestReceived(req, PHONE, "UDP", key="k"))
        return self.replies[-1]

    def register(self, password: str) -> tuple[int, int]:
        """Register as PJSIP would with ``password``: (final status, requests sent)."""
        call_id = secrets.token_hex(8)
        cseq, authorization, sent_nonce, stale_count = 1, None, None, 0
        while True:
            reply = self.send(register_request(call_id, cseq, authorization))
            if reply.status != 401:
                return reply.status, cseq
            value = choose_challenge(reply.get_all("WWW-Authenticate"))
            challenge = parse_challenge(value)
            if sent_nonce is not None:
                if not (challenge.stale or challenge.nonce != sent_nonce):
                    return 401, cseq  # PJSIP_EFAILEDCREDENTIAL
                stale_count += 1
                if stale_count >= PJSIP_MAX_STALE_COUNT:
                    return 401, cseq  # PJSIP_EAUTHSTALECOUNT
            authorization = build_authorization(
                "REGISTER", "sip:127.0.0.1", "1001", password, value
            )
            sent_nonce = challenge.nonce
            cseq += 1


def register_request(
    call_id: str, cseq: int, authorization: str | None, branch: str | None = None
) -> bytes:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};rport;branch="
        + (branch or "z9hG4bK" + secrets.token_hex(6)),
        "Max-Forwards: 70",
        "From: <sip:1001@127.0.0.1>;tag=f1",
        "To: <sip:1001@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:1001@{PHONE[0]}:{PHONE[1]}>",
        "Expires: 600",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


async def test_two_typos_do_not_block_the_office() -> None:
    office = Office(max_failures=3)
    # Each typo: one REGISTER with credentials, refused with the same nonce, and PJSIP stops
    # (it used to get a fresh nonce and try the same password 3 times: 3 failures).
    assert office.register("wrong") == (401, 2)
    assert office.register("wrnog") == (401, 2)
    assert office.register("right") == (200, 2)


async def test_third_wrong_credential_blocks() -> None:
    office = Office(max_failures=3)
    for guess in ("a", "b", "c"):
        status, _ = office.register(guess)
    assert status == 403
    assert office.replies[-1].reason == "Too Many Failed Attempts"
    assert office.register("right") == (403, 1)  # blocked before any digest work


async def test_same_wrong_answer_resent_counts_once() -> None:
    # A retransmission (same Call-ID, CSeq and branch) or the same cached header in a new
    # request carries the same digest: one guess, however often it arrives.
    office = Office(max_failures=2)
    first = office.send(register_request("c1", 1, None))
    value = choose_challenge(first.get_all("WWW-Authenticate"))
    wrong = build_authorization("REGISTER", "sip:127.0.0.1", "1001", "wrong", value)
    retransmission = register_request("c1", 2, wrong, branch="z9hG4bKsame")
    for _ in range(3):
        assert office.send(retransmission).status == 401
    assert office.send(register_request("c1", 3, wrong)).status == 401
    # A different wrong answer is a second guess: blocked at max_failures=2.
    other = build_authorization("REGISTER", "sip:127.0.0.1", "1001", "wrong2", value)
    assert office.send(register_request("c1", 4, other)).status == 403


async def test_refusal_repeats_the_nonce_and_right_password_then_works() -> None:
    office = Office(max_failures=5)
    first = office.send(register_request("c2", 1, None))
    value = choose_challenge(first.get_all("WWW-Authenticate"))
    nonce = parse_challenge(value).nonce
    wrong = build_authorization("REGISTER", "sip:127.0.0.1", "1001", "wrong", value)
    refused = office.send(register_request("c2", 2, wrong))
    assert refused.status == 401
    again = [parse_challenge(v) for v in refused.get_all("WWW-Authenticate")]
    assert {c.nonce for c in again} == {nonce} and not any(c.stale for c in again)
    # The user fixes the password; the phone answers the same nonce (nc 1: the failed try
    # did not use it up).
    right = build_authorization("REGISTER", "sip:127.0.0.1", "1001", "right", value)
    assert office.send(register_request("c2", 3, right)).status == 200


def _challenge_algorithms(reply: Response) -> list[str]:
    return [parse_challenge(v).algorithm for v in reply.get_all("WWW-Authenticate")]


async def test_md5_by_default_and_sha256_per_extension() -> None:
    """Issue 15: the realm offers MD5 only; an extension opted in to SHA-256 gets SHA-256
    first (MD5 second) and may answer with either; others may not answer with SHA-256."""
    settings = ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),))
    exts = {
        "1001": Extension("1001", "Alice", "right", auth_algorithms=("SHA-256", "MD5")),
        "1002": Extension("1002", "Bob", "other"),
    }
    server = SipServer(settings, exts, media=FakeMedia())
    replies: list[Response] = []
    server.stack.send_response = replies.append  # type: ignore[method-assign,assignment]

    def send(user: str, authorization: str | None) -> Response:
        raw = register_request(secrets.token_hex(8), 1, authorization).replace(
            b"1001@", f"{user}@".encode()
        )
        req = parse_message(raw)
        assert isinstance(req, Request)
        server.stack.on_request(RequestReceived(req, PHONE, "UDP", key="k"))
        return replies[-1]

    first = send("1001", None)
    assert _challenge_algorithms(first) == ["SHA-256", "MD5"]
    assert _challenge_algorithms(send("1002", None)) == ["MD5"]
    assert _challenge_algorithms(send("9999", None)) == ["MD5"]  # unknown: the realm's
    sha = first.get_all("WWW-Authenticate")[0]
    ok = send("1001", build_authorization("REGISTER", "sip:127.0.0.1", "1001", "right", sha))
    assert ok.status == 200
    # 1002 did not opt in: a SHA-256 answer is refused even with the right password.
    bad = send("1002", build_authorization("REGISTER", "sip:127.0.0.1", "1002", "other", sha))
    assert bad.status == 401
