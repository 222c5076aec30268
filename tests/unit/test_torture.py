"""RFC 4475 torture messages against pbx/message.py, one table row per message.

Each row says which layer decides about the message and what it must answer:

* ``PARSE``   — :func:`parse_message` accepts it (and :func:`validate_for_uas` too); the
  row's ``check`` asserts the structured values the RFC cares about.
* ``REJECT``  — :func:`parse_message` raises ``ParseError`` with that status: the transport
  (requests) answers it statelessly, or (responses) drops the message.
* ``UAS``     — well-framed, so the parser and a proxy would accept it, but a UAS that acts
  on it must refuse: :func:`validate_for_uas` raises with that status.
* ``APP``     — parses and validates; the ``note`` says what the transaction or application
  layer must do (the lead wires these into the stack/B2BUA/registrar).

The vectors are read from the shared corpus (``../shared/corpus/rfc4475``) and the test is
skipped when it is absent.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pbx.message import (
    ParseError,
    Request,
    Response,
    StreamParser,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    unsupported_extensions,
    validate_for_uas,
)
from tests.fuzz.fuzz_sip_parser import CORPUS_DIR

TORTURE_DIR = CORPUS_DIR / "rfc4475"

pytestmark = pytest.mark.skipif(
    not (TORTURE_DIR / "INDEX.tsv").is_file(), reason=f"RFC 4475 corpus not found at {TORTURE_DIR}"
)

PARSE, REJECT, UAS, APP = "parse", "reject", "uas", "app"

Check = Callable[[Request | Response], None]


@dataclass(frozen=True)
class Vector:
    name: str
    layer: str
    status: int | None = None  # for REJECT and UAS
    note: str = ""
    check: Check | None = None


def load(name: str) -> bytes:
    return (TORTURE_DIR / f"{name}.dat").read_bytes()


def req(msg: Request | Response) -> Request:
    assert isinstance(msg, Request)
    return msg


def structured(msg: Request | Response) -> None:
    """Every structured header of interest parses."""
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.contacts  # noqa: B018
    assert msg.vias
    for name in ("Route", "Record-Route"):
        for v in msg.get_list(name):
            parse_name_addr(v)
    if isinstance(msg, Request):
        msg.request_uri  # noqa: B018


# --- per-vector checks ---------------------------------------------------------------------


def check_wsinv(m: Request | Response) -> None:
    r = req(m)
    assert r.method == "INVITE"
    assert r.request_uri.params == {"unknownparam": None}
    assert r.to.uri.user == "vivekg" and r.to.tag == "1918181833n"
    assert r.from_.display == 'J Rosenberg \\"' and r.from_.tag == "98asjd8"
    assert r.get("Max-Forwards") == "0068"
    assert r.cseq == (9, "INVITE")
    vias = r.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = r.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert r.get("Subject") == ""
    assert r.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert r.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (route,) = r.get_list("Route")
    assert parse_name_addr(route).uri.params["unknownwith"] == "value"
    assert len(r.body) == 150


def check_intmeth(m: Request | Response) -> None:
    r = req(m)
    assert r.method == "!interesting-Method0123456789_*+`.%indeed'~"
    u = r.request_uri
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert u.host == "example.com"
    to = r.to
    assert to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    fr = r.from_
    assert fr.display == "token1~` token2'+_ token3*%!.-"
    assert fr.tag == "_token~1'+`*%!-."
    assert (
        fr.params["fromparam''~+*_!.-%"]
        == "\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"
    )
    assert r.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert r.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert r.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def check_esc01(m: Request | Response) -> None:
    r = req(m)
    assert r.request_uri.user_unescaped() == "sips:user@example.com"
    assert r.to.uri.user_unescaped() == "user"
    assert r.from_.uri.user_unescaped() == "I have spaces"
    (c,) = r.contacts
    assert c.uri.user_unescaped() == "caller"
    assert c.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}


def check_escnull(m: Request | Response) -> None:
    users = [c.uri.user_unescaped() for c in req(m).contacts]
    assert users == ["\x00", "\x00\x00"]  # two distinct bindings, not truncated at NUL
    assert req(m).to.uri.user_unescaped() == "null-\x00-null"


def check_esc02(m: Request | Response) -> None:
    r = req(m)
    assert r.method == "RE%47IST%45R"  # not REGISTER: a UAS answers 501
    assert r.to.display == "%Z%45"
    # "C%6Fntact" is an extension header, not a third Contact.
    assert len(r.contacts) == 2
    assert r.get("C%6fntact") == "<sip:alias2@host2.example.com>"


def check_lwsdisp(m: Request | Response) -> None:
    assert req(m).from_.display == "caller"


def check_longreq(m: Request | Response) -> None:
    r = req(m)
    assert len(r.vias) == 34
    assert r.from_.tag is not None and len(r.from_.tag) > 100
    assert r.to.display is not None and "extreme" in r.to.display
    assert r.to.uri.port == 6000
    assert len(r.body) == int(r.get("Content-Length") or "0")


def check_dblreq(m: Request | Response) -> None:
    r = req(m)
    assert r.method == "REGISTER"
    assert r.body == b""  # RFC 3261 §18.3: octets past Content-Length are discarded


def check_semiuri(m: Request | Response) -> None:
    u = req(m).request_uri
    assert u.user == "user;par=u%40example.net" and u.host == "example.com" and not u.params
    assert len(req(m).get_list("Accept")) == 6


def check_transports(m: Request | Response) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01(m: Request | Response) -> None:
    assert len(m.body) == int(m.get("Content-Length") or "0")
    assert b"\x00" in m.body
    assert m.content_type == "multipart/mixed"


def check_unreason(m: Request | Response) -> None:
    assert isinstance(m, Response) and m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 \u043d\u043e")


def check_noreason(m: Request | Response) -> None:
    assert isinstance(m, Response) and m.status == 100 and m.reason == ""


def check_badbranch(m: Request | Response) -> None:
    assert m.top_via.branch == "z9hG4bK"


def check_unksm2(m: Request | Response) -> None:
    r = req(m)
    assert r.to.uri.scheme == "isbn" and not r.to.uri.is_sip
    assert r.from_.uri.scheme == "http"
    assert r.contacts[0].uri.scheme == "name"


def check_bext01(m: Request | Response) -> None:
    assert unsupported_extensions(req(m), ["replaces", "timer"]) == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]


def check_invut(m: Request | Response) -> None:
    assert m.content_type == "application/unknownformat"


def check_bcast(m: Request | Response) -> None:
    assert isinstance(m, Response)
    assert m.vias[1].host == "255.255.255.255"


def check_zeromf(m: Request | Response) -> None:
    assert req(m).get("Max-Forwards") == "0"


def check_cparam01(m: Request | Response) -> None:
    (c,) = req(m).contacts
    assert c.params == {"unknownparam": None} and c.uri.params == {}


def check_cparam02(m: Request | Response) -> None:
    (c,) = req(m).contacts
    assert c.params == {} and c.uri.params == {"unknownparam": None}


def check_regescrt(m: Request | Response) -> None:
    (c,) = req(m).contacts
    assert c.uri.headers == "Route=%3Csip:sip.example.com%3E"


def check_inv2543(m: Request | Response) -> None:
    r = req(m)
    assert r.top_via.branch is None and r.from_.tag is None
    assert r.get("Content-Length") is None and r.get("Max-Forwards") is None
    assert r.body.startswith(b"v=0")


VECTORS: list[Vector] = [
    # §3.1.1 valid messages
    Vector("wsinv", PARSE, check=check_wsinv),
    Vector("intmeth", PARSE, note="UAS: 501 with Allow (unknown method)", check=check_intmeth),
    Vector("esc01", PARSE, check=check_esc01),
    Vector("escnull", PARSE, check=check_escnull),
    Vector("esc02", PARSE, note="UAS: 501 (RE%47IST%45R is not REGISTER)", check=check_esc02),
    Vector("lwsdisp", PARSE, check=check_lwsdisp),
    Vector("longreq", PARSE, check=check_longreq),
    Vector("dblreq", PARSE, note="never process/forward the trailing octets", check=check_dblreq),
    Vector("semiuri", PARSE, check=check_semiuri),
    Vector("transports", PARSE, check=check_transports),
    Vector("mpart01", PARSE, check=check_mpart01),
    Vector("unreason", PARSE, check=check_unreason),
    Vector("noreason", PARSE, check=check_noreason),
    # §3.1.2 invalid messages: the parser refuses them
    Vector("badinv01", REJECT, 400, "empty Via/Contact parameters"),
    Vector("clerr", REJECT, 400, "Content-Length > datagram; on TCP: wait, then close"),
    Vector("ncl", REJECT, 400, "negative Content-Length; on TCP: close (framing lost)"),
    Vector("scalar02", REJECT, 400, "CSeq >= 2**31"),
    Vector("scalarlg", REJECT, 400, "response with overlarge CSeq: the stack drops it"),
    Vector("quotbal", REJECT, 400, "unterminated quoted display name"),
    Vector("ltgtruri", REJECT, 400, "<> around the Request-URI"),
    Vector("lwsruri", REJECT, 400, "LWS inside the Request-URI"),
    Vector("lwsstart", REJECT, 400, "several SP between Request-Line elements"),
    Vector("trws", REJECT, 400, "SP after SIP-Version"),
    # baddn and badaspec: From/To are validated by every layer (dialogs use their tags),
    # so the parser itself refuses them rather than guessing the quotes or spaces.
    Vector("badaspec", REJECT, 400, "spaces inside <addr-spec> of To"),
    Vector("baddn", REJECT, 400, "unquoted display name with ',' in From/To"),
    Vector("badvers", REJECT, 505, "SIP/7.0"),
    Vector("mismatch01", REJECT, 400, "CSeq method differs from the Request-Line method"),
    Vector("mismatch02", REJECT, 400, "same with an unknown method (RFC allows 400 or 501)"),
    Vector("bigcode", REJECT, 400, "response code 4294967301: the stack drops it"),
    # §3.1.2 invalid, but only for an element that reads the header: validate_for_uas
    Vector("escruri", UAS, 400, "headers in the Request-URI (RFC 3261 §19.1.1)"),
    Vector("baddate", UAS, 400, "Date in EST, not GMT; only a UAS that reads Date cares"),
    Vector("regbadct", UAS, 400, "Contact addr-spec with '?' not enclosed in <>"),
    # §3.2 transaction layer
    Vector(
        "badbranch",
        APP,
        note="branch is only the magic cookie: the transaction layer must not crash; it "
        "matches by RFC 2543 rules or answers 400 statelessly",
        check=check_badbranch,
    ),
    # §3.3 application layer
    Vector("insuf", REJECT, 400, "missing From/To/Call-ID/CSeq/Via"),
    Vector("unkscm", UAS, 416, "unknown Request-URI scheme; never route on To"),
    Vector("novelsc", UAS, 416, "soap.beep: Request-URI scheme we do not serve"),
    Vector(
        "unksm2",
        APP,
        note="registrar: 400 (To must be a SIP/SIPS AOR); others handle normally",
        check=check_unksm2,
    ),
    Vector(
        "bext01",
        APP,
        note="UAS: 420 with Unsupported listing unsupported_extensions(); Proxy-Require "
        "is ignored by a UAS (we are a B2BUA, not a proxy)",
        check=check_bext01,
    ),
    Vector("invut", APP, note="UAS: 415 with Accept: application/sdp", check=check_invut),
    Vector(
        "regaut01",
        APP,
        note="registrar: ignore the unknown Authorization scheme, challenge with 401",
    ),
    Vector("multi01", REJECT, 400, "two CSeq/Call-ID/From/To/Max-Forwards"),
    Vector("mcl01", REJECT, 400, "two Content-Length; on TCP: close (framing lost)"),
    Vector(
        "bcast",
        APP,
        note="response whose second Via is 255.255.255.255: the stack drops it (it is not "
        "for us); never send to a broadcast address",
        check=check_bcast,
    ),
    Vector(
        "zeromf",
        APP,
        note="Max-Forwards 0: as an endpoint answer normally (OPTIONS 200); a request the "
        "B2BUA would forward gets 483",
        check=check_zeromf,
    ),
    Vector("cparam01", APP, note="registrar binds sip:+19725552222@gw1...", check=check_cparam01),
    Vector("cparam02", APP, note="binding keeps ;unknownparam in the URI", check=check_cparam02),
    Vector("regescrt", APP, note="binding keeps ?Route=... in the URI", check=check_regescrt),
    Vector("sdp01", APP, note="UAS: 406 (Accept excludes application/sdp)"),
    # §3.4 backward compatibility
    Vector(
        "inv2543",
        APP,
        note="RFC 2543 INVITE (no branch, no From tag): transaction layer matches it by "
        "RFC 2543 rules (RFC 3261 §17.2.3)",
        check=check_inv2543,
    ),
    # Not in the RFC: test.dat ships in the RFC's tarball but no section describes it. Its
    # Request-Line has no SIP-Version, so it is not a SIP request: we reject it with 400.
    Vector("test", REJECT, 400, "not an RFC 4475 vector: Request-Line without SIP-Version"),
]

BY_NAME = {v.name: v for v in VECTORS}


def index_rows() -> list[dict[str, str]]:
    if not (TORTURE_DIR / "INDEX.tsv").is_file():
        return []
    with open(TORTURE_DIR / "INDEX.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_every_corpus_message_has_a_row() -> None:
    assert {r["name"] for r in index_rows()} == set(BY_NAME)


def test_rfc_valid_class_is_parsed() -> None:
    for row in index_rows():
        if row["valid_or_invalid"] == "valid":
            assert BY_NAME[row["name"]].layer == PARSE, row["name"]
        if row["valid_or_invalid"] == "invalid":
            assert BY_NAME[row["name"]].layer in (REJECT, UAS), row["name"]


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v.name)
def test_torture_vector(vec: Vector) -> None:
    data = load(vec.name)
    if vec.layer == REJECT:
        with pytest.raises(ParseError) as info:
            parse_message(data)
        assert info.value.status == vec.status
        return
    msg = parse_message(data)
    if vec.layer == PARSE:
        structured(msg)
    if vec.layer == UAS:
        assert isinstance(msg, Request)
        with pytest.raises(ParseError) as info:
            validate_for_uas(msg)
        assert info.value.status == vec.status
    elif isinstance(msg, Request):
        validate_for_uas(msg)  # a UAS acting on it finds nothing malformed
    if vec.check is not None:
        vec.check(msg)
    # Whatever parses serializes to something that parses to the same thing.
    again = parse_message(msg.serialize())
    assert again.headers == [h for h in msg.headers if h[0] != "Content-Length"] + [
        ("Content-Length", str(len(msg.body)))
    ]
    assert again.body == msg.body


# --- the stream (TCP) behaviour the RFC asks for -----------------------------------------------


def test_clerr_on_a_stream_waits_for_the_body() -> None:
    """RFC 4475 §3.1.2.2: over TCP the element waits for more data (then times out)."""
    sp = StreamParser()
    assert sp.feed(load("clerr")) == []


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_unframeable_stream_is_closed(name: str) -> None:
    """ncl (negative) and mcl01 (two different) Content-Length: framing is lost, so the
    transport must close the connection; feed() raises."""
    with pytest.raises(ParseError):
        StreamParser().feed(load(name))


def test_dblreq_on_a_stream() -> None:
    """On a stream the trailing INVITE is framed by its own Content-Length; the octets left
    after it have no Content-Length, so framing is lost after two messages: both are
    returned and ``framing_lost`` tells the transport to close."""
    sp = StreamParser()
    out = sp.feed(load("dblreq"))
    assert [m.method for m in out if isinstance(m, Request)] == ["REGISTER", "INVITE"]
    first = out[0]
    assert isinstance(first, Request) and first.body == b""
    assert sp.framing_lost is not None
    with pytest.raises(ParseError):
        sp.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")


def test_header_value_parsers_on_torture_values() -> None:
    """The header-level functions give the values RFC 4475 describes."""
    assert parse_uri("sip:user;par=u%40example.net@example.com").host == "example.com"
    assert parse_via("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").branch == "390skdjuw"
    with pytest.raises(ParseError):
        parse_name_addr('"Watson, Thomas" < sip:t.watson@example.org >')
    with pytest.raises(ParseError):
        parse_name_addr("Bell, Alexander <sip:a.g.bell@example.com>;tag=43")
    with pytest.raises(ParseError):
        parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
