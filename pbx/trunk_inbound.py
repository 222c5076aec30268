"""Which trunk a request came from, and the numbers of a call a trunk delivers (sans-IO).

Theory of operation
-------------------
A carrier delivers calls without digest credentials: it is trusted by where the request
comes from. Phones, trunks and test peers may all share one address (127.0.0.1 here, one
NAT address in an office), so the address alone never makes a request a trunk call: a
request belongs to a trunk when its source address *and port* are the trunk's ``host`` and
``port`` (the carrier's proxy, which is also where a registered trunk's calls come from:
its registration flow), or when its source address is inside one of the trunk's ``acl``
networks (any port: a carrier with several media/signalling hosts). Everything else goes
through digest authentication as an extension, so a call nobody authenticated can never
reach an outbound route (issue 16: toll fraud).

The called number (DID) is the Request-URI user, or the To user for carriers that put our
registered contact in the Request-URI (``did_from: to``). Numbers are normalised per trunk:
visual separators go, an international prefix (``00``) becomes ``+``, and with a
``country_code`` a national number (``0`` + digits) becomes E.164 ``+<cc><digits>``; the
dialplan's inbound routes then match the result (a route may name the DID either way when
the trunk has no country code).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["InboundTrunk", "TrunkMatcher", "normalise_number"]

_SEPARATORS = str.maketrans("", "", " -.()/")


@dataclass(frozen=True, slots=True)
class InboundTrunk:
    """What matching and normalising need of one trunk (built from the config by ``app``).

    ``addresses``: the IP addresses ``host`` stands for (resolved by the caller)."""

    name: str
    addresses: tuple[str, ...]
    port: int
    acl: tuple[str, ...] = ()
    did_from: str = "request_uri"  # or "to"
    country_code: str | None = None
    national_prefix: str = "0"
    international_prefix: str = "00"
    max_channels: int = 0  # calls at once through this trunk, both directions (0: no cap)
    # The trunk's digest account: a BYE or re-INVITE we send on its calls and the carrier
    # challenges is answered with it (RFC 3261 §22.2).
    credentials: tuple[str, str] | None = None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        nets = tuple(ipaddress.ip_network(a, strict=False) for a in self.acl)
        object.__setattr__(self, "networks", nets)

    def normalise(self, number: str) -> str:
        """``number`` as this trunk's carrier wrote it, in the form routes match."""
        return normalise_number(
            number, self.country_code, self.national_prefix, self.international_prefix
        )


def normalise_number(
    number: str,
    country_code: str | None = None,
    national_prefix: str = "0",
    international_prefix: str = "00",
) -> str:
    """Separators removed; ``00…`` → ``+…``; with ``country_code``, ``0…`` → ``+cc…``.

    A number that is not a phone number (letters: an anonymous caller, a SIP user name)
    comes back unchanged except for its separators."""
    n = number.strip().translate(_SEPARATORS)
    if not n:
        return n
    if n[0] == "+":
        return n
    if not n.isdigit():
        return n
    if international_prefix and n.startswith(international_prefix):
        return "+" + n[len(international_prefix) :]
    if country_code and national_prefix and n.startswith(national_prefix):
        return f"+{country_code}{n[len(national_prefix) :]}"
    return n


class TrunkMatcher:
    """The trunk a source address belongs to, if any (see the module docstring)."""

    def __init__(self, trunks: Iterable[InboundTrunk] = ()) -> None:
        self._exact: dict[tuple[str, int], InboundTrunk] = {}
        self._acl: list[InboundTrunk] = []
        for t in trunks:
            for address in t.addresses:
                self._exact.setdefault((_canonical(address), t.port), t)
            if t.networks:
                self._acl.append(t)

    @property
    def trunks(self) -> Sequence[InboundTrunk]:
        seen: dict[str, InboundTrunk] = {t.name: t for t in self._exact.values()}
        seen.update({t.name: t for t in self._acl})
        return list(seen.values())

    def match(self, source: tuple[str, int]) -> InboundTrunk | None:
        host = _canonical(source[0])
        found = self._exact.get((host, source[1]))
        if found is not None:
            return found
        if not self._acl:
            return None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        for t in self._acl:
            if any(ip in net for net in t.networks):
                return t
        return None


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower()
