"""The location store: address-of-record → contacts (RFC 3261 §10.3, Kamailio's usrloc).

Theory of operation
-------------------
An :class:`AddressOfRecord` (an extension number) holds :class:`Contact` bindings, each with
an absolute expiry time on the caller's clock. The store is pure: callers pass ``now`` and get
back what changed, so that the registrar (protocol) and the persistence adapter (the server
writes bindings to the database) stay separate. Expired bindings are removed lazily on every
access and by :meth:`LocationStore.expire`, which the server calls from a timer.

A contact remembers where its REGISTER really came from (``source`` and ``transport``):
requests to a phone behind NAT go there, not to the private address in its Contact URI
(RFC 3581, RFC 5626 §5 in spirit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AddressOfRecord", "Contact", "LocationStore"]


@dataclass(slots=True)
class Contact:
    """One binding of an AOR to a contact URI."""

    uri: str
    source: tuple[str, int]
    transport: str
    expires_at: float
    call_id: str
    cseq: int
    q: float = 1.0
    user_agent: str = ""
    instance: str | None = None

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(slots=True)
class AddressOfRecord:
    aor: str
    contacts: dict[str, Contact] = field(default_factory=dict)

    def active(self, now: float) -> list[Contact]:
        """Live contacts, highest q first, most recently refreshed first among equals."""
        if len(self.contacts) == 1:  # the usual case: one phone per extension, no sort
            (only,) = self.contacts.values()
            return [only] if only.expires_at > now else []
        live = [c for c in self.contacts.values() if c.expires_at > now]
        live.sort(key=lambda c: (-c.q, -c.expires_at))
        return live


class LocationStore:
    """All bindings in memory, bounded per AOR."""

    def __init__(self, max_contacts_per_aor: int = 10) -> None:
        self._aors: dict[str, AddressOfRecord] = {}
        self.max_contacts = max_contacts_per_aor

    def lookup(self, aor: str, now: float) -> list[Contact]:
        rec = self._aors.get(aor)
        if rec is None:
            return []
        return rec.active(now)

    def get(self, aor: str, uri: str) -> Contact | None:
        rec = self._aors.get(aor)
        return None if rec is None else rec.contacts.get(uri)

    def put(self, aor: str, contact: Contact) -> None:
        rec = self._aors.setdefault(aor, AddressOfRecord(aor))
        rec.contacts[contact.uri] = contact

    def remove(self, aor: str, uri: str) -> Contact | None:
        rec = self._aors.get(aor)
        if rec is None:
            return None
        c = rec.contacts.pop(uri, None)
        if not rec.contacts:
            del self._aors[aor]
        return c

    def remove_all(self, aor: str) -> list[Contact]:
        rec = self._aors.pop(aor, None)
        return [] if rec is None else list(rec.contacts.values())

    def active_count(self, now: float) -> int:
        """Unexpired bindings over every AOR (the registrations gauge)."""
        return sum(
            1 for rec in self._aors.values() for c in rec.contacts.values() if c.expires_at > now
        )

    def count(self, aor: str) -> int:
        rec = self._aors.get(aor)
        return 0 if rec is None else len(rec.contacts)

    def expire(self, now: float) -> list[tuple[str, Contact]]:
        """Drop every expired binding; returns what was dropped."""
        gone: list[tuple[str, Contact]] = []
        for aor in list(self._aors):
            rec = self._aors[aor]
            for uri in [u for u, c in rec.contacts.items() if c.expires_at <= now]:
                gone.append((aor, rec.contacts.pop(uri)))
            if not rec.contacts:
                del self._aors[aor]
        return gone

    def next_expiry(self) -> float | None:
        times = [c.expires_at for rec in self._aors.values() for c in rec.contacts.values()]
        return min(times) if times else None

    def all(self) -> list[tuple[str, Contact]]:
        return [(aor, c) for aor, rec in self._aors.items() for c in rec.contacts.values()]
