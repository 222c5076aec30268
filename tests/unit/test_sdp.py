"""SDP parse/serialize (RFC 4566) and audio offer/answer (RFC 3264)."""

from __future__ import annotations

from pathlib import Path

import pytest

from media import PCMA, PCMU, Codec
from pbx.sdp import (
    Attribute,
    NoUsableMedia,
    SdpError,
    SessionDescription,
    build_offer,
    negotiate_answer,
    next_version,
    parse_answer,
)

CORPUS = Path("/work/shared/corpus/real")


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# Bodies copied from real captures in the shared corpus (see its INDEX.tsv), so the tests
# do not depend on the corpus being present.
ASTERISK_INVITE = crlf("""
v=0
o=root 136222639 136222640 IN IP4 192.168.10.2
s=Asterisk PBX 1.6.0.6
c=IN IP4 192.168.10.2
t=0 0
m=audio 18874 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=silenceSupp:off - - - -
a=ptime:20
a=sendrecv
""")  # 015-INVITE-asterisk.sip

XLITE_INVITE = crlf("""
v=0
o=- 12930044636772923 1 IN IP4 192.168.10.41
s=CounterPath X-Lite 4.0
c=IN IP4 192.168.10.41
t=0 0
a=ice-ufrag:64f1a0
a=ice-pwd:6c3a6e332f19287d6887564731372ec9
m=audio 64508 RTP/AVP 107 0 8 101
a=rtpmap:107 BV32/16000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=candidate:1 1 UDP 659136 192.168.10.41 64508 typ host
a=candidate:1 2 UDP 659134 192.168.10.41 64509 typ host
""")  # 011-INVITE-xlite.sip

MICROSIP_INVITE = crlf("""
v=0
o=- 3975421861 3975421861 IN IP4 192.168.20.68
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4004 RTP/AVP 8 0 101
c=IN IP4 192.168.20.68
b=TIAS:64000
a=rtcp:4005 IN IP4 192.168.20.68
a=sendrecv
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:130899634 cname:498e445d03e04bb6
""")  # 250-INVITE-microsip.sip

FREESWITCH_200_SENDONLY = crlf("""
v=0
o=FreeSWITCH 1480144037 1480144038 IN IP4 10.0.2.15
s=FreeSWITCH
c=IN IP4 10.0.2.15
t=0 0
m=audio 27942 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendonly
a=ptime:20
""")  # 153-200-freeswitch.sip

LINPHONE_INACTIVE = crlf("""
v=0
o=8801 559 2101 IN IP4 192.168.8.183
s=Talk
c=IN IP4 0.0.0.0
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 0 RTP/AVP 0
a=inactive
""")  # 103-INVITE-linphone.sip

IPHONE_AMR_IPV6 = crlf("""
v=0
o=tel:+88270006 1415985484 1415985484 IN IP6 fd00:183:1:1:1886:9040:8605:32b8
s=-
c=IN IP6 fd00:183:1:1:1886:9040:8605:32b8
t=0 0
a=sendrecv
m=audio 49120 RTP/AVP 104 102 105 100
b=AS:49
a=rtpmap:104 AMR-WB/16000
a=fmtp:104 octet-align=0; max-red=0
a=rtpmap:102 AMR/8000
a=rtpmap:105 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=ptime:20
a=maxptime:240
""")  # 186-INVITE-ios-iphone.sip (trimmed)

REAL_BODIES = [
    ASTERISK_INVITE,
    XLITE_INVITE,
    MICROSIP_INVITE,
    FREESWITCH_200_SENDONLY,
    LINPHONE_INACTIVE,
    IPHONE_AMR_IPV6,
]


@pytest.mark.parametrize("body", REAL_BODIES)
def test_real_bodies_serialize_byte_for_byte(body: bytes) -> None:
    sdp = SessionDescription.parse(body)
    # These bodies already use RFC 4566 §5 order, so serialization reproduces them exactly.
    assert sdp.serialize() == body


def test_parse_fields_of_a_real_body() -> None:
    sdp = SessionDescription.parse(MICROSIP_INVITE)
    assert sdp.origin.session_id == "3975421861" and sdp.origin.session_version == 3975421861
    assert sdp.session_name == "pjmedia"
    assert sdp.connection is None
    assert sdp.bandwidths == ["AS:84"]
    assert sdp.attributes == [Attribute("X-nat", "0")]
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        4004,
        "RTP/AVP",
        ["8", "0", "101"],
    )
    assert sdp.connection_for(audio) is not None
    assert sdp.connection_for(audio).host == "192.168.20.68"  # type: ignore[union-attr]
    assert audio.bandwidths == ["TIAS:64000"]
    assert audio.rtpmaps()[101].encoding == "telephone-event"
    assert audio.fmtp(101) == "0-16"
    assert audio.attribute("ssrc") == "130899634 cname:498e445d03e04bb6"  # unknown, kept
    assert sdp.direction_for(audio) == "sendrecv"


def test_corpus_bodies_parse_and_round_trip() -> None:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    count = 0
    for path in sorted(CORPUS.glob("*.sip")):
        data = path.read_bytes()
        body = data[data.find(b"\r\n\r\n") + 4 :]
        if not body.startswith(b"v=0"):
            continue
        sdp = SessionDescription.parse(body)
        assert SessionDescription.parse(sdp.serialize()) == sdp, path.name
        count += 1
    assert count >= 30


def test_lf_only_and_missing_s_and_t_are_tolerated() -> None:
    sdp = SessionDescription.parse(b"v=0\no=- 1 2 IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\n")
    assert sdp.session_name == "-" and len(sdp.timings) == 1
    assert sdp.serialize().startswith(b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty SDP"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\n", "must start with v="),
        (b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "unsupported SDP version 1"),
        (b"v=0\r\ns=x\r\n", "o= must follow v="),
        (b"v=0\r\no=- 1 IN IP4 1.2.3.4\r\n", "malformed o= line"),
        (b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n", "session version is not a number"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n", "malformed c= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n", "malformed m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", "port 70000 out"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "port is not a number"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ngarbage\r\n", "line 3 is not <type>=<value>"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=0\r\n", "malformed t= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n", "not allowed"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=\r\n", "malformed a= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\xff\r\n", "not UTF-8"),
        (b"v=0\r\n" + b"a=x\r\n" * 40000, "exceeds 65536"),
    ],
)
def test_malformed_sdp_raises_sdp_error(body: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message) as info:
        SessionDescription.parse(body)
    assert info.value.status_hint == 400
    assert isinstance(info.value, ValueError)


def test_malformed_rtpmap_is_reported_when_used() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 96
a=rtpmap:96 opus
""")
    with pytest.raises(SdpError, match="malformed a=rtpmap"):
        negotiate_answer(body, "127.0.0.1", 40000)


# --- offer / answer -----------------------------------------------------------------------


def test_build_offer() -> None:
    offer = build_offer("203.0.113.5", 40000, [PCMU, PCMA], dtmf_pt=101, session_id=42, version=7)
    assert offer.serialize() == crlf("""
v=0
o=- 42 7 IN IP4 203.0.113.5
s=Switchboard
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")
    ipv6 = build_offer("2001:db8::1", 40002, [PCMA], dtmf_pt=None, session_id=1)
    assert b"c=IN IP6 2001:db8::1\r\n" in ipv6.serialize()
    assert ipv6.media[0].formats == ["8"]


def test_next_version_increments_only_the_origin_version() -> None:
    offer = build_offer("10.0.0.1", 40000, session_id=9, version=3)
    again = next_version(offer)
    assert again.origin.session_version == 4 and again.origin.session_id == "9"
    assert offer.origin.session_version == 3  # original untouched
    assert again.media == offer.media


def test_answer_picks_first_codec_in_offer_order() -> None:
    # MicroSIP prefers PCMA; we list PCMU first, the offerer's order wins (RFC 3264 §6.1).
    result = negotiate_answer(MICROSIP_INVITE, "198.51.100.1", 41000, [PCMU, PCMA], session_id=5)
    answer, codec, remote, dtmf_pt, direction = result
    assert codec == PCMA
    assert remote == ("192.168.20.68", 4004)  # media-level c= wins
    assert dtmf_pt == 101
    assert direction == "sendrecv"
    assert answer.serialize() == crlf("""
v=0
o=- 5 0 IN IP4 198.51.100.1
s=Switchboard
c=IN IP4 198.51.100.1
t=0 0
m=audio 41000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")


def test_answer_skips_unsupported_codecs_and_keeps_offerer_dtmf_pt_and_fmtp() -> None:
    result = negotiate_answer(XLITE_INVITE, "10.0.0.1", 41000)
    assert result.codec == PCMU  # BV32 first in the offer is skipped; PCMU static, no rtpmap
    assert result.dtmf_payload_type == 101
    assert result.answer.media[0].fmtp(101) == "0-15"
    assert result.remote == ("192.168.10.41", 64508)  # session-level c=


def test_answer_without_dtmf() -> None:
    result = negotiate_answer(ASTERISK_INVITE, "10.0.0.1", 41000, dtmf=False)
    assert result.dtmf_payload_type is None
    assert result.answer.media[0].formats == ["0"]


def test_answer_uses_dynamic_payload_type_and_case_insensitive_names() -> None:
    offer = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 5000 RTP/AVP 96 97
a=rtpmap:96 pcma/8000
a=rtpmap:97 Telephone-Event/8000
""")
    result = negotiate_answer(offer, "10.0.0.1", 41000)
    assert result.codec == Codec(96, "PCMA", 8000)
    assert result.dtmf_payload_type == 97
    assert result.answer.media[0].formats == ["96", "97"]


def test_dtmf_at_other_clock_rate_is_not_chosen() -> None:
    offer = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 5000 RTP/AVP 0 105
a=rtpmap:105 telephone-event/16000
""")
    assert negotiate_answer(offer, "10.0.0.1", 41000).dtmf_payload_type is None


@pytest.mark.parametrize(
    ("offer_direction", "answer_direction"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_direction_is_mirrored(offer_direction: str, answer_direction: str) -> None:
    body = ASTERISK_INVITE.replace(b"a=sendrecv", f"a={offer_direction}".encode())
    result = negotiate_answer(body, "10.0.0.1", 41000)
    assert result.direction == answer_direction
    assert result.answer.media[0].direction == answer_direction


def test_session_level_direction_applies() -> None:
    body = ASTERISK_INVITE.replace(b"a=sendrecv\r\n", b"").replace(
        b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n"
    )
    assert negotiate_answer(body, "10.0.0.1", 41000).direction == "recvonly"


def test_old_style_hold_with_zero_address() -> None:
    # RFC 3264 §8.4: c=0.0.0.0 means "do not send to me".
    body = ASTERISK_INVITE.replace(b"c=IN IP4 192.168.10.2", b"c=IN IP4 0.0.0.0")
    result = negotiate_answer(body, "10.0.0.1", 41000)
    assert result.remote == ("0.0.0.0", 18874)
    assert result.direction == "recvonly"


def test_unusable_streams_are_rejected_with_port_zero() -> None:
    offer = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=video 5002 RTP/AVP 96
a=rtpmap:96 H264/90000
m=audio 5004 RTP/SAVP 0
m=audio 5000 RTP/AVP 18 8
m=audio 5006 RTP/AVP 0
""")
    result = negotiate_answer(offer, "10.0.0.1", 41000)
    assert result.codec == PCMA and result.remote == ("10.0.0.9", 5000)
    ports = [(m.media, m.port, m.proto) for m in result.answer.media]
    # RFC 3264 §6: one answer m-line per offered m-line, in order; only one audio accepted.
    assert ports == [
        ("video", 0, "RTP/AVP"),
        ("audio", 0, "RTP/SAVP"),
        ("audio", 41000, "RTP/AVP"),
        ("audio", 0, "RTP/AVP"),
    ]
    assert SessionDescription.parse(result.answer.serialize()) == result.answer


@pytest.mark.parametrize("body", [IPHONE_AMR_IPV6, LINPHONE_INACTIVE])
def test_nothing_usable_raises_488(body: bytes) -> None:
    with pytest.raises(NoUsableMedia) as info:
        negotiate_answer(body, "10.0.0.1", 41000)
    assert info.value.status_hint == 488
    assert isinstance(info.value, SdpError)


def test_offer_without_connection_is_an_error() -> None:
    body = ASTERISK_INVITE.replace(b"c=IN IP4 192.168.10.2\r\n", b"")
    with pytest.raises(SdpError, match="no c= line"):
        negotiate_answer(body, "10.0.0.1", 41000)


def test_reoffer_answer_keeps_session_id_and_bumps_version() -> None:
    first = negotiate_answer(ASTERISK_INVITE, "10.0.0.1", 41000, session_id=77, version=0)
    second = negotiate_answer(
        ASTERISK_INVITE,
        "10.0.0.1",
        41000,
        session_id=77,
        version=first.answer.origin.session_version + 1,
    )
    assert second.answer.origin.session_id == "77"
    assert second.answer.origin.session_version == 1


def test_parse_answer_from_real_200() -> None:
    codec, remote, dtmf_pt, direction = parse_answer(FREESWITCH_200_SENDONLY)
    assert codec == PCMU
    assert remote == ("10.0.2.15", 27942)
    assert dtmf_pt == 101
    assert direction == "recvonly"  # they only send, so we only receive


def test_parse_answer_round_trip_with_our_own_answer() -> None:
    offer = build_offer("10.0.0.1", 40000, [PCMU, PCMA], session_id=1)
    answer = negotiate_answer(offer.serialize(), "10.0.0.2", 42000, [PCMA], session_id=2)
    assert answer.codec == PCMA
    parsed = parse_answer(answer.answer.serialize())
    assert parsed == (PCMA, ("10.0.0.2", 42000), 101, "sendrecv")


def test_parse_answer_rejections() -> None:
    rejected = ASTERISK_INVITE.replace(b"m=audio 18874", b"m=audio 0")
    with pytest.raises(NoUsableMedia, match="rejected every audio stream"):
        parse_answer(rejected)
    with pytest.raises(NoUsableMedia, match="no codec we support"):
        parse_answer(ASTERISK_INVITE, supported=[Codec(9, "G722", 8000)])
