"""pbx/message.py: real captured messages, header value parsers, framing and helpers.

The 224 real messages come from the shared corpus (``../shared/corpus/real``, see its
INDEX.tsv); those tests are skipped when it is absent. RFC 4475 vectors are in
test_torture.py, property tests in test_message_props.py.
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from pbx.message import (
    MAX_MESSAGE_SIZE,
    ParseError,
    Request,
    Response,
    StreamParser,
    canonical_name,
    make_response,
    parse_message,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_list,
    unsupported_extensions,
    validate_for_uas,
)
from tests.fuzz.fuzz_sip_parser import CORPUS_DIR

REAL_DIR = CORPUS_DIR / "real"


def real_rows() -> list[dict[str, str]]:
    index = REAL_DIR / "INDEX.tsv"
    if not index.is_file():
        return []
    with open(index, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = real_rows()
needs_corpus = pytest.mark.skipif(not ROWS, reason=f"real SIP corpus not found at {REAL_DIR}")


def without_cl(msg: Request | Response) -> Counter[tuple[str, str]]:
    return Counter(h for h in msg.headers if h[0] != "Content-Length")


# --- the real corpus ----------------------------------------------------------------------------


@needs_corpus
def test_corpus_has_224_messages() -> None:
    assert len(ROWS) == 224


@needs_corpus
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["file"])
def test_real_message_parses_and_round_trips(row: dict[str, str]) -> None:
    data = (REAL_DIR / row["file"]).read_bytes()
    msg = parse_message(data)
    expected = row["method_or_status"]
    if isinstance(msg, Request):
        assert msg.method == expected
        validate_for_uas(msg)  # nothing a UAS would refuse in real traffic
    else:
        assert str(msg.status) == expected
    num, method = msg.cseq
    assert f"{num} {method}" == row["cseq"]
    # Structured headers every layer reads.
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    assert msg.vias
    msg.contacts  # noqa: B018
    for name in ("Route", "Record-Route"):
        for v in msg.get_list(name):
            parse_name_addr(v)
    # Content-Length agrees with the body when present.
    cl = msg.get("Content-Length")
    if cl is not None:
        assert len(msg.body) == int(cl)
    # parse -> serialize -> parse keeps everything but Content-Length's place.
    again = parse_message(msg.serialize())
    assert type(again) is type(msg)
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert (again.method, again.uri) == (msg.method, msg.uri)
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)
    assert again.call_id == msg.call_id
    assert again.cseq == msg.cseq
    assert without_cl(again) == without_cl(msg)
    assert again.get("Content-Length") == str(len(msg.body))
    assert again.body == msg.body
    # And it is a fixed point from then on.
    assert parse_message(again.serialize()).serialize() == again.serialize()


@needs_corpus
def test_real_messages_over_a_stream() -> None:
    """All messages with a Content-Length, back to back on one stream, in odd-sized pieces."""
    datas = []
    for row in ROWS:
        data = (REAL_DIR / row["file"]).read_bytes()
        if parse_message(data).get("Content-Length") is not None:
            datas.append(data)
    stream = b"\r\n".join(datas)  # with keep-alive CRLFs between some of them
    sp = StreamParser()
    got: list[Request | Response | ParseError] = []
    sizes = [1, 7, 100, 1500, 3]
    i = k = 0
    while i < len(stream):
        n = sizes[k % len(sizes)]
        got.extend(sp.feed(stream[i : i + n]))
        i += n
        k += 1
    assert sp.framing_lost is None
    assert len(got) == len(datas)
    for data, msg in zip(datas, got, strict=True):
        assert not isinstance(msg, ParseError)
        assert msg.serialize() == parse_message(data).serialize()


# --- URIs --------------------------------------------------------------------------------------


def test_parse_uri_full() -> None:
    u = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=%20")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips",
        "alice",
        "secret",
        "[2001:db8::1]",
        5061,
    )
    assert u.params == {"transport": "tcp", "lr": None}
    assert u.headers == "Subject=hi&X=%20"
    assert u.host_port() == ("2001:db8::1", 5061)
    assert str(u) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=%20"


def test_parse_uri_first_at_ends_userinfo() -> None:
    # RFC 4475 §3.1.1.2: "?" and ";" are legal in the user part.
    u = parse_uri("sip:a?b;c@example.com;p=1")
    assert (u.user, u.host, u.params) == ("a?b;c", "example.com", {"p": "1"})


@pytest.mark.parametrize(
    "uri",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sip:*72#@pbx.local",  # raw "#" accepted (feature codes)
        "sip:@127.0.0.1",  # empty user seen in real traffic
        "sip:+15551234567;phone-context=example.com@example.com;user=phone",
        "tel:+1-201-555-0123",
        "urn:service:sos",
        "sip:a@b;maddr=[2001:db8::1]",
    ],
)
def test_parse_uri_accepts(uri: str) -> None:
    assert str(parse_uri(uri)) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "sip:",
        "alice@example.com",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:",
        "sip:<alice>@example.com",
        'sip:"alice"@example.com',
        "sip:al\x00ice@example.com",
        "sip:alice@example.com;=x",
        "sip:alice@example.com;a=",
        "sip:alice@[::1",
        "sip:alice@example.com:5\u0663",
        "1sip:alice@example.com",
        "tel:+1 555",
    ],
)
def test_parse_uri_rejects(uri: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(uri)


def test_user_unescaped() -> None:
    assert parse_uri("sip:%61lice%40home@example.com").user_unescaped() == "alice@home"


# --- name-addr, Via, params, lists --------------------------------------------------------------


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Alice \\"A\\"" <sip:alice@example.com;transport=udp>;tag=abc;x')
    assert na.display == 'Alice "A"'
    assert na.uri.params == {"transport": "udp"}
    assert na.params == {"tag": "abc", "x": None}
    assert na.tag == "abc"
    assert str(na) == '"Alice \\"A\\"" <sip:alice@example.com;transport=udp>;tag=abc;x'
    bare = parse_name_addr("sip:bob@example.com;tag=1")
    assert bare.uri.params == {} and bare.tag == "1"
    tokens = parse_name_addr("Bob  Smith <sip:bob@example.com>")
    assert tokens.display == "Bob  Smith"
    utf8 = parse_name_addr("Jürgen <sip:j@example.com>")
    assert utf8.display == "Jürgen"
    assert parse_name_addr("*").wildcard


@pytest.mark.parametrize(
    "value",
    [
        "",
        '"unterminated <sip:a@b>',
        '"name" sip:a@b',
        "<sip:a@b",
        "<sip:a@b> junk",
        "< sip:a@b>",
        "Bell, Alexander <sip:a@b>",
        "sip:a@b?x=y",
        "sip:a b@c",
        "<sip:a@b>;",
    ],
)
def test_name_addr_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value)


def test_via() -> None:
    v = parse_via("SIP/2.0/udp 192.0.2.1:5070;branch=z9hG4bK1;rport;received=198.51.100.7")
    assert (v.transport, v.host, v.port, v.branch, v.has_rport, v.rport) == (
        "UDP",
        "192.0.2.1",
        5070,
        "z9hG4bK1",
        True,
        None,
    )
    assert v.response_address() == ("198.51.100.7", 5070)
    assert parse_via("SIP/2.0/TCP h;rport=4000").response_address() == ("h", 4000)
    assert parse_via("SIP/2.0/TCP h;rport=\u00b2").rport is None
    for bad in [
        "SIP/2.0 h",
        "SIP/3.0/UDP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h x",
    ]:
        with pytest.raises(ParseError):
            parse_via(bad)


def test_params_and_lists() -> None:
    assert parse_params(';A=1; b ;c="x;y\\"z"') == {"a": "1", "b": None, "c": 'x;y"z'}
    for bad in [";", ";;a", ";a=", ';a="x', ";a b=1"]:
        with pytest.raises(ParseError):
            parse_params(bad)
    assert split_list('<sip:a@b;x=1,2>, "c, d" <sip:c@d>,,e') == [
        "<sip:a@b;x=1,2>",
        '"c, d" <sip:c@d>',
        "e",
    ]


def test_canonical_names() -> None:
    assert canonical_name("v") == "Via"
    assert canonical_name("CALL-ID") == "Call-ID"
    assert canonical_name("x-custom-header") == "X-Custom-Header"
    assert canonical_name("WWW-authenticate") == "WWW-Authenticate"


# --- whole messages ------------------------------------------------------------------------------

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl\r\n'
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_parse_invite() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.request_uri.user == "bob"
    assert msg.cseq == (1, "INVITE") and msg.body == b"v=0\n"
    assert msg.from_.tag == "9fxced76sl" and msg.to.tag is None
    assert msg.top_via.branch == "z9hG4bK74bf9"
    validate_for_uas(msg)


def replace(old: bytes, new: bytes, data: bytes = INVITE) -> bytes:
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (b"x" * (MAX_MESSAGE_SIZE + 1), 513),
        (replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505),
        (replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (replace(b"CSeq: 1 INVITE", b"CSeq: \xc2\xb2 INVITE"), 400),
        (replace(b"CSeq: 1 INVITE", b"CSeq: " + b"9" * 5000 + b" INVITE"), 400),
        (replace(b"Content-Length: 4", b"Content-Length: 1\xc2\xb2"), 400),
        (replace(b"Content-Length: 4", b"Content-Length: " + b"9" * 5000), 413),
        (replace(b"Content-Length: 4", b"Content-Length: 99999"), 413),
        (replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (replace(b"Max-Forwards: 70", b"Max-Forwards: \xd9\xa3"), 400),
        (replace(b"Call-ID: 3848276298220188511@192.0.2.1", b"Call-ID:"), 400),
        (replace(b"To: <sip:bob@example.com>\r\n", b""), 400),
        (
            replace(
                b"To: <sip:bob@example.com>\r\n", b"To: <sip:bob@example.com>\r\nt: <sip:x@y>\r\n"
            ),
            400,
        ),
        (replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/"), 400),
        (replace(b"Max-Forwards", b" Max-Forwards"), 400),  # folded into the start line
        (replace(b"Max-Forwards: 70", b"Max Forwards: 70"), 400),
        (replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400),
        (b"SIP/2.0 2000 OK\r\n\r\n", 400),
        (b"SIP/2.0 \xc2\xb2\xc2\xb2\xc2\xb2 OK\r\n\r\n", 400),
    ],
)
def test_rejected(data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status == status


def test_leniencies() -> None:
    # Leading CRLFs (RFC 3261 §7.5), bare LFs, no final empty line on a datagram, folding.
    lf = INVITE.replace(b"\r\n", b"\n")
    assert parse_message(b"\r\n\r\n" + lf).body == b"v=0\n"
    no_body = replace(b"Content-Length: 4\r\n\r\nv=0\n", b"Content-Length: 0\r\n")
    assert parse_message(no_body).body == b""
    folded = replace(b"CSeq: 1 INVITE", b"CSeq: 1\r\n INVITE")
    assert parse_message(folded).cseq == (1, "INVITE")
    # A datagram longer than Content-Length: the extra octets are dropped (§18.3).
    assert parse_message(INVITE + b"junk").body == b"v=0\n"


def test_validate_for_uas() -> None:
    base = parse_message(INVITE)
    assert isinstance(base, Request)

    def with_header(name: str, value: str) -> Request:
        msg = parse_message(base.serialize())
        assert isinstance(msg, Request)
        msg.set(name, value)
        return msg

    validate_for_uas(with_header("Date", "Sat, 13 Nov 2010 23:29:00 GMT"))
    validate_for_uas(with_header("Expires", "3600"))
    for name, value in [
        ("Date", "Sat, 13 Nov 2010 23:29:00 EST"),
        ("Expires", "-1"),
        ("Expires", "4294967296"),
        ("Content-Type", "sdp"),
        ("Contact", "sip:a@b?Route=x"),
        ("Contact", "*"),  # only in a REGISTER
        ("Route", "<sip:proxy"),
    ]:
        with pytest.raises(ParseError) as info:
            validate_for_uas(with_header(name, value))
        assert info.value.status == 400, (name, value)
    tel = parse_message(INVITE.replace(b"sip:bob@example.com SIP", b"tel:+15551234 SIP"))
    assert isinstance(tel, Request)
    validate_for_uas(tel)
    with pytest.raises(ParseError) as info:
        validate_for_uas(tel, schemes={"sip"})
    assert info.value.status == 416


def test_unsupported_extensions() -> None:
    msg = parse_message(replace(b"CSeq:", b"Require: 100rel, Timer, foo\r\nCSeq:"))
    assert isinstance(msg, Request)
    assert unsupported_extensions(msg, ["100rel", "timer"]) == ["foo"]


def test_make_response() -> None:
    req = parse_message(INVITE.replace(b"CSeq:", b"Timestamp: 54\r\nCSeq:"))
    assert isinstance(req, Request)
    trying = make_response(req, 100, to_tag="t1")
    assert trying.to.tag is None and trying.get("Timestamp") == "54"
    ok = make_response(req, 200, to_tag="t1", headers=[("Contact", "<sip:pbx@192.0.2.9>")])
    assert ok.to.tag == "t1" and ok.reason == "OK"
    assert [k for k, _ in ok.headers] == ["Via", "From", "To", "Call-ID", "CSeq", "Contact"]
    again = parse_message(ok.serialize())
    assert isinstance(again, Response) and again.status == 200 and again.body == b""


# --- stream framing -----------------------------------------------------------------------------


def test_stream_split_everywhere() -> None:
    """Every split point of two messages with CRLF keep-alives gives the same messages."""
    stream = b"\r\n\r\n" + INVITE + b"\r\n" + INVITE
    for cut in range(len(stream) + 1):
        sp = StreamParser()
        out = sp.feed(stream[:cut]) + sp.feed(stream[cut:])
        assert [m.serialize() for m in out if not isinstance(m, ParseError)] == [
            parse_message(INVITE).serialize()
        ] * 2, cut


def test_stream_errors() -> None:
    sp = StreamParser()
    bad = replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    out = sp.feed(bad + INVITE)
    assert isinstance(out[0], ParseError) and isinstance(out[1], Request)
    with pytest.raises(ParseError):
        StreamParser().feed(replace(b"Content-Length: 4\r\n", b""))
    with pytest.raises(ParseError) as info:
        StreamParser().feed(replace(b"Content-Length: 4", b"Content-Length: 70000"))
    assert info.value.status == 413
    with pytest.raises(ParseError):
        StreamParser().feed(b"X" * (MAX_MESSAGE_SIZE + 10))
    # A head folded before its Content-Length value still frames.
    folded = StreamParser().feed(replace(b"Content-Length: 4", b"Content-Length:\r\n 4"))
    assert isinstance(folded[0], Request) and folded[0].body == b"v=0\n"
