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
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1)]

# Digest algorithms we can compute (RFC 7616 §3.2, RFC 8760). Kept as a Literal so a typo is a
# schema error rather than a runtime surprise at the first REGISTER.
DigestAlgorithm = Literal["SHA-256", "MD5"]
# TLS (RFC 3261 §26) is planned; until it exists a config asking for it is an error.
Transport = Literal["udp", "tcp"]

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


class ListenConfig(_Model):
    """One SIP listening socket."""

    transport: Transport = "udp"
    host: str = "0.0.0.0"
    port: Port = 5060

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)


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
    return ["SHA-256", "MD5"]


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
        if not value:
            raise ValueError("at least one digest algorithm is required")
        if len(set(value)) != len(value):
            raise ValueError("digest algorithms must not repeat")
        return value


class SipConfig(_Model):
    """SIP signalling: sockets, identity, registrar and authentication."""

    listen: list[ListenConfig] = Field(
        default_factory=lambda: [ListenConfig(transport="udp"), ListenConfig(transport="tcp")]
    )
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


class ExtensionConfig(_Model):
    """One internal extension (a SIP account phones register with)."""

    name: str = ""
    password: Annotated[str, Field(min_length=1)]
    ring_timeout: Annotated[int, Field(ge=1, le=600)] = 30
    pickup_group: str | None = None
    dtmf_mode: Literal["auto", "rfc4733", "inband", "info"] = "auto"

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
    """Tones and music on hold."""

    tone_plan: Literal["us", "uk", "cn"] = "us"
    music_on_hold: list[str] = Field(default_factory=list)


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


class SwitchboardConfig(_Model):
    """The whole ``switchboard.yaml``."""

    sip: SipConfig = Field(default_factory=SipConfig)
    rtp: RtpConfig = Field(default_factory=RtpConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    features: FeatureCodesConfig = Field(default_factory=FeatureCodesConfig)
    extensions: dict[ExtensionNumber, ExtensionConfig] = Field(default_factory=dict)
    conferences: dict[ExtensionNumber, ConferenceConfig] = Field(default_factory=dict)

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
