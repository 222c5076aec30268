"""Dialogs (RFC 3261 §12), sans-IO.

Theory of operation
-------------------
A :class:`Dialog` is the state two user agents share after an INVITE: Call-ID, both tags,
both CSeq counters, the remote target (the peer's Contact) and the route set. The B2BUA has
two dialogs per call, one per party. A dialog builds its own in-dialog requests
(§12.2.1.1) and checks the CSeq of requests it receives (§12.2.2: lower than the last one
means out of order → 500).

Where requests go is not derived from the Request-URI: a B2BUA talks to phones that may be
behind NAT, so every dialog keeps the ``flow`` (transport and source address) it learned
from the peer and sends there (RFC 3581 in spirit, RFC 5626 §5.3 for registered flows).

A peer may challenge a request we send inside the dialog (a carrier challenges BYE and
re-INVITE as it challenged the INVITE). A dialog made through a trunk keeps that trunk's
digest account (``credentials``), and :meth:`Dialog.authorized_retry` builds the same request
again with an Authorization / Proxy-Authorization, the next CSeq and a new Via branch (RFC
3261 §22.2, §8.1.3.5) — once: a request that already carried credentials and is challenged
again was refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .digest import DigestError, build_authorization, choose_challenge
from .message import NameAddr, Request, Response, canonical_name

__all__ = ["Dialog", "Flow"]


def _without_tag(na: NameAddr) -> str:
    """``na`` as a string without its ``tag`` parameter (``na`` itself is a message's
    cached, read-only value and is left as it is)."""
    if "tag" not in na.params:
        return str(na)
    params = {k: v for k, v in na.params.items() if k != "tag"}
    return str(NameAddr(uri=na.uri, display=na.display, params=params, wildcard=na.wildcard))


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a peer is reached: transport and address (the source we saw it send from)."""

    transport: str
    address: tuple[str, int]


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From (as UAC) / To (as UAS) without the tag: a name-addr string
    remote_uri: str
    remote_target: str  # the peer's Contact URI
    flow: Flow
    local_seq: int = 0
    remote_seq: int | None = None
    route_set: list[str] = field(default_factory=list)
    # Digest account (user, password) answering a 401/407 to our requests in this dialog.
    credentials: tuple[str, str] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """Dialog id as seen from our side (RFC 3261 §12): Call-ID, local tag, remote tag."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, flow: Flow) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` (RFC 3261 §12.1.1)."""
        frm = request.from_
        to = request.to
        contacts = request.contacts
        target = str(contacts[0].uri) if contacts else str(frm.uri)
        frm_tag = frm.params.get("tag") or ""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=frm_tag,
            local_uri=_without_tag(to),
            remote_uri=_without_tag(frm),
            remote_target=target,
            flow=flow,
            local_seq=0,
            remote_seq=request.cseq[0],
            route_set=request.get_list("Record-Route"),
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, flow: Flow) -> Dialog:
        """The dialog a UAC creates from a response with a To tag (RFC 3261 §12.1.2)."""
        frm = request.from_
        to = response.to
        contacts = response.contacts
        target = str(contacts[0].uri) if contacts else request.uri
        remote_tag = to.params.get("tag") or ""
        local_tag = frm.params.get("tag") or ""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(frm),
            remote_uri=_without_tag(to),
            remote_target=target,
            flow=flow,
            local_seq=request.cseq[0],
            remote_seq=None,
            route_set=list(reversed(response.get_list("Record-Route"))),
        )

    def update_target(self, msg: Request | Response) -> None:
        """A target refresh (re-INVITE, UPDATE or their 2xx) may change the Contact (§12.2)."""
        contacts = msg.contacts
        if contacts and not contacts[0].wildcard:
            self.remote_target = str(contacts[0].uri)

    def authorized_retry(self, request: Request, response: Response, via: str) -> Request | None:
        """``request`` (ours, in this dialog) answered with credentials for the challenge in
        ``response`` (RFC 3261 §22.2, §8.1.3.5): same method, Request-URI, headers and body,
        the next CSeq of this dialog, ``via`` (a new branch) and an Authorization (401) or
        Proxy-Authorization (407). None when there is nothing to answer: no credentials, not
        a 401/407, no usable Digest challenge, or ``request`` already carried credentials
        (answered once; a second challenge means they were refused)."""
        if self.credentials is None or response.status not in (401, 407):
            return None
        if request.get("Authorization") is not None:
            return None
        if request.get("Proxy-Authorization") is not None:
            return None
        proxy = response.status == 407
        try:
            challenge = choose_challenge(
                response.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate")
            )
            user, password = self.credentials
            answer = build_authorization(request.method, request.uri, user, password, challenge)
        except DigestError:
            return None
        # §8.1.3.5: a new request — next CSeq (§12.2.1.1), a new transaction (new branch).
        self.local_seq += 1
        headers: list[tuple[str, str]] = [("Via", via)]
        for name, value in request.headers:
            canonical = canonical_name(name)
            if canonical == "Via":
                continue
            if canonical == "CSeq":
                value = f"{self.local_seq} {request.method}"
            headers.append((name, value))
        headers.append(("Proxy-Authorization" if proxy else "Authorization", answer))
        return Request(request.method, request.uri, headers, request.body)

    def check_remote_cseq(self, request: Request) -> bool:
        """RFC 3261 §12.2.2: accept a request only if its CSeq is not lower than the last."""
        num = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and num < self.remote_seq:
            return False
        self.remote_seq = num
        return True

    def create_request(
        self,
        method: str,
        via: str,
        contact: str | None = None,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Request:
        """Build an in-dialog request (RFC 3261 §12.2.1.1).

        ACK and CANCEL reuse a given ``cseq``; every other method takes the next number.
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers: list[tuple[str, str]] = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        # §12.2.1.1: with a loose-routing route set the target goes in the Request-URI.
        for route in self.route_set:
            headers.append(("Route", route))
        if contact is not None:
            headers.append(("Contact", contact))
        if extra:
            headers.extend(extra)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        return Request(method, self.remote_target, headers, body)
