"""SIP over TLS: the contexts a :class:`~pbx.transport.TlsTransport` uses (RFC 3261 §26).

Theory of operation
-------------------
TLS is TCP's stream framing inside a TLS session (RFC 3261 §18, §26.2.1), so the transport
only needs two things from here: the *server* context it accepts connections with (our
certificate and key) and, for each connection it opens, a *client* context plus the server
name to send (SNI) and to check the peer's certificate against.

Carriers are verified, phones are not. A trunk with ``transport: tls`` gets a
:class:`TlsPeer` keyed by its resolved address: its context checks the carrier's certificate
against the system's CA store (or the trunk's ``ca_file``) and the host name of the trunk's
``host`` (RFC 5922 §7.2 in spirit: the name we were configured with, not the address it
resolved to), unless the trunk says ``verify: false``. Any other TLS connection we open is to
a phone whose connection dropped (RFC 3261 §18.2.2: reach it at its Contact): phones present
self-signed certificates, so that context does not verify. Each client context also presents
our certificate, for carriers that ask for one (mutual TLS, RFC 3261 §26.3.2.2).

Building a context reads files: :func:`server_context` and :func:`client_context` are called
once, at start, off the event loop (``app`` does it).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from .location import Contact

__all__ = [
    "DEFAULT_TLS_PORT",
    "TlsPeer",
    "TlsSettings",
    "client_context",
    "secure_only",
    "server_context",
    "sips_refusal",
    "verify_failure",
    "wants_tls",
]

# RFC 3261 §19.1.2: the default port of a sips URI (and of the TLS transport).
DEFAULT_TLS_PORT = 5061

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TlsPeer:
    """How to open a TLS connection to one carrier: the context that verifies it and the
    name it must present (also sent as SNI)."""

    server_name: str
    context: ssl.SSLContext


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Everything the TLS transport needs: the server context (None: no TLS listener), the
    context for connections to phones, and the carriers by address."""

    server: ssl.SSLContext | None
    default_client: ssl.SSLContext
    peers: dict[Address, TlsPeer] = field(default_factory=dict)
    # The carriers by host name, for addresses learnt after start (a name that did not
    # resolve then): never reach a carrier with the phones' unverified context.
    by_host: dict[str, TlsPeer] = field(default_factory=dict)

    def learn(self, host: str, address: Address) -> None:
        """``host`` (a carrier's configured name) now resolves to ``address``."""
        peer = self.by_host.get(host)
        if peer is not None:
            self.peers.setdefault(address, peer)

    def client_for(self, dest: Address) -> tuple[ssl.SSLContext, str | None]:
        """The context and server name for a new connection to ``dest``."""
        # A destination still named by host (it did not resolve at start) is that carrier.
        peer = self.peers.get(dest) or self.by_host.get(dest[0])
        if peer is None:
            return self.default_client, None
        return peer.context, peer.server_name


def server_context(certificate: str, key: str) -> ssl.SSLContext:
    """The context our TLS listeners accept with (TLS 1.2 or newer). Phones are not asked
    for a certificate: they authenticate with digest inside the session (RFC 3261 §26.3.2.2
    leaves client certificates optional)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certificate, key)
    return ctx


def client_context(
    *,
    verify: bool = True,
    ca_file: str | None = None,
    certificate: str | None = None,
    key: str | None = None,
) -> ssl.SSLContext:
    """A context for connections we open. ``verify``: check the peer's certificate chain
    against ``ca_file`` (None: the system's CA store) and its name against the server name
    given when connecting. ``certificate``/``key``: ours, shown when the peer asks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file is not None:
            ctx.load_verify_locations(cafile=ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certificate is not None and key is not None:
        ctx.load_cert_chain(certificate, key)
    return ctx


def verify_failure(exc: BaseException) -> str | None:
    """``"certificate verify failed: <reason>"`` when ``exc`` is a failed certificate check,
    else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"certificate verify failed: {reason}"
    return None


# -- SIPS (RFC 5630) ------------------------------------------------------------------------
#
# A sips Request-URI asks for TLS on every hop to the resource (RFC 3261 §19.1, §26.2.2;
# RFC 5630 §3.1.3). We are the end of the caller's hop and start the callee's: the request
# must have come over TLS, and only contacts registered over TLS may be rung.


def sips_refusal(request_uri_scheme: str, transport: str) -> int | None:
    """The status to refuse a request with: 416 (Unsupported URI Scheme) for a sips
    Request-URI that did not arrive over TLS, else None."""
    if request_uri_scheme.lower() == "sips" and transport.upper() != "TLS":
        return 416
    return None


def wants_tls(contact_uri: str) -> bool:
    """Whether a Contact URI asks to be reached over TLS: a sips URI, or a sip URI with
    ``transport=tls`` (RFC 3261 §19.1.4, RFC 5630 §3.1.2)."""
    low = contact_uri.strip().lstrip("<").lower()
    return low.startswith("sips:") or ";transport=tls" in low


def secure_only(request_uri_scheme: str, contacts: list[Contact]) -> list[Contact]:
    """``contacts`` reachable as a sips request needs: those registered over TLS or asking
    for it, when the Request-URI is sips (none left: the caller gets 480, RFC 5630 §3.1.3)."""
    if request_uri_scheme.lower() != "sips":
        return contacts
    return [c for c in contacts if c.transport.upper() == "TLS" or wants_tls(c.uri)]
