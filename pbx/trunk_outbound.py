"""Calls leaving through trunks: where to send them, as whom, and when to try the next one.

Theory of operation
-------------------
An outbound rule names its trunks in order. The call goes to the first (``sip:<number>@
<host>:<port>``); a carrier that challenges the INVITE (401/407) gets the trunk's digest
credentials (RFC 3261 §22.2, answered by :class:`pbx.outbound.Outbound`). When the attempt
fails *because of the trunk* — no answer to the request at all (timeout), 408, or any 5xx
(503 included) — the next trunk is tried with the same caller; a failure that is the
callee's answer (486 busy, 404, 484, 603, a ring timeout) ends the call, because another
carrier would reach the same person. A trunk at its ``max_channels`` is skipped.

The caller ID is the trunk's to give: a trunk with ``dids`` only sends one of them (the
calling extension's own number when the trunk owns it, else the trunk's ``caller_id``, else
its first DID); it goes in From (or the carrier's required ``from_user``) and in
P-Asserted-Identity (RFC 3325 §9.1), which a carrier trusts from its customer's trunk.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAILOVER_STATUSES", "OutboundTrunk", "should_fail_over"]

# Final statuses after which the next trunk is tried (plus a transaction timeout, 408).
FAILOVER_STATUSES = frozenset({408}) | frozenset(range(500, 600))


def should_fail_over(status: int, ring_timeout: bool) -> bool:
    """True when ``status`` says the trunk, not the callee, failed (see the module doc)."""
    return not ring_timeout and status in FAILOVER_STATUSES


@dataclass(frozen=True, slots=True)
class OutboundTrunk:
    """What placing a call through one trunk needs (built from the config by ``app``)."""

    name: str
    host: str
    port: int = 5060
    address: str = ""  # ``host`` resolved (the app resolves names at start); "" = host
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    dids: tuple[str, ...] = ()
    caller_id: str | None = None
    from_user: str | None = None
    max_channels: int = 0

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", self.host)

    def uri(self, number: str) -> str:
        suffix = ";transport=tcp" if self.transport.upper() == "TCP" else ""
        return f"sip:{number}@{self.host}:{self.port}{suffix}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password

    def caller_id_for(self, caller: str) -> str:
        """The number this trunk may present for ``caller`` (an extension or a number)."""
        if not self.dids:
            return self.caller_id or caller
        if caller in self.dids:
            return caller
        return self.caller_id or self.dids[0]
