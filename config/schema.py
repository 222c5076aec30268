"""Pydantic schema for ``switchboard.yaml``.

Theory of operation: the YAML file is parsed by :mod:`config.loader` into plain Python values,
then validated here. Every model forbids unknown keys, so a typo (``relm:``) is an error with a
file:line:column instead of a silently ignored setting. Semantic checks that concern one value
live on that field (so the error points at it); checks that tie several fields together live on
the model and point at the enclosing key.

The models are immutable (``frozen=True``): the running server receives one validated snapshot
and a reload builds a new one. Nothing here reads files or the environment.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from crm.business_hours import parse_duration
from pbx import dialplan as dp
from pbx.patterns import compile_pattern
from pbx.timecond import Holiday, WeeklyRange, load_zone, overlapping, parse_days
from pbx.timecond import parse_hours as _parse_hours

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1)]

# Digest algorithms we can compute (RFC 7616 §3.2, RFC 8760). Kept as a Literal so a typo is a
# schema error rather than a runtime surprise at the first REGISTER.
DigestAlgorithm = Literal["SHA-256", "MD5"]
# SIP transports (RFC 3261 §18; tls: §26.2.1, SIP over TLS over TCP).
Transport = Literal["udp", "tcp", "tls"]
# RFC 3261 §19.1.2: the default port of SIP over TLS, 5060 for the others.
TLS_PORT = 5061
# How far an extension may call out (each class allows the ones before it).
ClassOfService = Literal["internal", "local", "national", "international", "premium"]

# The smallest RTP range that makes sense: one even RTP port and its RTCP neighbour per leg,
# and a B2BUA call needs two legs.
MIN_RTP_PORTS = 4


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_host(value: str) -> str:
    """Accept an IP literal or a DNS-looking host name (no scheme, port or spaces)."""
    value = value.strip()
    if not value:
        raise ValueError("host must not be empty")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-.")
        if not set(value.lower()) <= allowed or value.startswith((".", "-")):
            raise ValueError(
                f"{value!r} is neither an IP address nor a host name (no scheme or port here)"
            ) from None
    return value


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check_extension_number(value: str) -> str:
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"extension {value!r} must be digits only, e.g. '1001'")
    return value


ExtensionNumber = Annotated[str, AfterValidator(_check_extension_number)]


def _tls_default_port(data: object) -> object:
    """``port`` left out of a ``transport: tls`` entry is 5061 (RFC 3261 §19.1.2)."""
    if isinstance(data, dict) and data.get("transport") == "tls" and "port" not in data:
        return {**data, "port": TLS_PORT}
    return data


class ListenConfig(_Model):
    """One SIP listening socket."""

    transport: Transport = "udp"
    host: str = "0.0.0.0"
    port: Port = 5060

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        return _tls_default_port(data)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)


def _check_file_name(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("a file name must not be empty (null = none)")
    return value


FileName = Annotated[str | None, AfterValidator(_check_file_name)]


class TlsConfig(_Model):
    """Our certificate for SIP over TLS (RFC 3261 §26.2.1): what TLS listeners present, and
    what trunk connections show a carrier that asks for a client certificate. Both null:
    a self-signed pair is generated on first start (``tls/`` in the config folder)."""

    certificate: FileName = None
    key: FileName = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("give both certificate and key, or neither (self-signed)")
        return self


class RegistrationConfig(_Model):
    """Bounds on REGISTER expiry (RFC 3261 §10.2.1.1, §10.3 step 7)."""

    min_expires: Seconds = 60
    max_expires: Seconds = 3600
    default_expires: Seconds = 600

    @model_validator(mode="after")
    def _ordered(self) -> RegistrationConfig:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError(
                "expected min_expires <= default_expires <= max_expires, got "
                f"{self.min_expires} / {self.default_expires} / {self.max_expires}"
            )
        return self


def _default_algorithms() -> list[DigestAlgorithm]:
    # MD5 only, as Asterisk and Kamailio: clients that read only the first challenge
    # (sipsak, SIPp, SIPVicious) or give up on any SHA-256 one (baresip 1.0) still register.
    return ["MD5"]


def _check_algorithms(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("at least one digest algorithm is required")
    if len(set(value)) != len(value):
        raise ValueError("digest algorithms must not repeat")
    return value


class AuthConfig(_Model):
    """Digest authentication and brute-force throttling for the registrar and INVITEs."""

    algorithms: list[DigestAlgorithm] = Field(default_factory=_default_algorithms)
    nonce_lifetime: Seconds = 300
    max_failures: Annotated[int, Field(ge=1)] = 5
    failure_window: Seconds = 60
    block_seconds: Annotated[int, Field(ge=0)] = 300

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        return _check_algorithms(value)


class SipConfig(_Model):
    """SIP signalling: sockets, identity, registrar and authentication."""

    listen: list[ListenConfig] = Field(
        default_factory=lambda: [
            ListenConfig(transport="udp"),
            ListenConfig(transport="tcp"),
            ListenConfig(transport="tls", port=TLS_PORT),
        ]
    )
    tls: TlsConfig = Field(default_factory=TlsConfig)
    realm: Annotated[str, Field(min_length=1)] = "switchboard"
    advertise_host: str | None = None
    user_agent: Annotated[str, Field(min_length=1)] = "Switchboard"
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: list[ListenConfig]) -> list[ListenConfig]:
        if not value:
            raise ValueError("at least one listen socket is required")
        seen: set[tuple[str, str, int]] = set()
        for item in value:
            key = (item.transport, item.host, item.port)
            if key in seen:
                raise ValueError(
                    f"duplicate listen socket {item.transport}:{item.host}:{item.port}"
                )
            seen.add(key)
        return value

    @field_validator("advertise_host")
    @classmethod
    def _advertise(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _check_host(value)
        if _is_unspecified(value):
            raise ValueError("advertise_host must be an address peers can reach, not 0.0.0.0")
        return value


class RtpConfig(_Model):
    """Media: where RTP sockets bind and which UDP ports they take."""

    host: str = "0.0.0.0"
    ports: tuple[Port, Port] = (10000, 20000)
    inactivity_timeout: Annotated[float, Field(gt=0)] = 60

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: tuple[int, int]) -> tuple[int, int]:
        start, end = value
        # RFC 3550 §11: RTP uses an even port and RTCP the next odd one.
        if start % 2:
            raise ValueError(f"the first RTP port must be even (RFC 3550 §11), got {start}")
        if end < start:
            raise ValueError(f"RTP port range is reversed: {start} > {end}")
        if end - start + 1 < MIN_RTP_PORTS:
            raise ValueError(
                f"RTP port range {start}-{end} is too small, need at least {MIN_RTP_PORTS} ports"
            )
        if start < 1024:
            raise ValueError(f"RTP ports must not use the privileged range (< 1024), got {start}")
        return value


class StoreConfig(_Model):
    """The database (SQLAlchemy async URL).

    Relative SQLite paths (``sqlite+aiosqlite:///switchboard.db``) are resolved by the loader
    against the folder holding the config file, not against the working directory.
    """

    url: Annotated[str, Field(min_length=1)] = "sqlite+aiosqlite:///switchboard.db"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"unsupported driver {url.drivername!r}: use sqlite+aiosqlite:// or "
                "postgresql+asyncpg://"
            )
        return value


class IceServerConfig(_Model):
    """A STUN or TURN server for the browser phone (WebRTC RTCIceServer)."""

    urls: Annotated[
        list[Annotated[str, Field(pattern=r"^(stun|stuns|turn|turns):")]], Field(min_length=1)
    ]
    username: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _turn_needs_credentials(self) -> IceServerConfig:
        turn = any(u.startswith("turn") for u in self.urls)
        if turn and (self.username is None or self.credential is None):
            raise ValueError("a TURN server needs username and credential")
        return self


class BrowserPhoneConfig(_Model):
    """The agent panel's browser phone (WebRTC, docs/panel.md "Browser phone")."""

    enabled: bool = True
    ice_servers: list[IceServerConfig] = Field(default_factory=list)


class HttpConfig(_Model):
    """The HTTP API, event stream, metrics and the web panel: served by the same process
    and event loop as SIP (docs/api.md)."""

    enabled: bool = True
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    session_minutes: Annotated[int, Field(ge=1, le=10080)] = 480
    secure_cookie: bool = False
    browser_phone: BrowserPhoneConfig = Field(default_factory=BrowserPhoneConfig)


def _check_pin(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 4 <= len(value) <= 12):
        raise ValueError("a voicemail PIN is 4 to 12 digits")
    return value


class VoicemailConfig(_Model):
    """An extension's mailbox: when calls roll to it, the owner's PIN, the greeting, and
    how its phones learn about new messages (message-waiting indication, RFC 3842)."""

    # Unanswered or busy calls roll to the mailbox; the owner may dial into it (with the PIN).
    enabled: bool = False
    pin: Annotated[str, AfterValidator(_check_pin)] | None = None
    on_busy: bool = True
    on_no_answer: bool = True
    # Ring this long before the mailbox answers; None: the extension's ring_timeout.
    no_answer_seconds: Annotated[int, Field(ge=1, le=600)] | None = None
    # A WAV played instead of the standard "leave a message" prompt (relative to the config).
    greeting: str | None = None
    max_message_seconds: Annotated[int, Field(ge=1, le=3600)] = 120
    # The language of the owner's mailbox menu (prompts in ivr/prompts/<language>).
    language: Literal["en", "zh"] = "en"
    # subscribe: NOTIFY phones that SUBSCRIBE to message-summary; unsolicited: also NOTIFY
    # the registered phones without a subscription; off: neither.
    mwi: Literal["subscribe", "unsolicited", "off"] = "subscribe"

    @model_validator(mode="after")
    def _pin_when_enabled(self) -> VoicemailConfig:
        if self.enabled and self.pin is None:
            raise ValueError("voicemail.enabled needs a pin (4-12 digits) for the owner")
        return self


class ExtensionConfig(_Model):
    """One internal extension (a SIP account phones register with)."""

    name: str = ""
    password: Annotated[str, Field(min_length=1)]
    # Digest algorithms for this extension instead of sip.auth.algorithms (opt in to SHA-256).
    auth_algorithms: list[DigestAlgorithm] | None = None
    # Toll-fraud guards for calls through trunks: the farthest number class it may call,
    # and caps on outbound calls per minute and at once (0: no cap).
    class_of_service: ClassOfService = "national"
    max_outbound_per_minute: Annotated[int, Field(ge=0)] = 10
    max_outbound_calls: Annotated[int, Field(ge=0)] = 2
    # The outside number its calls through trunks present (used when the trunk owns it),
    # and whether they withhold the caller ID (From anonymous, Privacy: id).
    caller_id: PhoneNumber | None = None
    hide_caller_id: bool = False
    ring_timeout: Annotated[int, Field(ge=1, le=600)] = 30
    pickup_group: str | None = None
    dtmf_mode: Literal["auto", "rfc4733", "inband", "info"] = "auto"
    # Its phones answer queue offers by themselves (an agent's desk phone): the offer's
    # INVITE carries Call-Info answer-after=0 and Alert-Info info=alert-autoanswer.
    auto_answer: bool = False
    voicemail: VoicemailConfig = Field(default_factory=VoicemailConfig)
    # Record this extension's calls (true), never (false), or as ``recording.record``
    # says (unset). A queue's own setting wins for calls it hands over.
    record: bool | None = None

    @field_validator("auth_algorithms")
    @classmethod
    def _auth_algorithms(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_algorithms(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("password must not be blank")
        return value


def _check_feature_code(value: str) -> str:
    if not value or value[0] not in "*#" or not all(c in "0123456789*#" for c in value):
        raise ValueError(f"feature code {value!r} must start with * or # and use only 0-9 * #")
    return value


FeatureCode = Annotated[str, AfterValidator(_check_feature_code)]


class MediaConfig(_Model):
    """Tones, music on hold and where RTP runs (in process, or in worker processes)."""

    tone_plan: Literal["us", "uk", "cn"] = "us"
    music_on_hold: list[str] = Field(default_factory=list)
    # 0: RTP in the main process; N: N media worker processes; "auto": one per core.
    workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = 0


class FeatureCodesConfig(_Model):
    """Codes dialled from a phone to change its own settings or pick up calls."""

    forward_all_on: FeatureCode = "*72"
    forward_all_off: FeatureCode = "*73"
    forward_busy_on: FeatureCode = "*90"
    forward_busy_off: FeatureCode = "*91"
    forward_no_answer_on: FeatureCode = "*92"
    forward_no_answer_off: FeatureCode = "*93"
    dnd_on: FeatureCode = "*78"
    dnd_off: FeatureCode = "*79"
    pickup: FeatureCode = "*8"
    directed_pickup: FeatureCode = "**"
    agent_login: FeatureCode = "*45"
    agent_logout: FeatureCode = "*46"
    agent_pause: FeatureCode = "*47"
    agent_unpause: FeatureCode = "*48"
    wrap_up_done: FeatureCode = "*49"
    supervise_listen: FeatureCode = "*51"
    supervise_whisper: FeatureCode = "*52"
    supervise_barge: FeatureCode = "*53"
    supervise_intercept: FeatureCode = "*54"
    voicemail_own: FeatureCode = "*97"
    voicemail_any: FeatureCode = "*98"

    @model_validator(mode="after")
    def _distinct(self) -> FeatureCodesConfig:
        codes = list(self.model_dump().values())
        dupes = {c for c in codes if codes.count(c) > 1}
        if dupes:
            raise ValueError(f"feature codes must be distinct: {sorted(dupes)}")
        return self


class ConferenceConfig(_Model):
    """A named conference room reachable by dialling its number."""

    name: str = ""
    max_members: Annotated[int, Field(ge=2, le=200)] = 20


# --- Dialplan -----------------------------------------------------------------------------
# The models below only check what one value can tell (a pattern compiles, a time zone
# exists, a destination has the fields its kind needs). References between values (a
# destination naming an extension, a time condition, a holiday calendar) are checked by
# `dialplan_problems` once the whole file is valid, so each problem points at the value that
# names the missing thing; the loader turns those paths into file:line:column.

DestinationKindName = Literal[
    "extension",
    "ivr",
    "queue",
    "voicemail",
    "conference",
    "hangup",
    "play_hangup",
    "time_condition",
    "outbound",
    "number",
]
# Kinds that need a target, and what the target names (for messages).
_TARGET_NEEDED = {
    "ivr": "an IVR flow name",
    "queue": "a queue name",
    "time_condition": "a time condition name",
    "number": "an outside number, as a phone dials it (e.g. 90612345678)",
}
_NUMBER = re.compile(r"\+?[0-9*#]+")
SipStatus = Annotated[int, Field(ge=400, le=699)]


def _check_number(value: str) -> str:
    if _NUMBER.fullmatch(value) is None:
        raise ValueError(f"{value!r} must be digits (with *, # and a leading + allowed)")
    return value


def _check_prepend(value: str) -> str:
    if value and re.fullmatch(r"\+?[0-9*#]*", value) is None:
        raise ValueError(f"prepend {value!r} must be digits, *, # (with a leading + allowed)")
    return value


def _check_pattern(value: str) -> str:
    compile_pattern(value)  # ValueError explains what is wrong
    return value


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must not be blank")
    return value


def _date_text(value: object) -> object:
    # YAML reads an unquoted 2025-10-01 as a date; the schema keeps dates as text so that
    # yearly "10-01" and full dates share one parser.
    return value.isoformat() if isinstance(value, date) else value


def _check_date(value: str) -> str:
    Holiday.parse(value)
    return value


def _check_days(value: str) -> str:
    parse_days(value)
    return value


def _check_hours(value: str) -> str:
    _parse_hours(value)
    return value


def _check_zone(value: str) -> str:
    load_zone(value)
    return value


PhoneNumber = Annotated[str, AfterValidator(_check_number)]
DialPatternText = Annotated[str, AfterValidator(_check_pattern)]
Name = Annotated[str, AfterValidator(_check_name)]
HolidayDate = Annotated[str, BeforeValidator(_date_text), AfterValidator(_check_date)]


class DestinationConfig(_Model):
    """Where a call goes: ``kind`` plus what that kind needs."""

    kind: DestinationKindName
    target: str = ""
    prompt: str | None = None
    status: SipStatus | None = None
    priority: Annotated[int, Field(ge=0, le=100)] | None = None
    skills: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> DestinationConfig:
        need = _TARGET_NEEDED.get(self.kind)
        if need is not None and not self.target.strip():
            raise ValueError(f"a {self.kind} destination needs target: {need}")
        if self.kind == "number":
            _check_number(self.target)
        if self.kind in ("hangup", "play_hangup") and self.target:
            raise ValueError(f"a {self.kind} destination takes no target")
        if self.kind == "play_hangup" and not self.prompt:
            raise ValueError("a play_hangup destination needs prompt: the prompt to play")
        if self.status is not None and self.kind != "hangup":
            raise ValueError("status is only for hangup destinations")
        if (self.priority is not None or self.skills) and self.kind != "queue":
            raise ValueError("priority and skills are only for queue destinations")
        return self

    def to_destination(self) -> dp.Destination:
        return dp.Destination(
            kind=dp.DestinationKind(self.kind),
            target=self.target,
            prompt=self.prompt,
            status=self.status if self.status is not None or self.kind != "hangup" else 480,
            priority=self.priority,
            skills=tuple(self.skills),
        )


def _not_found() -> DestinationConfig:
    return DestinationConfig(kind="hangup", status=404)


class InboundRouteConfig(_Model):
    """Calls to a DID (dial pattern) and/or from a caller prefix go to ``destination``."""

    name: str = ""
    did: DialPatternText | None = None
    caller: PhoneNumber | None = None
    destination: DestinationConfig

    @model_validator(mode="after")
    def _has_condition(self) -> InboundRouteConfig:
        if self.did is None and self.caller is None:
            raise ValueError("an inbound route needs did:, caller: or both")
        return self


class DialRuleConfig(_Model):
    """An internal dialling rule: numbers matching ``pattern`` go to ``destination``."""

    name: str = ""
    pattern: DialPatternText
    strip: Annotated[int, Field(ge=0)] = 0
    prepend: Annotated[str, AfterValidator(_check_prepend)] = ""
    destination: DestinationConfig

    @model_validator(mode="after")
    def _strip_fits(self) -> DialRuleConfig:
        _check_strip(self.pattern, self.strip)
        return self


def _default_emergency() -> list[str]:
    return ["112", "911", "999", "110", "119", "120", "122"]


def _default_premium() -> list[str]:
    return ["_1900.", "_+1900."]


def _default_international() -> list[str]:
    return ["_00.", "_+."]


def _default_national() -> list[str]:
    return ["_0."]


class NumberClassesConfig(_Model):
    """Which outside numbers are emergency, premium, international or national (patterns
    tried in that order on the number a rule sends out); the rest are local."""

    emergency: list[DialPatternText] = Field(default_factory=_default_emergency)
    premium: list[DialPatternText] = Field(default_factory=_default_premium)
    international: list[DialPatternText] = Field(default_factory=_default_international)
    national: list[DialPatternText] = Field(default_factory=_default_national)


class OutboundRuleConfig(_Model):
    """An outbound dialling rule: numbers matching ``pattern`` leave through the first of
    ``trunks`` that takes the call (``trunk``: shorthand for one)."""

    name: str = ""
    pattern: DialPatternText
    strip: Annotated[int, Field(ge=0)] = 0
    prepend: Annotated[str, AfterValidator(_check_prepend)] = ""
    trunk: str = ""
    trunks: list[Name] = Field(default_factory=list)
    caller_id: PhoneNumber | None = None
    privacy: bool = False

    @model_validator(mode="after")
    def _strip_fits(self) -> OutboundRuleConfig:
        _check_strip(self.pattern, self.strip)
        if self.trunk and self.trunks:
            raise ValueError("give `trunk` or `trunks`, not both")
        if len(set(self.trunks)) != len(self.trunks):
            raise ValueError("a trunk is listed twice in `trunks`")
        return self

    @property
    def trunk_order(self) -> list[str]:
        """The trunks to try, in order."""
        return [self.trunk] if self.trunk else list(self.trunks)


def _check_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an address or CIDR network (e.g. 192.0.2.0/24)"
        ) from None
    return value


Network = Annotated[str, AfterValidator(_check_network)]


class TrunkConfig(_Model):
    """A carrier account: where its proxy is, how we authenticate, what it may deliver."""

    host: Annotated[str, AfterValidator(_check_host)]
    port: Port = 5060  # 5061 when transport is tls
    transport: Transport = "udp"
    # transport: tls only: check the carrier's certificate (chain and host name) against
    # ca_file, or the system's CA store when ca_file is null.
    verify: bool = True
    ca_file: FileName = None
    # Digest credentials for REGISTER and for challenged requests (INVITE, BYE).
    username: str | None = None
    password: str | None = None
    # true: we register to the carrier (calls arrive on that flow); false: IP-authenticated.
    # (``register`` in YAML; the attribute name would shadow pydantic's ABC ``register``.)
    registers: bool = Field(default=False, alias="register")
    expires: Annotated[int, Field(ge=60, le=86400)] = 3600
    retry_interval: Annotated[int, Field(ge=5, le=3600)] = 60
    max_channels: Annotated[int, Field(ge=0)] = 0
    # Seconds for the carrier's first response to an INVITE (even 100 Trying); none in time:
    # the attempt is a timeout (408) and the next trunk is tried. 0: Timer B (32 s) only.
    invite_timeout: Annotated[float, Field(ge=0, le=32)] = 5
    # Further source networks accepted as this trunk (any port).
    acl: list[Network] = Field(default_factory=list)
    # Where the called number of an inbound call is read.
    did_from: Literal["request_uri", "to"] = "request_uri"
    country_code: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}$")] | None = None
    national_prefix: Annotated[str, Field(pattern=r"^[0-9]*$")] = "0"
    international_prefix: Annotated[str, Field(pattern=r"^[0-9]*$")] = "00"
    # Numbers this trunk owns: the only caller IDs it may send.
    dids: list[PhoneNumber] = Field(default_factory=list)
    caller_id: PhoneNumber | None = None
    from_user: str | None = None
    # Seconds between OPTIONS pings (0: off); failures in a row before the trunk is down.
    qualify: Annotated[int, Field(ge=0, le=3600)] = 60
    qualify_failures: Annotated[int, Field(ge=1, le=100)] = 3

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        return _tls_default_port(data)

    @model_validator(mode="after")
    def _credentials(self) -> TrunkConfig:
        if self.transport != "tls" and (self.ca_file is not None or not self.verify):
            raise ValueError("ca_file and verify apply to transport: tls only")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.registers and self.username is None:
            raise ValueError("register: true needs username and password")
        if self.caller_id is not None and self.dids and self.caller_id not in self.dids:
            raise ValueError(f"caller_id {self.caller_id!r} is not one of this trunk's dids")
        return self


def _check_strip(pattern: str, strip: int) -> None:
    shortest = compile_pattern(pattern).min_length
    if shortest is not None and strip > shortest:
        raise ValueError(
            f"strip {strip} removes more than the {shortest} characters of the shortest "
            f"number matching {pattern!r}"
        )


class WeeklyConfig(_Model):
    """Open on ``days`` during ``hours`` (local time of the condition's time zone)."""

    days: Annotated[str, AfterValidator(_check_days)] = "daily"
    hours: Annotated[str, AfterValidator(_check_hours)] = "00:00-24:00"

    def to_range(self) -> WeeklyRange:
        return WeeklyRange.parse(self.days, self.hours)


class HolidayConfig(_Model):
    """Closed on ``date`` (through ``until``); ``MM-DD`` dates repeat every year."""

    date: HolidayDate
    until: HolidayDate | None = None
    name: str = ""

    def to_holiday(self) -> Holiday:
        return Holiday.parse(self.date, self.until, self.name)


class TimeConditionConfig(_Model):
    """A weekly schedule and holidays in one time zone, with open and closed destinations."""

    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    weekly: list[WeeklyConfig] = Field(default_factory=list)
    holidays: list[HolidayConfig] = Field(default_factory=list)
    calendars: list[str] = Field(default_factory=list)
    open: DestinationConfig
    closed: DestinationConfig


class BlacklistEntryConfig(_Model):
    """A caller number or prefix that is refused before any other routing."""

    number: PhoneNumber | None = None
    prefix: PhoneNumber | None = None
    action: Literal["reject", "announce"] = "reject"
    status: SipStatus = dp.DEFAULT_REJECT_STATUS
    prompt: str | None = None

    @model_validator(mode="after")
    def _one_match_and_prompt(self) -> BlacklistEntryConfig:
        if (self.number is None) == (self.prefix is None):
            raise ValueError("a blacklist entry needs exactly one of number: and prefix:")
        if self.action == "announce" and not self.prompt:
            raise ValueError("action announce needs prompt: the prompt to play")
        return self

    def to_entry(self) -> dp.BlacklistEntry:
        if self.action == "announce":
            dest = dp.Destination(dp.DestinationKind.PLAY_HANGUP, prompt=self.prompt)
        else:
            dest = dp.Destination(dp.DestinationKind.HANGUP, status=self.status)
        return dp.BlacklistEntry(dest, number=self.number, prefix=self.prefix)


class DialplanConfig(_Model):
    """Inbound routing, internal/outbound dialling rules and time conditions."""

    blacklist: list[BlacklistEntryConfig] = Field(default_factory=list)
    inbound: list[InboundRouteConfig] = Field(default_factory=list)
    regions: dict[PhoneNumber, Name] = Field(default_factory=dict)
    default: DestinationConfig = Field(default_factory=_not_found)
    internal: list[DialRuleConfig] = Field(default_factory=list)
    outbound: list[OutboundRuleConfig] = Field(default_factory=list)
    number_classes: NumberClassesConfig = Field(default_factory=NumberClassesConfig)
    # The class of service of calls Switchboard places itself (an IVR transfer or a queue
    # overflow to an outside number, a callback when no agent's extension dials it).
    system_class_of_service: ClassOfService = "national"
    # Outside calls of Switchboard's own up or ringing at once (0: no cap).
    system_max_outbound_calls: Annotated[int, Field(ge=0)] = 10
    internal_default: DestinationConfig = Field(default_factory=_not_found)
    time_conditions: dict[Name, TimeConditionConfig] = Field(default_factory=dict)
    holidays: dict[Name, list[HolidayConfig]] = Field(default_factory=dict)


# --- ACD: agents and queues --------------------------------------------------------------------

SkillLevel = Annotated[int, Field(ge=0, le=100)]
DtmfKey = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
_QUEUE_DESTINATION = re.compile(
    r"(queue|ivr|voicemail|extension):\S+|number:\+?[0-9*#]+|callback|hangup"
)


def _check_requirements(value: str) -> str:
    from acd.model import parse_requirements

    parse_requirements(value)  # ValueError says which part it cannot read
    return value


def _check_queue_destination(value: str) -> str:
    if _QUEUE_DESTINATION.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} must be queue:<name>, ivr:<flow>, voicemail:<box>, "
            "extension:<number>, number:<outside number>, callback or hangup"
        )
    return value


QueueDestination = Annotated[str, AfterValidator(_check_queue_destination)]


class AgentYaml(_Model):
    """An agent: who they are, the extension(s) they answer on, their skills (0-100)."""

    name: str = ""
    extensions: Annotated[list[ExtensionNumber], Field(min_length=1)]
    skills: dict[Name, SkillLevel] = Field(default_factory=dict)
    wrap_up: Annotated[float, Field(ge=0, le=3600)] | None = None
    # While logged in, the agent's extensions call out with this class of service instead
    # of their own (None: the extension's).
    class_of_service: ClassOfService | None = None


class SkillRuleYaml(_Model):
    """One step of a queue's skill rules: ``require`` while the wait is under ``wait_under``."""

    wait_under: Annotated[float, Field(gt=0)] | None = None
    require: Annotated[str, AfterValidator(_check_requirements)] = ""


class LastAgentYaml(_Model):
    """Offer a returning caller to the agent who handled them within ``days`` first, holding
    the call for that agent up to ``wait`` seconds."""

    days: Annotated[float, Field(ge=0, le=365)] = 0
    wait: Annotated[float, Field(ge=0, le=600)] = 0


class WrapUpCodeYaml(_Model):
    """A wrap-up code with the label the agent panel shows beside it ("Sale made (1)")."""

    code: Annotated[str, Field(min_length=1, max_length=64)]
    label: Annotated[str, Field(min_length=1, max_length=200)]


class CallbackYaml(_Model):
    """Queue callbacks: the caller keeps their place and is called back."""

    key: DtmfKey | None = None
    offer_after: Annotated[float, Field(ge=0)] = 0
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    retry_delay: Annotated[float, Field(ge=0)] = 60
    order: Literal["agent_first", "customer_first"] = "agent_first"


Grade = Literal["A", "B", "C", "D", "E"]


class QueueYaml(_Model):
    """A queue: how callers wait and which agents get them."""

    name: str = ""
    strategy: Literal[
        "ring_all",
        "longest_idle",
        "fewest_calls",
        "least_talk_time",
        "round_robin",
        "linear",
        "random",
        "weighted_random",
        "ring_progressively",
        "best_skill",
    ] = "longest_idle"
    members: list[Name] = Field(default_factory=list)
    skill_rules: list[SkillRuleYaml] = Field(default_factory=list)
    ring_timeout: Annotated[float, Field(gt=0, le=600)] = 15
    retry_delay: Annotated[float, Field(ge=0, le=600)] = 5
    auto_pause_after: Annotated[int, Field(ge=0, le=100)] = 0
    wrap_up: Annotated[float, Field(ge=0, le=3600)] = 0
    wrap_up_mode: Literal["optional", "timed", "forced"] = "optional"
    # A code alone ("1") or with a label ({code: "1", label: "Sale made"}).
    wrap_up_codes: list[str | WrapUpCodeYaml] = Field(default_factory=list)
    maxlen: Annotated[int, Field(ge=0)] = 0
    join_empty: bool = True
    leave_when_empty: bool = False
    max_wait: Annotated[float, Field(ge=0)] = 0
    overflow: QueueDestination | None = None
    exit_key: DtmfKey | None = None
    exit_destination: QueueDestination | None = None
    progressive_step: Annotated[float, Field(gt=0)] = 10
    service_level: Annotated[float, Field(gt=0)] = 20
    last_agent: LastAgentYaml = Field(default_factory=LastAgentYaml)
    grade_priority: dict[Grade, Annotated[int, Field(ge=0, le=100)]] = Field(default_factory=dict)
    announce_position_every: Annotated[float, Field(ge=0)] = 0
    announce_every: Annotated[float, Field(ge=0)] = 0
    music_on_hold: list[str] = Field(default_factory=list)
    callback: CallbackYaml = Field(default_factory=CallbackYaml)
    # Record the calls this queue hands to agents (true), never (false), or as
    # ``recording.record`` says (unset).
    record: bool | None = None

    @model_validator(mode="after")
    def _keys_distinct(self) -> QueueYaml:
        if self.exit_key is not None and self.exit_key == self.callback.key:
            raise ValueError(f"exit_key and callback.key are both {self.exit_key!r}")
        if self.skill_rules and self.skill_rules[-1].wait_under is not None:
            raise ValueError("the last skill rule must not have wait_under (it applies after)")
        codes = [code for code, _ in self.wrap_up_code_labels()]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"wrap_up_codes lists {', '.join(map(repr, twice))} more than once")
        return self

    def wrap_up_code_labels(self) -> list[tuple[str, str | None]]:
        """Each wrap-up code with its label (None when it has none), in order."""
        return [
            (entry, None) if isinstance(entry, str) else (entry.code, entry.label)
            for entry in self.wrap_up_codes
        ]


def _default_pause_reasons() -> dict[DtmfKey, str]:
    return {"1": "break", "2": "lunch", "3": "training"}


class AcdYaml(_Model):
    """Settings shared by every queue."""

    # Digit dialled after the pause code -> NOT_READY reason (*47 alone: "busy").
    pause_reasons: dict[DtmfKey, Name] = Field(default_factory=_default_pause_reasons)
    # Extensions allowed to listen, whisper, barge and intercept (the supervise_* codes).
    supervisors: list[ExtensionNumber] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class KnownNames:
    """Names defined outside ``switchboard.yaml``; None means "not checked (yet)"."""

    ivr_flows: Collection[str] | None = None
    queues: Collection[str] | None = None
    prompts: Collection[str] | None = None


@dataclass(frozen=True, slots=True)
class DeclaredNames:
    """The names ``switchboard.yaml`` declares, valid or not.

    A config with schema errors is still checked for cross-references (on the parts that
    are valid, so that one run reports everything); an extension whose password is invalid
    is still declared, and a route to it is not "unknown extension" on top of that error.
    """

    extensions: Collection[str]
    conferences: Collection[str]
    agents: Collection[str]
    queues: Collection[str]
    time_conditions: Collection[str]
    holidays: Collection[str]
    trunks: Collection[str] = ()

    @classmethod
    def of(cls, cfg: SwitchboardConfig) -> DeclaredNames:
        """The names of a validated config."""
        plan = cfg.dialplan
        return cls(
            set(cfg.extensions),
            set(cfg.conferences),
            set(cfg.agents),
            set(cfg.queues),
            set(plan.time_conditions),
            set(plan.holidays),
            set(cfg.trunks),
        )

    @classmethod
    def of_yaml(cls, data: Mapping[object, object]) -> DeclaredNames:
        """The names written in the plain YAML tree, whatever their settings hold."""

        def keys(section: object, *path: str) -> set[str]:
            for key in path:
                section = section.get(key) if isinstance(section, Mapping) else None
            # `1001:` unquoted is an int in YAML; the schema makes it "1001" (_numeric_keys).
            return {str(k) for k in section} if isinstance(section, Mapping) else set()

        return cls(
            keys(data, "extensions"),
            keys(data, "conferences"),
            keys(data, "agents"),
            keys(data, "queues"),
            keys(data, "dialplan", "time_conditions"),
            keys(data, "dialplan", "holidays"),
            keys(data, "trunks"),
        )


ProblemPath = tuple[str | int, ...]


def dialplan_problems(
    cfg: SwitchboardConfig,
    known: KnownNames | None = None,
    declared: DeclaredNames | None = None,
) -> list[tuple[ProblemPath, str]]:
    """Cross-reference problems of ``cfg.dialplan`` as (path of the offending value, message).

    Checks destinations against extensions, conferences, time conditions and (when ``known``
    gives them) IVR flows, queues and prompts; holiday calendars named by conditions; cycles
    between time conditions; overlapping weekly ranges; reversed holiday ranges; duplicate
    dial patterns and inbound routes. ``declared``: the names references may point at
    (default: those of ``cfg``; the loader passes all names written in the file).
    """
    names = declared or DeclaredNames.of(cfg)
    known = known or KnownNames()
    if known.queues is None:
        known = KnownNames(known.ivr_flows, names.queues, known.prompts)
    plan = cfg.dialplan
    out: list[tuple[ProblemPath, str]] = []
    base: ProblemPath = ("dialplan",)
    out.extend(_acd_problems(cfg, known, names))

    def check_prompt(path: ProblemPath, prompt: str | None) -> None:
        if prompt and known.prompts is not None and prompt not in known.prompts:
            out.append((path, f"unknown prompt {prompt!r}"))

    def check_dest(path: ProblemPath, d: DestinationConfig, *, dialled: bool = False) -> None:
        # `dialled`: internal rules may leave the target empty (= the dialled number).
        t = d.target
        if d.kind in ("extension", "voicemail"):
            if not t and not dialled:
                article = "an" if d.kind == "extension" else "a"
                out.append(((*path, "target"), f"{article} {d.kind} destination needs target"))
            elif t and t not in names.extensions:
                out.append(((*path, "target"), f"unknown extension {t!r}"))
        elif d.kind == "conference":
            if not t and not dialled:
                out.append(((*path, "target"), "a conference destination needs target"))
            elif t and t not in names.conferences:
                out.append(((*path, "target"), f"unknown conference {t!r}"))
        elif d.kind == "time_condition" and t not in names.time_conditions:
            out.append(((*path, "target"), f"unknown time condition {t!r}" + _close(t, plan)))
        elif d.kind == "ivr" and known.ivr_flows is not None and t not in known.ivr_flows:
            out.append(((*path, "target"), f"unknown IVR flow {t!r}"))
        elif d.kind == "queue" and known.queues is not None and t not in known.queues:
            out.append(((*path, "target"), f"unknown queue {t!r}"))
        elif d.kind == "outbound" and t and t not in names.trunks:
            out.append(((*path, "target"), f"unknown trunk {t!r}"))
        elif d.kind == "number" and not any(
            compile_pattern(r.pattern).matches(t) for r in plan.outbound
        ):
            out.append(((*path, "target"), f"no dialplan.outbound rule dials {t!r}"))
        check_prompt((*path, "prompt"), d.prompt)

    for i, b in enumerate(plan.blacklist):
        check_prompt((*base, "blacklist", i, "prompt"), b.prompt)
    seen_black: set[tuple[str, str]] = set()
    for i, b in enumerate(plan.blacklist):
        key = ("number", b.number) if b.number is not None else ("prefix", b.prefix or "")
        if key in seen_black:
            out.append(((*base, "blacklist", i, key[0]), f"duplicate blacklist {key[0]}"))
        seen_black.add(key)

    seen_routes: set[tuple[str | None, str | None]] = set()
    for i, r in enumerate(plan.inbound):
        path = (*base, "inbound", i)
        if (r.did, r.caller) in seen_routes:
            field = "did" if r.did is not None else "caller"
            out.append(((*path, field), "duplicate inbound route (same did and caller)"))
        seen_routes.add((r.did, r.caller))
        check_dest((*path, "destination"), r.destination)
    for prefix, queue in plan.regions.items():
        if known.queues is not None and queue not in known.queues:
            out.append(((*base, "regions", prefix), f"unknown queue {queue!r}"))
    check_dest((*base, "default"), plan.default)

    patterns: set[str] = set()
    sections: list[tuple[str, Sequence[DialRuleConfig | OutboundRuleConfig]]] = [
        ("internal", plan.internal),
        ("outbound", plan.outbound),
    ]
    for section, rules in sections:
        for i, rule in enumerate(rules):
            if rule.pattern in patterns:
                out.append(((*base, section, i, "pattern"), f"duplicate pattern {rule.pattern!r}"))
            patterns.add(rule.pattern)
            if isinstance(rule, DialRuleConfig):
                check_dest((*base, section, i, "destination"), rule.destination, dialled=True)
            else:
                refs: list[tuple[ProblemPath, str]] = (
                    [((*base, section, i, "trunk"), rule.trunk)]
                    if rule.trunk
                    else [((*base, section, i, "trunks", n), t) for n, t in enumerate(rule.trunks)]
                )
                for where, trunk in refs:
                    if trunk not in names.trunks:
                        out.append((where, f"unknown trunk {trunk!r}"))
    check_dest((*base, "internal_default"), plan.internal_default)

    for name, tc in plan.time_conditions.items():
        path = (*base, "time_conditions", name)
        for i, cal in enumerate(tc.calendars):
            if cal not in names.holidays:
                out.append(((*path, "calendars", i), f"unknown holiday calendar {cal!r}"))
        for i, j in overlapping(w.to_range() for w in tc.weekly):
            out.append(
                ((*path, "weekly", j, "hours"), f"overlaps weekly[{i}] of the same condition")
            )
        for i, h in enumerate(tc.holidays):
            _holiday_problem((*path, "holidays", i), h, out)
        check_dest((*path, "open"), tc.open)
        check_dest((*path, "closed"), tc.closed)
    for cal_name, days in plan.holidays.items():
        for i, h in enumerate(days):
            _holiday_problem((*base, "holidays", cal_name, i), h, out)
    out.extend(_condition_cycles(plan))
    return out


def _acd_problems(
    cfg: SwitchboardConfig, known: KnownNames, names: DeclaredNames
) -> list[tuple[ProblemPath, str]]:
    """Agents answer on known extensions (each extension belongs to one agent); queue members
    are agents; overflow and exit destinations name things that exist."""
    out: list[tuple[ProblemPath, str]] = []
    for i, ext in enumerate(cfg.acd.supervisors):
        if ext not in names.extensions:
            out.append((("acd", "supervisors", i), f"unknown extension {ext!r}"))
    owner: dict[str, str] = {}
    for agent_id, agent in cfg.agents.items():
        for i, ext in enumerate(agent.extensions):
            path: ProblemPath = ("agents", agent_id, "extensions", i)
            if ext not in names.extensions:
                out.append((path, f"unknown extension {ext!r}"))
            elif ext in owner:
                out.append((path, f"extension {ext!r} already belongs to agent {owner[ext]!r}"))
            owner.setdefault(ext, agent_id)
    for name, q in cfg.queues.items():
        for i, member in enumerate(q.members):
            if member not in names.agents:
                out.append((("queues", name, "members", i), f"unknown agent {member!r}"))
        for key in ("overflow", "exit_destination"):
            target = getattr(q, key)
            if target is None or ":" not in target:
                continue
            kind, _, value = target.partition(":")
            path = ("queues", name, key)
            if kind == "queue" and value not in names.queues:
                out.append((path, f"unknown queue {value!r}"))
            elif kind == "queue" and value == name:
                out.append((path, "a queue cannot overflow into itself"))
            elif kind in ("extension", "voicemail") and value not in names.extensions:
                out.append((path, f"unknown extension {value!r}"))
            elif kind == "ivr" and known.ivr_flows is not None and value not in known.ivr_flows:
                out.append((path, f"unknown IVR flow {value!r}"))
            elif kind == "number" and not any(
                compile_pattern(r.pattern).matches(value) for r in cfg.dialplan.outbound
            ):
                out.append((path, f"no dialplan.outbound rule dials {value!r}"))
    return out


def _close(name: str, plan: DialplanConfig) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(plan.time_conditions), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _holiday_problem(
    path: ProblemPath, h: HolidayConfig, out: list[tuple[ProblemPath, str]]
) -> None:
    try:
        h.to_holiday()
    except ValueError as exc:
        out.append(((*path, "until"), str(exc)))


def _condition_cycles(plan: DialplanConfig) -> list[tuple[ProblemPath, str]]:
    """A time condition whose open/closed destination leads back to itself."""
    out: list[tuple[ProblemPath, str]] = []
    edges: dict[str, list[tuple[str, str]]] = {}
    for name, tc in plan.time_conditions.items():
        for side, d in (("open", tc.open), ("closed", tc.closed)):
            if d.kind == "time_condition" and d.target in plan.time_conditions:
                edges.setdefault(name, []).append((side, d.target))
    reported: set[frozenset[str]] = set()  # one report per cycle, whichever node starts it
    for start in plan.time_conditions:
        # Depth-first from `start`; an edge back to `start` closes a cycle.
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        visited: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for side, nxt in edges.get(node, []):
                if nxt == start and frozenset(trail) not in reported:
                    reported.add(frozenset(trail))
                    loop = " -> ".join((*trail, start))
                    path = ("dialplan", "time_conditions", node, side, "target")
                    out.append((path, f"time conditions loop: {loop}"))
                elif nxt not in visited and nxt != start:
                    visited.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    return out


class RecordingConfig(_Model):
    """Call recording (recorder/): which calls, in what format, where, and for how long.
    A call is recorded from the moment a party answers it (not while an IVR or a queue
    holds the caller); each segment of a transferred call is its own recording, linked."""

    # Which calls: all, none, or by the call record's direction. A queue's or an
    # extension's own ``record: true|false`` wins over this.
    record: Literal["all", "none", "inbound", "outbound", "internal"] = "none"
    # Of the calls the policy picks, the share recorded (a random sample), in percent.
    sample_percent: Annotated[float, Field(ge=0, le=100)] = 100
    format: Literal["flac", "wav", "ogg"] = "flac"
    # Where files go; relative to the config file's folder.
    folder: Annotated[str, Field(min_length=1)] = "recordings"
    # Files and rows older than this many days are deleted by a daily job; 0 keeps them.
    retention_days: Annotated[int, Field(ge=0)] = 0
    # A prompt played to the caller when a recording starts ("this call may be
    # recorded"); none when empty.
    announcement: str | None = None
    # Dialled on a phone during a call: start or stop recording it, pause or resume.
    toggle_code: FeatureCode = "*1"
    pause_code: FeatureCode = "*3"

    @model_validator(mode="after")
    def _codes_differ(self) -> RecordingConfig:
        if self.toggle_code == self.pause_code:
            raise ValueError("recording toggle_code and pause_code must differ")
        return self


class ReportsConfig(_Model):
    """How reports count (docs/reports.md)."""

    # Days, hours and intervals are cut in this time zone (an IANA name).
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    # A caller who hangs up within this many seconds of joining a queue is a short
    # abandon: counted apart, and left out of the service level and the abandon rate.
    short_abandon_seconds: Annotated[float, Field(ge=0)] = 5
    # The same number calling again within this many hours is not a first-contact
    # resolution.
    first_contact_hours: Annotated[float, Field(gt=0)] = 24


# A custom field's name is also an import/export column and a search parameter.
CustomFieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class CustomFieldConfig(_Model):
    """One custom field of customers (docs/crm.md "Custom fields")."""

    # text: any string; number: an int or a decimal; date: YYYY-MM-DD; choice: one of
    # ``choices``.
    type: Literal["text", "number", "date", "choice"] = "text"
    choices: list[str] = Field(default_factory=list)
    # A customer cannot be created or saved without a value.
    required: bool = False

    @model_validator(mode="after")
    def _choices(self) -> CustomFieldConfig:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice field needs choices")
        if self.type != "choice" and self.choices:
            raise ValueError("choices are only for type: choice")
        return self


class PoolConfig(_Model):
    """The public pool of unowned customers."""

    # The most customers one user may own (claim from the pool).
    claim_limit: Annotated[int, Field(ge=0)] = 50
    # An owned customer without a follow-up for this many days goes back to the pool.
    return_after_days: Annotated[int, Field(ge=1)] = 30


class CrmConfig(_Model):
    """Customers (docs/crm.md)."""

    # Extra fields every customer has, by name: their type and whether they are required.
    custom_fields: dict[CustomFieldName, CustomFieldConfig] = Field(default_factory=dict)
    pool: PoolConfig = Field(default_factory=PoolConfig)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# A business-time span: 30m, 4h, 3d (d: tickets.calendar.day_hours business hours), 1h30m.
BusinessDuration = Annotated[str, AfterValidator(_check_duration)]
TicketCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
TicketPriority = Literal["low", "normal", "high", "urgent"]


class TicketCodeConfig(_Model):
    """One entry of a ticket code table (a type or a category)."""

    # What users see.
    name: str


class DepartmentConfig(_Model):
    """A department tickets can be assigned to."""

    # User names (the API's users) who work on the department's tickets.
    members: list[str] = Field(default_factory=list)


class BusinessCalendarConfig(_Model):
    """When SLA clocks run: weekly hours and holidays in one time zone (the shapes of
    dialplan.time_conditions)."""

    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    weekly: list[WeeklyConfig] = Field(
        default_factory=lambda: [WeeklyConfig(days="mon-fri", hours="09:00-17:00")]
    )
    holidays: list[HolidayConfig] = Field(default_factory=list)
    # Business hours in one "d" of an SLA duration.
    day_hours: Annotated[float, Field(gt=0, le=24)] = 8


class SlaTargetConfig(_Model):
    """Deadlines of one ticket type and priority, in business time from creation."""

    first_response: BusinessDuration
    resolution: BusinessDuration


class TicketsConfig(_Model):
    """Tickets (docs/crm.md "Tickets")."""

    types: dict[TicketCode, TicketCodeConfig] = Field(
        default_factory=lambda: {"general": TicketCodeConfig(name="General")}
    )
    categories: dict[TicketCode, TicketCodeConfig] = Field(default_factory=dict)
    departments: dict[TicketCode, DepartmentConfig] = Field(default_factory=dict)
    calendar: BusinessCalendarConfig = Field(default_factory=BusinessCalendarConfig)
    sla: dict[str, dict[TicketPriority, SlaTargetConfig]] = Field(default_factory=dict)
    warn_before: BusinessDuration = "1h"

    @model_validator(mode="after")
    def _sla_types_known(self) -> TicketsConfig:
        unknown = sorted(set(self.sla) - set(self.types))
        if unknown:
            raise ValueError(f"sla for unknown ticket types: {', '.join(unknown)}")
        if not self.types:
            raise ValueError("tickets.types needs at least one type")
        return self


class SwitchboardConfig(_Model):
    """The whole ``switchboard.yaml``."""

    sip: SipConfig = Field(default_factory=SipConfig)
    rtp: RtpConfig = Field(default_factory=RtpConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    features: FeatureCodesConfig = Field(default_factory=FeatureCodesConfig)
    extensions: dict[ExtensionNumber, ExtensionConfig] = Field(default_factory=dict)
    conferences: dict[ExtensionNumber, ConferenceConfig] = Field(default_factory=dict)
    dialplan: DialplanConfig = Field(default_factory=DialplanConfig)
    acd: AcdYaml = Field(default_factory=AcdYaml)
    agents: dict[Name, AgentYaml] = Field(default_factory=dict)
    queues: dict[Name, QueueYaml] = Field(default_factory=dict)
    trunks: dict[Name, TrunkConfig] = Field(default_factory=dict)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    crm: CrmConfig = Field(default_factory=CrmConfig)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)

    @model_validator(mode="after")
    def _numbers_unique(self) -> SwitchboardConfig:
        clash = sorted(set(self.extensions) & set(self.conferences))
        if clash:
            raise ValueError(f"numbers used by both an extension and a conference: {clash}")
        return self

    @field_validator("extensions", "conferences", mode="before")
    @classmethod
    def _numeric_keys(cls, value: object) -> object:
        # `1001:` unquoted is an int in YAML; admins mean the extension "1001".
        if isinstance(value, dict):
            return {
                (str(k) if isinstance(k, int) and not isinstance(k, bool) else k): v
                for k, v in value.items()
            }
        return value
