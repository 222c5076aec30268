"""Customers in the store (SQLite and PostgreSQL): create/get/update/delete, numbers found
however typed, de-duplication, combined search, follow-ups, appointments and reminders, the
public pool, the blacklist, and a store at revision 0003 upgraded with its customers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from crm import (
    AppointmentData,
    BlacklistEntry,
    CrmError,
    CustomerData,
    CustomerNumberData,
    CustomerQuery,
    DuplicateNumberError,
    FollowupData,
    Store,
)
from crm.migrate import upgrade

T0 = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


def _anna(**kw: object) -> CustomerData:
    values: dict[str, object] = {
        "name": "Anna Schmidt",
        "phone": "+49 30 1234567",
        "grade": "B",
        "company": "Acme GmbH",
        "address": "Hauptstr. 1, Berlin",
        "tags": ("VIP", "reseller"),
        "source": "fair",
        "custom": {"contract": "gold", "seats": 12},
        "numbers": (CustomerNumberData("+86 138 0013 8000", "mobile"),),
        "created_at": T0,
    }
    values.update(kw)
    return CustomerData(**values)  # type: ignore[arg-type]


async def test_create_get_round_trip(store: Store) -> None:
    created = await store.create_customer(_anna())
    assert created.id is not None
    assert created.tags == ("vip", "reseller")
    assert created.custom == {"contract": "gold", "seats": 12}
    assert [n.number for n in created.numbers] == ["+86 138 0013 8000"]
    assert created.owner is None and created.shared is False
    assert await store.get_customer(created.id) == created
    assert await store.get_customer(created.id + 100) is None


@pytest.mark.parametrize(
    "typed",
    ["030 1234567", "004930 1234567", "4930 1234567", "+49 (30) 123-4567", "13800138000"],
)
async def test_find_by_number_however_typed(store: Store, typed: str) -> None:
    created = await store.create_customer(_anna())
    found = await store.find_customer_by_number(typed)
    assert found is not None and found.id == created.id and found.grade == "B"


async def test_find_prefers_exact_then_oldest(store: Store) -> None:
    national = await store.add_customer(CustomerData("National", "030 1234567", created_at=T0))
    full = await store.add_customer(
        CustomerData("Full", "+49 30 1234567", created_at=T0 + timedelta(days=1))
    )
    assert (await store.find_customer_by_number("+49301234567")).id == full  # type: ignore[union-attr]
    assert (await store.find_customer_by_number("301234567")).id == national  # type: ignore[union-attr]
    assert await store.find_customer_by_number("1234568") is None
    assert await store.find_customer_by_number("") is None


async def test_duplicate_number_is_refused_naming_the_owner(store: Store) -> None:
    created = await store.create_customer(_anna())
    with pytest.raises(DuplicateNumberError, match=rf"customer {created.id} \(Anna Schmidt\)"):
        await store.create_customer(CustomerData("Bob", "0 30 / 123 45 67"))
    with pytest.raises(DuplicateNumberError) as caught:
        await store.create_customer(
            CustomerData("Bob", "555", numbers=(CustomerNumberData("0086 13800138000"),))
        )
    assert caught.value.customer_id == created.id and caught.value.status == 409
    dup = await store.create_customer(CustomerData("Bob", "030 1234567"), allow_duplicate=True)
    assert dup.id != created.id


async def test_update_replaces_fields_and_numbers(store: Store) -> None:
    created = await store.create_customer(_anna())
    assert created.id is not None
    changed = CustomerData(
        "Anna S.",
        "+49 40 7654321",
        grade="A",
        id=created.id,
        created_at=created.created_at,
        tags=("gold",),
        numbers=(CustomerNumberData("0171 5555555", "mobile"),),
    )
    updated = await store.update_customer(changed, now=T0 + timedelta(hours=1))
    assert updated is not None
    assert updated.name == "Anna S." and updated.grade == "A" and updated.tags == ("gold",)
    assert updated.created_at == created.created_at
    assert updated.updated_at == T0 + timedelta(hours=1)
    assert await store.find_customer_by_number("030 1234567") is None
    assert (await store.find_customer_by_number("+49 171 5555555")).id == created.id  # type: ignore[union-attr]
    other = await store.create_customer(CustomerData("Other", "089 111 2222"))
    with pytest.raises(DuplicateNumberError):
        await store.update_customer(
            CustomerData("Other", "040 7654321", id=other.id, created_at=T0)
        )
    gone = CustomerData("X", "1", id=9999)
    assert await store.update_customer(gone) is None


async def test_delete_removes_children(store: Store) -> None:
    created = await store.create_customer(_anna())
    assert created.id is not None
    await store.add_followup(FollowupData(created.id, T0, "alice", "called"))
    await store.add_appointment(AppointmentData(created.id, T0, T0, "alice"))
    assert await store.delete_customer(created.id)
    assert not await store.delete_customer(created.id)
    assert await store.get_customer(created.id) is None
    assert await store.find_customer_by_number("+49 30 1234567") is None
    assert await store.list_followups(created.id) == []


async def _names(store: Store, query: CustomerQuery) -> list[str]:
    found, total = await store.search_customers(query, limit=100)
    assert total == len(found)
    return [c.name for c in found]


async def test_search_filters_combine(store: Store) -> None:
    await store.create_customer(_anna())
    await store.create_customer(
        CustomerData(
            "bernd anders",
            "089 1112222",
            grade="C",
            tags=("reseller",),
            owner="alice",
            source="web",
            custom={"contract": "basic", "seats": 3},
        )
    )
    await store.create_customer(
        CustomerData("Carla", "+1 555 123 4567", grade="B", shared=True, owner="bob")
    )
    assert await _names(store, CustomerQuery()) == ["Anna Schmidt", "bernd anders", "Carla"]
    assert await _names(store, CustomerQuery(text="AND")) == ["bernd anders"]
    assert await _names(store, CustomerQuery(text="acme")) == ["Anna Schmidt"]  # company
    assert await _names(store, CustomerQuery(text="100%")) == []
    assert await _names(store, CustomerQuery(number="(555) 123-4567")) == ["Carla"]
    assert await _names(store, CustomerQuery(number="+8613800138000")) == ["Anna Schmidt"]
    assert await _names(store, CustomerQuery(number="abc")) == []
    assert await _names(store, CustomerQuery(grade="B")) == ["Anna Schmidt", "Carla"]
    assert await _names(store, CustomerQuery(tag="Reseller")) == ["Anna Schmidt", "bernd anders"]
    assert await _names(store, CustomerQuery(tag="resell")) == []  # whole tags only
    assert await _names(store, CustomerQuery(tag="reseller", grade="C")) == ["bernd anders"]
    assert await _names(store, CustomerQuery(owner="alice")) == ["bernd anders"]
    assert await _names(store, CustomerQuery(source="fair")) == ["Anna Schmidt"]
    assert await _names(store, CustomerQuery(pool=True)) == ["Anna Schmidt"]
    assert await _names(store, CustomerQuery(pool=False)) == ["bernd anders", "Carla"]
    assert await _names(store, CustomerQuery(custom={"contract": "gold"})) == ["Anna Schmidt"]
    assert await _names(store, CustomerQuery(custom={"seats": 3})) == ["bernd anders"]
    # an agent sees the pool, shared customers and their own
    assert await _names(store, CustomerQuery(visible_to="alice")) == [
        "Anna Schmidt",
        "bernd anders",
        "Carla",
    ]
    assert await _names(store, CustomerQuery(visible_to="zoe")) == ["Anna Schmidt", "Carla"]
    page, total = await store.search_customers(CustomerQuery(), offset=1, limit=1)
    assert [c.name for c in page] == ["bernd anders"] and total == 3


async def test_followups_and_reminders(store: Store) -> None:
    created = await store.create_customer(_anna())
    cid = created.id
    assert cid is not None
    await store.add_followup(FollowupData(cid, T0 + timedelta(days=2), "alice", "second"))
    await store.add_followup(
        FollowupData(cid, T0 + timedelta(days=1), "alice", "first", T0 + timedelta(days=9))
    )
    assert [f.note for f in await store.list_followups(cid)] == ["second", "first"]
    got = await store.get_customer(cid)
    assert got is not None and got.last_followup_at == T0 + timedelta(days=2)
    with pytest.raises(CrmError, match="no customer"):
        await store.add_followup(FollowupData(cid + 50, T0, "alice", "x"))

    a1 = await store.add_appointment(
        AppointmentData(cid, T0 + timedelta(hours=2), T0 + timedelta(hours=1), "alice", "demo")
    )
    await store.add_appointment(
        AppointmentData(cid, T0 + timedelta(days=3), T0 + timedelta(days=2), "bob")
    )
    with pytest.raises(ValueError, match="reminder"):
        AppointmentData(cid, T0, T0 + timedelta(hours=1), "alice")
    assert await store.due_reminders(T0) == []
    due = await store.due_reminders(T0 + timedelta(hours=1))
    assert [a.note for a in due] == ["demo"]
    assert await store.due_reminders(T0 + timedelta(days=5), user="bob") != []
    assert a1.id is not None
    assert await store.mark_reminded([a1.id]) == 1
    assert await store.due_reminders(T0 + timedelta(hours=1)) == []
    assert len(await store.list_appointments(cid)) == 2


async def test_pool_claim_limit_release_and_return(store: Store) -> None:
    ids = [
        (await store.create_customer(CustomerData(f"C{i}", f"0301111{i:03d}"))).id for i in range(3)
    ]
    assert all(i is not None for i in ids)
    a, b, c = (int(i) for i in ids if i is not None)
    claimed = await store.claim_customer(a, "alice", limit=2, now=T0)
    assert claimed.owner == "alice" and claimed.owned_since == T0
    with pytest.raises(CrmError, match="owned by alice"):
        await store.claim_customer(a, "bob", limit=2, now=T0)
    await store.claim_customer(b, "alice", limit=2, now=T0)
    with pytest.raises(CrmError, match="claim limit is 2") as caught:
        await store.claim_customer(c, "alice", limit=2, now=T0)
    assert caught.value.status == 409
    with pytest.raises(CrmError, match="no customer"):
        await store.claim_customer(9999, "alice", limit=2, now=T0)
    assert await store.count_owned("alice") == 2
    released = await store.release_customer(b, T0)
    assert released is not None and released.owner is None

    # a follows up on day 20; c is claimed by bob on day 0 and never followed up
    await store.claim_customer(c, "bob", limit=5, now=T0)
    await store.add_followup(FollowupData(a, T0 + timedelta(days=20), "alice", "call"))
    assert await store.return_stale_to_pool(T0 + timedelta(days=29), 30) == []
    assert await store.return_stale_to_pool(T0 + timedelta(days=31), 30) == [c]
    assert (await store.get_customer(c)).owner is None  # type: ignore[union-attr]
    assert await store.return_stale_to_pool(T0 + timedelta(days=51), 30) == [a]


async def test_blacklist(store: Store) -> None:
    entry = await store.add_blacklist(BlacklistEntry("+49 30 1234567", "asked", "alice", T0))
    assert entry.id is not None
    assert await store.is_blacklisted("030 1234567")
    assert await store.is_blacklisted("004930 1234567")
    assert not await store.is_blacklisted("030 1234568")
    assert not await store.is_blacklisted("")
    with pytest.raises(CrmError, match="already"):
        await store.add_blacklist(BlacklistEntry("49301234567", "again", "bob", T0))
    rows, total = await store.list_blacklist()
    assert total == 1 and rows[0].reason == "asked" and rows[0].added_by == "alice"
    assert await store.remove_blacklist("+49 30 1234567")
    assert not await store.remove_blacklist("+49 30 1234567")
    assert not await store.is_blacklisted("030 1234567")


async def test_bulk_add_customers(store: Store) -> None:
    customers = [CustomerData(f"N{i}", f"+1 555 {i:07d}") for i in range(1200)]
    ids = await store.add_customers(customers, chunk=500)
    assert len(ids) == 1200 and len(set(ids)) == 1200
    found = await store.find_customer_by_number("555 000 1199")
    assert found is not None and found.name == "N1199" and found.id == ids[-1]
    owners = await store.customers_by_numbers(["+15550000007", "5559999999"])
    assert owners == {"15550000007": (ids[7], "N7")}


async def test_a_0003_store_upgrades_with_its_customers(empty_store_url: str) -> None:
    """Customers written before revision 0004 keep working: found by number, grade and all."""
    await upgrade(empty_store_url, "0003")
    engine = create_async_engine(empty_store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO customers (name, phone, phone_digits, grade, created_at)"
                    " VALUES ('Old', '+49 30 7654321', '49307654321', 'A', :t)"
                ),
                {"t": T0.replace(tzinfo=None) if "sqlite" in empty_store_url else T0},
            )
    finally:
        await engine.dispose()
    assert (await upgrade(empty_store_url))[:1] == ["0004"]  # and any later revisions
    store = await Store.open(empty_store_url)
    try:
        found = await store.find_customer_by_number("030 7654321")
        assert found is not None and found.name == "Old" and found.grade == "A"
        assert found.tags == () and found.owner is None and found.shared is False
        assert found.custom == {}
        with pytest.raises(DuplicateNumberError, match="Old"):
            await store.create_customer(CustomerData("New", "004930 7654321"))
    finally:
        await store.close()


async def test_lookup_uses_the_tail_index(tmp_path: Path) -> None:
    """SQLite's plan for the query shape of find_customer_by_number (customers joined to
    customer_numbers by tail) searches by the tail index: no scan, whatever the size."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    try:
        async with store.engine.connect() as conn:
            plan = (
                await conn.execute(
                    sa.text(
                        "EXPLAIN QUERY PLAN SELECT customers.*, n.digits FROM customers"
                        " JOIN customer_numbers AS n ON customers.id = n.customer_id"
                        " WHERE n.tail = '1234567' LIMIT 100"
                    )
                )
            ).all()
    finally:
        await store.close()
    details = " / ".join(str(row[-1]) for row in plan)
    assert "USING INDEX ix_customer_numbers_tail (tail=?)" in details, details
    assert "SCAN" not in details, details
