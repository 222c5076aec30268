"""The registrar: REGISTER processing (RFC 3261 §10.3), sans-IO.

Theory of operation
-------------------
:meth:`Registrar.handle` takes an already authenticated REGISTER (authentication is shared
with INVITE and lives in :mod:`pbx.digest`), applies RFC 3261 §10.3 steps 5–8 to the
:class:`~pbx.location.LocationStore`, and returns the response to send plus the list of
binding changes, which the server persists. Time comes in as ``now`` (the loop clock) so tests
drive expiry directly.

Deliberate choices:
- ``Contact: *`` is only accepted with ``Expires: 0`` and alone (§10.3 step 6), else 400.
- An expiry below ``min_expires`` (but not 0) gets 423 with ``Min-Expires`` (§10.3 step 7);
  above ``max_expires`` it is shortened.
- A refresh with the same Call-ID and a CSeq not higher than the stored one is out of order
  and fails with 500 (§10.3 step 7 "the update MUST be aborted").
- More than ``max_contacts`` bindings per AOR are refused with 403 so one extension cannot
  grow memory without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate

from .location import Contact, LocationStore
from .message import ParseError, Request, Response, make_response

__all__ = ["BindingChange", "RegisterOutcome", "Registrar"]


@dataclass(frozen=True, slots=True)
class BindingChange:
    """A binding added or refreshed (``contact`` set) or removed (``removed``)."""

    aor: str
    contact: Contact
    removed: bool


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    response: Response
    changes: list[BindingChange]


class Registrar:
    def __init__(
        self,
        location: LocationStore,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 600,
    ) -> None:
        self.location = location
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._wall_time: float | None = None
        # Date header cache: formatdate() truncates to whole seconds, so one string per
        # second is the same header (it showed in profiles at hundreds of REGISTER/s).
        self._date_second: int | None = None
        self._date_text = ""

    def handle(
        self,
        request: Request,
        aor: str,
        source: tuple[str, int],
        transport: str,
        now: float,
        to_tag: str,
        wall_time: float | None = None,
    ) -> RegisterOutcome:
        """Apply a REGISTER for ``aor`` (already authenticated and authorised).

        ``now`` is the monotonic clock that expiry times use; ``wall_time`` (epoch seconds),
        when given, goes into the Date header of the 200 (RFC 3261 §10.3 step 8).
        """
        self._wall_time = wall_time
        try:
            return self._handle(request, aor, source, transport, now, to_tag)
        except ParseError as exc:
            return RegisterOutcome(
                make_response(
                    request,
                    exc.status,
                    to_tag=to_tag,
                    headers=[("Warning", f'399 switchboard "{exc}"')],
                ),
                [],
            )

    def _handle(
        self,
        request: Request,
        aor: str,
        source: tuple[str, int],
        transport: str,
        now: float,
        to_tag: str,
    ) -> RegisterOutcome:
        call_id = request.call_id
        cseq, _ = request.cseq
        header_expires = _parse_expires(request.get("Expires"))
        contact_values = request.get_list("Contact")
        changes: list[BindingChange] = []

        if any(v.strip() == "*" for v in contact_values):
            # RFC 3261 §10.3 step 6: wildcard removal.
            if len(contact_values) != 1 or header_expires != 0:
                raise ParseError("Contact: * needs Expires: 0 and no other contact")
            for c in self.location.remove_all(aor):
                if c.call_id == call_id and cseq <= c.cseq:
                    # Out-of-order wildcard: keep this binding (§10.3 step 6).
                    self.location.put(aor, c)
                    continue
                changes.append(BindingChange(aor, c, removed=True))
            return RegisterOutcome(self._ok(request, aor, now, to_tag), changes)

        parsed = request.contacts  # parsed once by validate_for_uas, cached on the message
        # Validate everything first: a REGISTER either applies whole or not at all.
        plan: list[tuple[str, int, float, str | None]] = []
        for na in parsed:
            if not na.uri.is_sip and na.uri.scheme not in ("tel",):
                raise ParseError(f"unsupported contact scheme {na.uri.scheme}", 416)
            p_exp = na.params.get("expires")
            expires = header_expires if p_exp is None else _parse_expires(p_exp)
            if expires is None:
                expires = self.default_expires
            if 0 < expires < self.min_expires:
                return RegisterOutcome(
                    make_response(
                        request,
                        423,
                        to_tag=to_tag,
                        headers=[("Min-Expires", str(self.min_expires))],
                    ),
                    [],
                )
            expires = min(expires, self.max_expires)
            q = 1.0
            q_raw = na.params.get("q")
            if q_raw is not None:
                try:
                    q = float(q_raw)
                except ValueError:
                    raise ParseError(f"bad q value {q_raw!r}") from None
                if not 0.0 <= q <= 1.0:
                    raise ParseError(f"q out of range: {q_raw}")
            instance = na.params.get("+sip.instance")
            plan.append((str(na.uri), expires, q, instance))

        new_uris = {uri for uri, exp, _, _ in plan if exp > 0}
        existing = {c.uri for c in self.location.lookup(aor, now)}
        if len(existing | new_uris) > self.location.max_contacts:
            return RegisterOutcome(
                make_response(request, 403, "Too Many Contacts", to_tag=to_tag), []
            )

        for uri, expires, q, instance in plan:
            old = self.location.get(aor, uri)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                # §10.3 step 7: an out-of-order refresh aborts the whole request.
                return RegisterOutcome(
                    make_response(request, 500, "Out Of Order", to_tag=to_tag), []
                )
            if expires == 0:
                if old is not None:
                    self.location.remove(aor, uri)
                    changes.append(BindingChange(aor, old, removed=True))
                continue
            contact = Contact(
                uri=uri,
                source=source,
                transport=transport,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                q=q,
                user_agent=request.get("User-Agent") or "",
                instance=instance,
            )
            self.location.put(aor, contact)
            changes.append(BindingChange(aor, contact, removed=False))
        return RegisterOutcome(self._ok(request, aor, now, to_tag), changes)

    def _ok(self, request: Request, aor: str, now: float, to_tag: str) -> Response:
        # RFC 3261 §10.3 step 8: the 200 lists every current binding with its expiry.
        headers: list[tuple[str, str]] = [
            ("Contact", f"<{c.uri}>;expires={c.remaining(now)}")
            for c in self.location.lookup(aor, now)
        ]
        if self._wall_time is not None:
            headers.append(("Date", self._date(self._wall_time)))
        return make_response(request, 200, to_tag=to_tag, headers=headers)

    def _date(self, wall_time: float) -> str:
        second = int(wall_time // 1)
        if second != self._date_second:
            self._date_text = formatdate(wall_time, usegmt=True)
            self._date_second = second
        return self._date_text


def _parse_expires(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit():
        raise ParseError(f"bad Expires value {v[:20]!r}")
    # RFC 3261 §20.19: values above 2**32-1 are treated as 2**32-1 (then capped anyway).
    return min(int(v), 2**32 - 1)
