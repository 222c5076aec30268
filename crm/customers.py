"""Customers as users work with them: who may see and change what, custom field values
checked against their declarations, the public pool and the outbound blacklist.

Theory of operation: :class:`CustomerService` wraps the store's customer queries
(:class:`crm.Store`) with the permission rules, so every front end (API, CLI through the
API, web pages) gets the same answers. An :class:`Actor` is a user name and role:

- supervisors and admins see and change every customer;
- agents and qa see shared customers, the public pool (no owner) and their own; they edit
  their own and shared ones (a pool customer is claimed first), never delete, and cannot
  give a customer to someone else (only claim and release);
- anyone who sees a customer may log follow-ups and appointments for it;
- anyone may add a number to the outbound blacklist (during a call); supervisors remove.

A refusal is a :class:`crm.store.CrmError` with the HTTP status to answer: 403 for a
customer the actor may see but not change, 404 for one they may not see (so ids of others'
customers do not leak). Custom field values are checked by :func:`check_custom` against the
fields the config declares (``crm.custom_fields``): text, number, date (YYYY-MM-DD) or
choice, and whether each is required.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from crm.store import (
    AppointmentData,
    BlacklistEntry,
    CrmError,
    CustomerData,
    CustomerNumberData,
    CustomerQuery,
    FollowupData,
    Store,
)
from crm.users import role_rank

__all__ = [
    "Actor",
    "CrmSettings",
    "CustomField",
    "CustomerService",
    "can_edit",
    "can_view",
    "check_custom",
]

FieldType = Literal["text", "number", "date", "choice"]
MAX_TEXT = 1000


@dataclass(frozen=True, slots=True)
class CustomField:
    """A custom field declared in ``crm.custom_fields``."""

    name: str
    type: FieldType = "text"
    choices: tuple[str, ...] = ()
    required: bool = False

    def check(self, value: Any) -> str | int | float:
        """``value`` as stored (numbers as numbers, dates as YYYY-MM-DD), or ValueError
        saying why not."""
        if self.type == "number":
            if isinstance(value, bool):
                raise ValueError(f"{self.name}: {value!r} is not a number")
            if isinstance(value, (int, float)):
                return value
            text = str(value).strip()
            try:
                return int(text)
            except ValueError:
                pass
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{self.name}: {text!r} is not a number") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"{self.name}: {text!r} is not a number")
            return number
        if self.type == "date":
            if isinstance(value, datetime):
                return value.date().isoformat()
            if isinstance(value, date):
                return value.isoformat()
            text = str(value).strip()
            try:
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ValueError(f"{self.name}: {text!r} is not a date (YYYY-MM-DD)") from None
        text = str(value).strip()
        if self.type == "choice" and text not in self.choices:
            raise ValueError(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
        if len(text) > MAX_TEXT:
            raise ValueError(f"{self.name}: longer than {MAX_TEXT} characters")
        return text


@dataclass(frozen=True, slots=True)
class CrmSettings:
    """The ``crm:`` config section (app/ builds it)."""

    custom_fields: Mapping[str, CustomField] = field(default_factory=dict)
    claim_limit: int = 50
    return_after_days: int = 30


def check_custom(
    settings: CrmSettings, values: Mapping[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Custom field values as stored: unknown names, bad values and (unless ``partial``)
    missing required fields raise ValueError. Empty values (None, "") are left out."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = settings.custom_fields.get(name)
        if spec is None:
            raise ValueError(f"no custom field {name!r} (crm.custom_fields)")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        out[name] = spec.check(value)
    if not partial:
        missing = [n for n, s in settings.custom_fields.items() if s.required and n not in out]
        if missing:
            raise ValueError(f"required custom field missing: {', '.join(missing)}")
    return out


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a user name and a role (crm.users.ROLES)."""

    name: str
    role: str

    @property
    def sees_all(self) -> bool:
        return role_rank(self.role) >= role_rank("supervisor")


def can_view(actor: Actor, customer: CustomerData) -> bool:
    """Supervisors and admins: all; others: shared, the pool and their own."""
    return actor.sees_all or customer.shared or customer.owner in (None, actor.name)


def can_edit(actor: Actor, customer: CustomerData) -> bool:
    """Supervisors and admins: all; others: their own and shared customers."""
    return actor.sees_all or customer.shared or customer.owner == actor.name


# The fields update() changes from a mapping (numbers, tags and custom take lists/dicts).
EDITABLE = (
    "name",
    "phone",
    "email",
    "company",
    "grade",
    "language",
    "notes",
    "address",
    "tags",
    "source",
    "owner",
    "shared",
    "custom",
    "numbers",
)


class CustomerService:
    """Customer operations with permission checks (module docstring)."""

    def __init__(self, store: Store, settings: CrmSettings) -> None:
        self.store = store
        self.settings = settings

    # -- customers -------------------------------------------------------------------------

    async def _visible(self, actor: Actor, customer_id: int) -> CustomerData:
        found = await self.store.get_customer(customer_id)
        if found is None or not can_view(actor, found):
            raise CrmError(404, f"no customer {customer_id}")
        return found

    async def get(self, actor: Actor, customer_id: int) -> CustomerData:
        """One customer the actor may see; CrmError 404 otherwise."""
        return await self._visible(actor, customer_id)

    async def search(
        self, actor: Actor, query: CustomerQuery, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[CustomerData], int]:
        """A search limited to what the actor may see."""
        if not actor.sees_all:
            query = dataclasses.replace(query, visible_to=actor.name)
        custom = {}
        for name, value in query.custom.items():
            spec = self.settings.custom_fields.get(name)
            if spec is None:
                raise CrmError(400, f"no custom field {name!r} (crm.custom_fields)")
            try:
                custom[name] = spec.check(value)
            except ValueError as exc:
                raise CrmError(400, str(exc)) from None
        query = dataclasses.replace(query, custom=custom)
        return await self.store.search_customers(query, offset=offset, limit=limit)

    def prepare(self, actor: Actor, customer: CustomerData) -> CustomerData:
        """A new customer checked for ``actor``: custom values as stored; an agent's
        customer is theirs unless shared or put in the pool (owner None is kept only for
        shared customers and supervisors)."""
        try:
            custom = check_custom(self.settings, customer.custom)
        except ValueError as exc:
            raise CrmError(400, str(exc)) from None
        owner = customer.owner
        if not actor.sees_all:
            if owner not in (None, actor.name):
                raise CrmError(403, "only supervisors give customers to other users")
            if owner is None and not customer.shared:
                owner = actor.name
        return dataclasses.replace(customer, custom=custom, owner=owner)

    async def create(
        self, actor: Actor, customer: CustomerData, *, allow_duplicate: bool = False
    ) -> CustomerData:
        """Store a new customer (:meth:`prepare`); a number another customer has raises
        :class:`crm.store.DuplicateNumberError` unless ``allow_duplicate``."""
        return await self.store.create_customer(
            self.prepare(actor, customer), allow_duplicate=allow_duplicate
        )

    async def update(
        self,
        actor: Actor,
        customer_id: int,
        changes: Mapping[str, Any],
        *,
        allow_duplicate: bool = False,
    ) -> CustomerData:
        """Change the given fields (:data:`EDITABLE`); ``custom`` values are merged (a None
        value removes one). 403 when the actor may see but not change it."""
        current = await self._visible(actor, customer_id)
        if not can_edit(actor, current):
            raise CrmError(403, f"customer {customer_id} is not yours: claim it first")
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise CrmError(400, f"cannot change {', '.join(unknown)}")
        values = dict(changes)
        for key in ("name", "phone", "shared"):
            if key in values and values[key] is None:
                raise CrmError(400, f"{key} cannot be removed")
        if "owner" in values and values["owner"] != current.owner and not actor.sees_all:
            raise CrmError(403, "only supervisors change the owner (agents claim and release)")
        if "custom" in values:
            merged = {**current.custom, **(values["custom"] or {})}
            values["custom"] = {k: v for k, v in merged.items() if v is not None}
        if "numbers" in values:
            values["numbers"] = tuple(_number(n) for n in values["numbers"] or ())
        if "tags" in values:
            values["tags"] = tuple(values["tags"] or ())
        try:
            updated = dataclasses.replace(current, **values)
            updated = dataclasses.replace(
                updated, custom=check_custom(self.settings, updated.custom)
            )
        except (ValueError, TypeError) as exc:
            raise CrmError(400, str(exc)) from None
        if "owner" in values and values["owner"] != current.owner:
            updated = dataclasses.replace(updated, owned_since=None)
        saved = await self.store.update_customer(updated, allow_duplicate=allow_duplicate)
        if saved is None:
            raise CrmError(404, f"no customer {customer_id}")
        return saved

    async def delete(self, actor: Actor, customer_id: int) -> None:
        """Delete a customer (supervisors and admins)."""
        await self._visible(actor, customer_id)
        if not actor.sees_all:
            raise CrmError(403, "only supervisors and admins delete customers")
        if not await self.store.delete_customer(customer_id):
            raise CrmError(404, f"no customer {customer_id}")

    # -- follow-ups and appointments -----------------------------------------------------------

    async def add_followup(
        self,
        actor: Actor,
        customer_id: int,
        note: str,
        *,
        now: datetime,
        next_at: datetime | None = None,
    ) -> FollowupData:
        await self._visible(actor, customer_id)
        return await self.store.add_followup(
            FollowupData(customer_id, now, actor.name, note, next_at)
        )

    async def followups(self, actor: Actor, customer_id: int) -> list[FollowupData]:
        await self._visible(actor, customer_id)
        return await self.store.list_followups(customer_id)

    async def add_appointment(
        self,
        actor: Actor,
        customer_id: int,
        at: datetime,
        remind_at: datetime,
        note: str = "",
    ) -> AppointmentData:
        await self._visible(actor, customer_id)
        try:
            data = AppointmentData(customer_id, at, remind_at, actor.name, note)
        except ValueError as exc:
            raise CrmError(400, str(exc)) from None
        return await self.store.add_appointment(data)

    async def appointments(self, actor: Actor, customer_id: int) -> list[AppointmentData]:
        await self._visible(actor, customer_id)
        return await self.store.list_appointments(customer_id)

    async def due_reminders(self, actor: Actor, now: datetime) -> list[AppointmentData]:
        """Reminders due now: an agent's own; every user's for supervisors and admins."""
        return await self.store.due_reminders(now, user=None if actor.sees_all else actor.name)

    # -- the public pool -----------------------------------------------------------------

    async def claim(self, actor: Actor, customer_id: int, now: datetime) -> CustomerData:
        """Take a pool customer for the actor, within ``claim_limit``."""
        await self._visible(actor, customer_id)
        return await self.store.claim_customer(
            customer_id, actor.name, limit=self.settings.claim_limit, now=now
        )

    async def release(self, actor: Actor, customer_id: int, now: datetime) -> CustomerData:
        """Put a customer back into the pool: its owner, or a supervisor."""
        current = await self._visible(actor, customer_id)
        if current.owner is None:
            raise CrmError(409, f"customer {customer_id} is in the pool already")
        if current.owner != actor.name and not actor.sees_all:
            raise CrmError(403, f"customer {customer_id} is not yours")
        released = await self.store.release_customer(customer_id, now)
        if released is None:
            raise CrmError(404, f"no customer {customer_id}")
        return released

    async def return_stale_to_pool(self, now: datetime) -> list[int]:
        """The daily job: owned customers without a follow-up for ``return_after_days``
        days go back to the pool; returns their ids."""
        return await self.store.return_stale_to_pool(now, self.settings.return_after_days)

    # -- the outbound blacklist ----------------------------------------------------------------

    async def blacklist(
        self, actor: Actor, number: str, reason: str, now: datetime
    ) -> BlacklistEntry:
        """Add a number (any user: agents do it during a call)."""
        try:
            entry = BlacklistEntry(number.strip(), reason, actor.name, now)
        except ValueError as exc:
            raise CrmError(400, str(exc)) from None
        return await self.store.add_blacklist(entry)

    async def unblacklist(self, actor: Actor, number: str) -> None:
        """Take a number off (supervisors and admins)."""
        if not actor.sees_all:
            raise CrmError(403, "only supervisors and admins remove blacklisted numbers")
        if not await self.store.remove_blacklist(number):
            raise CrmError(404, f"{number} is not on the blacklist")


def _number(value: Any) -> CustomerNumberData:
    """A number from an API value: a CustomerNumberData, "number" or {number, kind}."""
    if isinstance(value, CustomerNumberData):
        return value
    if isinstance(value, str):
        return CustomerNumberData(value)
    if isinstance(value, Mapping):
        return CustomerNumberData(str(value.get("number", "")), str(value.get("kind", "mobile")))
    raise ValueError(f"not a phone number: {value!r}")


def numbers_from(values: Sequence[Any]) -> tuple[CustomerNumberData, ...]:
    """Numbers from API values (see :func:`_number`); ValueError for a bad one."""
    return tuple(_number(v) for v in values)
