"""Who may do what with customers (crm/customers.py), checked in the service layer: a table
of (role, whose customer) → may view, may edit; and the service's refusals per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm import Actor, CrmError, CrmSettings, CustomerData, CustomerQuery, CustomerService, Store
from crm.customers import CustomField, can_edit, can_view, check_custom

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
AGENT = Actor("alice", "agent")
QA = Actor("quinn", "qa")
SUPERVISOR = Actor("sue", "supervisor")
ADMIN = Actor("admin", "admin")

OWN = CustomerData("Own", "1111111", owner="alice")
OTHERS = CustomerData("Others", "2222222", owner="bob")
SHARED = CustomerData("Shared", "3333333", owner="bob", shared=True)
POOL = CustomerData("Pool", "4444444")

# (actor, customer, may view, may edit)
RULES = [
    (AGENT, OWN, True, True),
    (AGENT, OTHERS, False, False),
    (AGENT, SHARED, True, True),
    (AGENT, POOL, True, False),
    (QA, OTHERS, False, False),
    (QA, POOL, True, False),
    (SUPERVISOR, OTHERS, True, True),
    (SUPERVISOR, POOL, True, True),
    (ADMIN, OTHERS, True, True),
]


@pytest.mark.parametrize(("actor", "customer", "view", "edit"), RULES)
def test_rules(actor: Actor, customer: CustomerData, view: bool, edit: bool) -> None:
    assert can_view(actor, customer) is view
    assert can_edit(actor, customer) is edit


SETTINGS = CrmSettings(
    custom_fields={
        "contract": CustomField("contract", "choice", ("basic", "gold"), required=True),
        "seats": CustomField("seats", "number"),
    },
    claim_limit=1,
)


def test_check_custom() -> None:
    assert check_custom(SETTINGS, {"contract": "gold", "seats": "2.5"}) == {
        "contract": "gold",
        "seats": 2.5,
    }
    with pytest.raises(ValueError, match="required custom field missing: contract"):
        check_custom(SETTINGS, {"seats": 1})
    with pytest.raises(ValueError, match="no custom field 'colour'"):
        check_custom(SETTINGS, {"contract": "gold", "colour": "red"})
    with pytest.raises(ValueError, match="not a number"):
        check_custom(SETTINGS, {"contract": "gold", "seats": True})
    assert check_custom(SETTINGS, {"seats": ""}, partial=True) == {}


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[tuple[CustomerService, dict[str, int]]]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    ids: dict[str, int] = {}
    for c in (OWN, OTHERS, SHARED, POOL):
        created = await store.create_customer(
            CustomerData(c.name, c.phone, owner=c.owner, shared=c.shared)
        )
        assert created.id is not None
        ids[c.name] = created.id
    try:
        yield CustomerService(store, SETTINGS), ids
    finally:
        await store.close()


async def _refused(status: int, call: object) -> str:
    with pytest.raises(CrmError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.status == status, caught.value.message
    return caught.value.message


async def test_agent_denials(svc: tuple[CustomerService, dict[str, int]]) -> None:
    s, ids = svc
    # another's customer is invisible: 404, never "exists but not yours"
    await _refused(404, s.get(AGENT, ids["Others"]))
    await _refused(404, s.update(AGENT, ids["Others"], {"name": "X"}))
    await _refused(404, s.add_followup(AGENT, ids["Others"], "hi", now=T0))
    # a pool customer is seen but claimed before it is edited
    assert "claim it first" in await _refused(403, s.update(AGENT, ids["Pool"], {"name": "X"}))
    await _refused(403, s.delete(AGENT, ids["Own"]))
    await _refused(403, s.update(AGENT, ids["Own"], {"owner": "bob"}))
    await _refused(403, s.release(AGENT, ids["Shared"], T0))
    await _refused(403, s.unblacklist(AGENT, "1234567"))
    new = CustomerData("New", "5555555", owner="bob", custom={"contract": "gold"})
    await _refused(403, s.create(AGENT, new))
    found, total = await s.search(AGENT, CustomerQuery())
    assert [c.name for c in found] == ["Own", "Pool", "Shared"] and total == 3
    # search cannot widen the scope
    found, _ = await s.search(AGENT, CustomerQuery(owner="bob"))
    assert [c.name for c in found] == ["Shared"]


async def test_agent_may(svc: tuple[CustomerService, dict[str, int]]) -> None:
    s, ids = svc
    changed = await s.update(AGENT, ids["Shared"], {"grade": "A", "custom": {"contract": "basic"}})
    assert changed.grade == "A"
    mine = await s.create(AGENT, CustomerData("Mine", "6666666", custom={"contract": "gold"}))
    assert mine.owner == "alice"  # an agent's new customer is theirs
    await s.add_followup(AGENT, ids["Pool"], "called about the offer", now=T0)
    # the claim limit (1) counts what alice owns already: Own and Mine
    assert "claim limit is 1" in await _refused(409, s.claim(AGENT, ids["Pool"], T0))
    await s.release(AGENT, ids["Own"], T0)
    assert mine.id is not None
    await s.release(AGENT, mine.id, T0)
    claimed = await s.claim(AGENT, ids["Pool"], T0)
    assert claimed.owner == "alice"
    await s.blacklist(AGENT, "+49 30 1234567", "asked not to be called", T0)
    await _refused(400, s.blacklist(AGENT, "abc", "", T0))


async def test_supervisor_may_everything(svc: tuple[CustomerService, dict[str, int]]) -> None:
    s, ids = svc
    _, total = await s.search(SUPERVISOR, CustomerQuery())
    assert total == 4
    moved = await s.update(
        SUPERVISOR, ids["Others"], {"owner": "alice", "custom": {"contract": "gold"}}
    )
    assert moved.owner == "alice"
    await s.release(SUPERVISOR, ids["Others"], T0)
    await s.delete(SUPERVISOR, ids["Pool"])
    await _refused(404, s.get(SUPERVISOR, ids["Pool"]))
    await _refused(400, s.update(SUPERVISOR, ids["Own"], {"custom": {"contract": "platinum"}}))
    await _refused(400, s.update(SUPERVISOR, ids["Own"], {"id": 5}))
    await _refused(400, s.update(SUPERVISOR, ids["Own"], {"name": None}))
    await _refused(400, s.update(SUPERVISOR, ids["Own"], {"phone": "no digits"}))
    await _refused(400, s.create(SUPERVISOR, CustomerData("No contract", "7777777")))
    pool = await s.create(SUPERVISOR, CustomerData("P", "8888888", custom={"contract": "gold"}))
    assert pool.owner is None  # a supervisor's new customer goes to the pool
