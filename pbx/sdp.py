"""SDP session descriptions and audio offer/answer (sans-IO).

Theory of operation
-------------------
``SessionDescription.parse`` turns an SDP body (RFC 4566 §5) into plain mutable dataclasses
and ``serialize`` writes it back in the §5 field order with CRLF line ends. Every line is
kept: known fields are typed (origin, connection, timing, media lines, attributes), and
unknown attributes or unknown line types are preserved in order, so a parsed body
re-serializes to an equivalent body. Malformed input raises ``SdpError`` (a ``ValueError``)
whose ``status_hint`` tells the SIP layer what to answer: 400 for a broken body, 488 Not
Acceptable Here when the body is fine but nothing in it is usable (RFC 3261 §21.4.26).

Offer/answer (RFC 3264) for one audio stream, as a B2BUA that anchors media needs it:

* ``build_offer`` makes our offer (§5): our codecs in preference order, telephone-event
  (RFC 4733 §7.1.1), ``a=ptime:20``, a direction attribute.
* ``negotiate_answer`` answers a peer's offer (§6): the answer has exactly one m-line per
  offered m-line (§6), the first usable audio stream is accepted with the first codec *in the
  offer's order* that we support (§6.1 recommends honouring the offerer's preference), plus
  telephone-event under the offerer's payload type; every other m-line is rejected with port
  0 (§6). The direction is mirrored (§6.1: sendonly → recvonly, recvonly → sendonly).
* ``parse_answer`` reads the answer to our offer (§5.1 / §6.1 from the other side).
* ``next_version`` bumps the o= version for a changed re-offer (§8: the version increases
  by one in each new offer/answer of the session).

Static payload types need no ``a=rtpmap`` (RFC 3551 §6); encoding names compare
case-insensitively (RFC 4855 §3). ``c=IN IP4 0.0.0.0`` is old-style hold (RFC 3264 §8.4):
the peer must not be sent media.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from media import DIRECTIONS, PCMA, PCMU, STATIC_PAYLOAD_TYPES, Codec, Direction

__all__ = [
    "Attribute",
    "Connection",
    "MediaDescription",
    "NegotiatedAnswer",
    "NoUsableMedia",
    "Origin",
    "RemoteAnswer",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_offer",
    "negotiate_answer",
    "next_version",
    "parse_answer",
]

MAX_SDP_SIZE = 65536  # bytes; SIP bodies over UDP are far smaller, this only bounds work
MAX_MEDIA = 32
MAX_LINES = 2048

_AUDIO_PROTOS = frozenset({"RTP/AVP"})  # RFC 3551; no SRTP/ICE in this engine yet
_TELEPHONE_EVENT = "TELEPHONE-EVENT"
_MIRROR: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})
# RFC 4566 §5: order of session-level lines.
_SESSION_ORDER = "vosiuepcbtrzka"


class SdpError(ValueError):
    """Malformed or unusable SDP. ``status_hint`` is the SIP status to answer with."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class NoUsableMedia(SdpError):
    """Well-formed SDP with nothing we can accept: answer 488 (RFC 3261 §21.4.26)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_hint=488)


# --- Model ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Origin:
    """``o=`` (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: int
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str = "0.0.0.0"

    def serialize(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.net_type} {self.addr_type} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """``c=`` (RFC 4566 §5.7). ``address`` keeps any ``/ttl/count`` suffix."""

    address: str
    net_type: str = "IN"
    addr_type: str = "IP4"

    @property
    def host(self) -> str:
        """The address without multicast TTL/count suffixes."""
        return self.address.split("/", 1)[0]

    def serialize(self) -> str:
        return f"{self.net_type} {self.addr_type} {self.address}"


@dataclass(slots=True)
class Attribute:
    """``a=name`` or ``a=name:value`` (RFC 4566 §5.13)."""

    name: str
    value: str | None = None

    def serialize(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(slots=True)
class Timing:
    """``t=`` with its ``r=`` lines (RFC 4566 §5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <name>/<rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) and its lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    # Lines with a type letter RFC 4566 does not define at media level, kept verbatim.
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """Value of the first attribute with this name (``""`` for a flag), else None."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Values of every attribute with this name."""
        return [a.value or "" for a in self.attributes if a.name == name]

    @property
    def direction(self) -> Direction | None:
        """Media-level direction attribute, if present."""
        for attr in self.attributes:
            if attr.value is None and attr.name in DIRECTIONS:
                return _as_direction(attr.name)
        return None

    def set_direction(self, direction: Direction) -> None:
        """Replace any direction attribute with ``direction``."""
        self.attributes = [
            a for a in self.attributes if not (a.value is None and a.name in DIRECTIONS)
        ]
        self.attributes.append(Attribute(direction))

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds, if present and numeric."""
        value = self.attribute("ptime")
        if value is None:
            return None
        try:
            return int(float(value))
        except ValueError:
            return None

    def rtpmaps(self) -> dict[int, RtpMap]:
        """``a=rtpmap`` entries by payload type (malformed ones raise ``SdpError``)."""
        result: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            result[rtpmap.payload_type] = rtpmap
        return result

    def fmtp(self, payload_type: int) -> str | None:
        """Format parameters of one payload type (``a=fmtp``), if any."""
        prefix = f"{payload_type} "
        for value in self.attribute_values("fmtp"):
            if value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    def format_of(self, payload_type: int) -> tuple[str, int] | None:
        """(upper-case encoding name, clock rate) of a payload type, static or mapped."""
        rtpmap = self.rtpmaps().get(payload_type)
        if rtpmap is not None:
            return rtpmap.encoding.upper(), rtpmap.clock_rate
        # RFC 3551 §6: static assignments apply without rtpmap.
        return STATIC_PAYLOAD_TYPES.get(payload_type)


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5)."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    zone: str | None = None
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    # --- parsing ----------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; ``SdpError`` (status 400) on malformed input."""
        if isinstance(data, bytes | bytearray):
            if len(data) > MAX_SDP_SIZE:
                raise SdpError(f"SDP body of {len(data)} bytes exceeds {MAX_SDP_SIZE}")
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"SDP is not UTF-8: {exc}") from None
        else:
            text = data
            if len(text) > MAX_SDP_SIZE:
                raise SdpError(f"SDP body of {len(text)} characters exceeds {MAX_SDP_SIZE}")
        # RFC 4566 §5: lines end in CRLF, but parsers SHOULD also accept LF alone.
        lines = [line.rstrip("\r") for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise SdpError("empty SDP body")
        if len(lines) > MAX_LINES:
            raise SdpError(f"SDP has {len(lines)} lines, more than {MAX_LINES}")
        return _Parser(lines).parse()

    # --- serializing --------------------------------------------------------------------

    def serialize(self) -> bytes:
        """Encode as an SDP body (UTF-8, CRLF line ends, RFC 4566 §5 order)."""
        out: list[str] = [f"v={self.version}", f"o={self.origin.serialize()}"]
        out.append(f"s={self.session_name or ' '}")  # §5.3: s= must not be empty
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection.serialize()}")
        out.extend(f"b={b}" for b in self.bandwidths)
        for timing in self.timings or [Timing()]:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend(f"r={r}" for r in timing.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={a.serialize()}" for a in self.attributes)
        out.extend(f"{t}={v}" for t, v in self.other_lines)
        for m in self.media:
            port = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
            out.append(f"m={m.media} {port} {m.proto} {' '.join(m.formats)}")
            if m.information is not None:
                out.append(f"i={m.information}")
            if m.connection is not None:
                out.append(f"c={m.connection.serialize()}")
            out.extend(f"b={b}" for b in m.bandwidths)
            if m.key is not None:
                out.append(f"k={m.key}")
            out.extend(f"a={a.serialize()}" for a in m.attributes)
            out.extend(f"{t}={v}" for t, v in m.other_lines)
        return ("\r\n".join(out) + "\r\n").encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.serialize()

    # --- helpers ------------------------------------------------------------------------

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """Media-level ``c=`` if present, else the session-level one (RFC 4566 §5.7)."""
        return media.connection or self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1)."""
        direction = media.direction
        if direction is not None:
            return direction
        for attr in self.attributes:
            if attr.value is None and attr.name in DIRECTIONS:
                return _as_direction(attr.name)
        return "sendrecv"


def _as_direction(name: str) -> Direction:
    for direction in DIRECTIONS:
        if direction == name:
            return direction
    raise SdpError(f"not a direction: {name!r}")


def _parse_int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    if not text.isdigit() or not text.isascii():
        raise SdpError(f"{what} is not a number: {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise SdpError(f"{what} {value} out of range")
    return value


def _parse_rtpmap(value: str) -> RtpMap:
    pt_text, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    if not rest.strip() or len(parts) < 2 or len(parts) > 3:
        raise SdpError(f"malformed a=rtpmap: {value!r}")
    channels = _parse_int(parts[2], "rtpmap channels", 1) if len(parts) == 3 else None
    return RtpMap(
        payload_type=_parse_int(pt_text, "rtpmap payload type", 0, 127),
        encoding=parts[0],
        clock_rate=_parse_int(parts[1], "rtpmap clock rate", 1),
        channels=channels,
    )


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"malformed c= line: {value!r}")
    return Connection(net_type=parts[0], addr_type=parts[1], address=parts[2])


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not name:
        raise SdpError(f"malformed a= line: {value!r}")
    return Attribute(name, rest if sep else None)


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def parse(self) -> SessionDescription:
        session: SessionDescription | None = None
        version: int | None = None
        saw_s = False
        current: MediaDescription | None = None
        for number, line in enumerate(self.lines, 1):
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpError(f"SDP line {number} is not <type>=<value>: {line[:40]!r}")
            kind, value = line[0], line[2:]
            if number == 1:
                if kind != "v":
                    raise SdpError("SDP must start with v=")
                version = _parse_int(value.strip(), "SDP version")
                if version != 0:
                    raise SdpError(f"unsupported SDP version {version}")
                continue
            if number == 2:
                if kind != "o":
                    raise SdpError("SDP o= must follow v=")
                session = SessionDescription(origin=self._origin(value), timings=[])
                continue
            assert session is not None
            if kind == "m":
                if len(session.media) >= MAX_MEDIA:
                    raise SdpError(f"more than {MAX_MEDIA} m= lines")
                current = self._media(value)
                session.media.append(current)
            elif current is not None:
                self._media_line(current, kind, value)
            else:
                saw_s |= kind == "s"
                self._session_line(session, kind, value)
        if session is None:
            raise SdpError("SDP has no o= line")
        if not saw_s:
            # RFC 4566 §5.3 requires s=; some phones omit it, and nothing depends on it.
            session.session_name = "-"
        if not session.timings:
            session.timings.append(Timing())
        return session

    @staticmethod
    def _origin(value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"malformed o= line: {value!r}")
        return Origin(
            username=parts[0],
            session_id=parts[1],
            session_version=_parse_int(parts[2], "o= session version"),
            net_type=parts[3],
            addr_type=parts[4],
            address=parts[5],
        )

    @staticmethod
    def _session_line(session: SessionDescription, kind: str, value: str) -> None:
        if kind == "s":
            session.session_name = value
        elif kind == "i":
            session.information = value
        elif kind == "u":
            session.uri = value
        elif kind == "e":
            session.emails.append(value)
        elif kind == "p":
            session.phones.append(value)
        elif kind == "c":
            session.connection = _parse_connection(value)
        elif kind == "b":
            session.bandwidths.append(value)
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise SdpError(f"malformed t= line: {value!r}")
            session.timings.append(
                Timing(_parse_int(parts[0], "t= start"), _parse_int(parts[1], "t= stop"))
            )
        elif kind == "r":
            if not session.timings:
                raise SdpError("r= line before any t= line")
            session.timings[-1].repeats.append(value)
        elif kind == "z":
            session.zone = value
        elif kind == "k":
            session.key = value
        elif kind == "a":
            session.attributes.append(_parse_attribute(value))
        elif kind in "vo":
            raise SdpError(f"duplicate {kind}= line")
        else:
            session.other_lines.append((kind, value))

    @staticmethod
    def _media(value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"malformed m= line: {value!r}")
        port_text, _, count_text = parts[1].partition("/")
        port = _parse_int(port_text, "m= port", 0, 65535)
        count = _parse_int(count_text, "m= port count", 1) if count_text else None
        return MediaDescription(
            media=parts[0],
            port=port,
            port_count=count,
            proto=parts[2],
            formats=parts[3:],
        )

    @staticmethod
    def _media_line(media: MediaDescription, kind: str, value: str) -> None:
        if kind == "i":
            media.information = value
        elif kind == "c":
            # Several c= lines are legal for layered multicast (§5.7); unicast uses one.
            if media.connection is None:
                media.connection = _parse_connection(value)
            else:
                media.other_lines.append((kind, value))
        elif kind == "b":
            media.bandwidths.append(value)
        elif kind == "k":
            media.key = value
        elif kind == "a":
            media.attributes.append(_parse_attribute(value))
        elif kind in "vostuezpr":
            raise SdpError(f"{kind}= line not allowed inside a media section")
        else:
            media.other_lines.append((kind, value))


# --- Offer / answer ------------------------------------------------------------------------


class NegotiatedAnswer(NamedTuple):
    """Result of answering an offer (unpacks as a 5-tuple)."""

    answer: SessionDescription
    codec: Codec  # payload type as numbered by the offerer
    remote: tuple[str, int]  # where to send RTP (host may be 0.0.0.0: send nothing)
    dtmf_payload_type: int | None
    direction: Direction  # OUR direction on this leg, as in the answer


class RemoteAnswer(NamedTuple):
    """What a peer's answer to our offer selected (unpacks as a 4-tuple)."""

    codec: Codec
    remote: tuple[str, int]
    dtmf_payload_type: int | None
    direction: Direction  # OUR direction on this leg (mirror of the answer's)


def _addr_type(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def _new_session_id() -> str:
    # RFC 4566 §5.2: a numeric string; an NTP timestamp is suggested, any unique value works.
    return str(secrets.randbits(62))


def _audio_media(
    port: int,
    codecs: Sequence[Codec],
    dtmf_pt: int | None,
    direction: Direction,
    dtmf_fmtp: str = "0-16",
) -> MediaDescription:
    media = MediaDescription(media="audio", port=port, proto="RTP/AVP", formats=[])
    for codec in codecs:
        media.formats.append(str(codec.payload_type))
        # rtpmap even for static types: harmless and helps peers with odd defaults.
        media.attributes.append(
            Attribute("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}")
        )
    if dtmf_pt is not None:
        rate = codecs[0].clock_rate if codecs else 8000
        media.formats.append(str(dtmf_pt))
        media.attributes.append(Attribute("rtpmap", f"{dtmf_pt} telephone-event/{rate}"))
        media.attributes.append(Attribute("fmtp", f"{dtmf_pt} {dtmf_fmtp}"))
    media.attributes.append(Attribute("ptime", "20"))
    media.attributes.append(Attribute(direction))
    return media


def build_offer(
    host: str,
    port: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    dtmf_pt: int | None = 101,
    session_id: int | str | None = None,
    version: int = 0,
    *,
    direction: Direction = "sendrecv",
    username: str = "-",
    session_name: str = "Switchboard",
) -> SessionDescription:
    """Our offer for one audio stream (RFC 3264 §5). Serialize with ``.serialize()``."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    sid = str(session_id) if session_id is not None else _new_session_id()
    return SessionDescription(
        origin=Origin(username, sid, version, "IN", _addr_type(host), host),
        session_name=session_name,
        connection=Connection(host, "IN", _addr_type(host)),
        media=[_audio_media(port, codecs, dtmf_pt, direction)],
    )


def next_version(sdp: SessionDescription) -> SessionDescription:
    """Copy of our SDP with o= version + 1, for a changed re-offer (RFC 3264 §8)."""
    origin = replace(sdp.origin, session_version=sdp.origin.session_version + 1)
    return replace(sdp, origin=origin)


def _pick_codec(media: MediaDescription, supported: Iterable[Codec]) -> Codec | None:
    wanted = list(supported)
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        found = media.format_of(pt)
        if found is None:
            continue
        name, rate = found
        for codec in wanted:
            if codec.name.upper() == name and codec.clock_rate == rate:
                return Codec(pt, codec.name, rate)
    return None


def _pick_dtmf(media: MediaDescription, clock_rate: int) -> int | None:
    # RFC 4733 §7.1.1: telephone-event at the audio codec's clock rate.
    for pt, rtpmap in media.rtpmaps().items():
        if (
            rtpmap.encoding.upper() == _TELEPHONE_EVENT
            and rtpmap.clock_rate == clock_rate
            and str(pt) in media.formats
        ):
            return pt
    return None


def _usable(media: MediaDescription) -> bool:
    return media.media.lower() == "audio" and media.port != 0 and media.proto in _AUDIO_PROTOS


def _coerce(sdp: SessionDescription | bytes | str) -> SessionDescription:
    return sdp if isinstance(sdp, SessionDescription) else SessionDescription.parse(sdp)


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps media and proto, port 0, at least one format.
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=media.formats[:1] or ["0"]
    )


def negotiate_answer(
    offer: SessionDescription | bytes | str,
    host: str,
    port: int,
    supported: Sequence[Codec] = (PCMU, PCMA),
    dtmf: bool = True,
    *,
    session_id: int | str | None = None,
    version: int = 0,
    username: str = "-",
    session_name: str = "Switchboard",
) -> NegotiatedAnswer:
    """Answer an offer (RFC 3264 §6); ``NoUsableMedia`` (488) when nothing is usable.

    For a re-offer in an existing session pass the same ``session_id`` and our previous
    version + 1 (RFC 3264 §8).
    """
    sdp = _coerce(offer)
    chosen: tuple[int, Codec, int | None] | None = None
    for index, media in enumerate(sdp.media):
        if not _usable(media):
            continue
        codec = _pick_codec(media, supported)
        if codec is None:
            continue
        dtmf_pt = _pick_dtmf(media, codec.clock_rate) if dtmf else None
        chosen = (index, codec, dtmf_pt)
        break
    if chosen is None:
        raise NoUsableMedia("no audio stream in the offer uses a codec we support")
    index, codec, dtmf_pt = chosen
    offered = sdp.media[index]
    connection = sdp.connection_for(offered)
    if connection is None:
        raise SdpError("offer has no c= line for its audio stream")
    remote_host = connection.host
    offer_direction = sdp.direction_for(offered)
    direction = _MIRROR[offer_direction]
    if remote_host in _UNSPECIFIED and direction in ("sendrecv", "sendonly"):
        # RFC 3264 §8.4: old-style hold, the offerer wants no media; we may still receive.
        direction = "recvonly" if direction == "sendrecv" else "inactive"
    fmtp = (offered.fmtp(dtmf_pt) if dtmf_pt is not None else None) or "0-16"
    answer_media: list[MediaDescription] = []
    for i, media in enumerate(sdp.media):
        if i == index:
            answer_media.append(_audio_media(port, [codec], dtmf_pt, direction, fmtp))
        else:
            answer_media.append(_rejected(media))
    sid = str(session_id) if session_id is not None else _new_session_id()
    answer = SessionDescription(
        origin=Origin(username, sid, version, "IN", _addr_type(host), host),
        session_name=session_name,
        connection=Connection(host, "IN", _addr_type(host)),
        media=answer_media,
    )
    return NegotiatedAnswer(answer, codec, (remote_host, offered.port), dtmf_pt, direction)


def parse_answer(
    answer: SessionDescription | bytes | str,
    supported: Sequence[Codec] = (PCMU, PCMA),
) -> RemoteAnswer:
    """Read a peer's answer to our offer (RFC 3264 §6.1 seen from the offerer).

    The codec is the first format of the first accepted audio stream that we support (the
    answerer lists formats in its preference order and may send any of them).
    """
    sdp = _coerce(answer)
    rejected_all = True
    for media in sdp.media:
        if media.media.lower() != "audio" or media.port == 0:
            continue
        rejected_all = False
        if media.proto not in _AUDIO_PROTOS:
            continue
        codec = _pick_codec(media, supported)
        if codec is None:
            continue
        connection = sdp.connection_for(media)
        if connection is None:
            raise SdpError("answer has no c= line for its audio stream")
        remote_direction = sdp.direction_for(media)
        direction = _MIRROR[remote_direction]
        host = connection.host
        if host in _UNSPECIFIED and direction in ("sendrecv", "sendonly"):
            direction = "recvonly" if direction == "sendrecv" else "inactive"
        return RemoteAnswer(
            codec, (host, media.port), _pick_dtmf(media, codec.clock_rate), direction
        )
    if rejected_all:
        raise NoUsableMedia("the answer rejected every audio stream")
    raise NoUsableMedia("the answer selected no codec we support")
