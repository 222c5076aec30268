"""Users, API tokens, sessions and the audit log in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from crm import (
    ROLES,
    AuditEntry,
    Store,
    UserExistsError,
    role_rank,
)
from crm.models import ApiTokenRow, SessionRow, UserRow

T0 = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
PASSWORD = "correct horse"


def _cheap() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url, hasher=_cheap())
    try:
        yield s
    finally:
        await s.close()


# --- roles ------------------------------------------------------------------------------------


def test_roles_ascend_in_privilege() -> None:
    assert ROLES == ("agent", "qa", "supervisor", "admin")
    assert [role_rank(r) for r in ROLES] == [0, 1, 2, 3]
    assert role_rank("admin") > role_rank("supervisor") > role_rank("qa") > role_rank("agent")
    with pytest.raises(ValueError, match="unknown role"):
        role_rank("root")


# --- users ------------------------------------------------------------------------------------


async def test_add_get_list_users(store: Store) -> None:
    alice = await store.add_user("alice", "agent", PASSWORD, agent="a1")
    bob = await store.add_user("bob@example.com", "admin", PASSWORD)
    assert (alice.name, alice.role, alice.agent, alice.disabled) == ("alice", "agent", "a1", False)
    assert alice.created_at.tzinfo is UTC
    assert await store.get_user("alice") == alice
    assert await store.get_user("carol") is None
    assert [u.name for u in await store.list_users()] == ["alice", "bob@example.com"]
    assert bob.id != alice.id


async def test_password_is_stored_as_argon2_hash(store: Store) -> None:
    await store.add_user("alice", "qa", PASSWORD)
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(UserRow.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("alice", "root", PASSWORD, "unknown role"),
        ("alice", "agent", "", "too short"),
        ("alice", "agent", "1234567", "too short"),
        ("", "agent", PASSWORD, "bad user name"),
        ("al ice", "agent", PASSWORD, "bad user name"),
        ("alice/..", "agent", PASSWORD, "bad user name"),
        ("a" * 65, "agent", PASSWORD, "bad user name"),
        ("ålice", "agent", PASSWORD, "bad user name"),
    ],
)
async def test_add_user_refuses_bad_input(
    store: Store, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await store.add_user(name, role, password)
    assert await store.list_users() == []


async def test_add_user_accepts_edge_names(store: Store) -> None:
    await store.add_user("a" * 64, "agent", "12345678")
    await store.add_user("A.b_c-d@e", "agent", "12345678")
    assert len(await store.list_users()) == 2


async def test_duplicate_user_is_refused(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    with pytest.raises(UserExistsError):
        await store.add_user("alice", "admin", "another password")
    users = await store.list_users()
    assert [(u.name, u.role) for u in users] == [("alice", "agent")]


async def test_check_password(store: Store) -> None:
    alice = await store.add_user("alice", "supervisor", PASSWORD)
    assert await store.check_password("alice", PASSWORD) == alice
    assert await store.check_password("alice", "wrong password") is None
    assert await store.check_password("alice", "") is None
    assert await store.check_password("nobody", PASSWORD) is None
    assert await store.check_password("ALICE", PASSWORD) is None


class _CountingHasher(PasswordHasher):
    """A real (cheap) Argon2 hasher that counts verifications."""

    verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


async def test_unknown_user_costs_a_verification(store_url: str) -> None:
    hasher = _CountingHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = await Store.open(store_url, hasher=hasher)
    try:
        await store.add_user("alice", "agent", PASSWORD)
        assert await store.check_password("nobody", PASSWORD) is None
        assert hasher.verified == 1
        assert await store.check_password("nobody", "") is None
        assert await store.check_password("alice", "wrong password") is None
        assert hasher.verified == 3
    finally:
        await store.close()


async def test_disabled_user_cannot_log_in(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    assert await store.set_disabled("alice")
    assert await store.check_password("alice", PASSWORD) is None
    user = await store.get_user("alice")
    assert user is not None and user.disabled
    assert await store.set_disabled("alice", False)
    assert await store.check_password("alice", PASSWORD) is not None
    assert not await store.set_disabled("nobody")


async def test_check_password_rehashes_old_parameters(store_url: str) -> None:
    old = await Store.open(store_url, hasher=_cheap())
    await old.add_user("alice", "agent", PASSWORD)
    await old.close()
    new_hasher = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    store = await Store.open(store_url, hasher=new_hasher)
    try:
        assert await store.check_password("alice", PASSWORD) is not None
        async with store.engine.connect() as conn:
            stored = (await conn.execute(select(UserRow.password_hash))).scalar_one()
        assert not new_hasher.check_needs_rehash(stored)
        assert "t=2" in stored
        assert await store.check_password("alice", PASSWORD) is not None
        assert await store.check_password("alice", "wrong password") is None
    finally:
        await store.close()


async def test_default_hasher_is_argon2_cffi_default(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        assert store._hasher.time_cost == PasswordHasher().time_cost
        assert store._hasher.memory_cost == PasswordHasher().memory_cost
    finally:
        await store.close()


async def test_set_password_ends_sessions(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    await store.add_user("bob", "agent", PASSWORD)
    s_alice = await store.create_session("alice", 60)
    s_bob = await store.create_session("bob", 60)
    assert await store.set_password("alice", "new password!")
    assert await store.check_password("alice", PASSWORD) is None
    assert await store.check_password("alice", "new password!") is not None
    assert await store.get_session(s_alice.id) is None
    assert await store.get_session(s_bob.id) is not None
    assert not await store.set_password("nobody", "new password!")
    with pytest.raises(ValueError, match="too short"):
        await store.set_password("alice", "short")
    assert await store.check_password("alice", "new password!") is not None


async def test_set_role_ends_sessions_and_links_agent(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD, agent="a1")
    session = await store.create_session("alice", 60)
    assert await store.set_role("alice", "supervisor")
    user = await store.get_user("alice")
    assert user is not None and (user.role, user.agent) == ("supervisor", None)
    assert await store.get_session(session.id) is None
    assert await store.set_role("alice", "agent", agent="a2")
    user = await store.get_user("alice")
    assert user is not None and (user.role, user.agent) == ("agent", "a2")
    assert not await store.set_role("nobody", "qa")
    with pytest.raises(ValueError, match="unknown role"):
        await store.set_role("alice", "root")
    user = await store.get_user("alice")
    assert user is not None and user.role == "agent"


async def test_has_admin(store: Store) -> None:
    assert not await store.has_admin()
    await store.add_user("sup", "supervisor", PASSWORD)
    assert not await store.has_admin()
    await store.add_user("root", "admin", PASSWORD)
    assert await store.has_admin()
    await store.set_disabled("root")
    assert not await store.has_admin()
    await store.set_role("sup", "admin")
    assert await store.has_admin()


# --- API tokens -------------------------------------------------------------------------------


async def test_token_round_trip_stores_only_the_hash(store: Store) -> None:
    alice = await store.add_user("alice", "qa", PASSWORD)
    token, secret = await store.create_token("alice", "grafana", now=T0)
    assert secret.startswith("sbt_") and len(secret) > 40
    assert (token.user, token.name, token.created_at) == ("alice", "grafana", T0)
    assert token.last_used_at is None and not token.revoked
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(ApiTokenRow.token_hash))).scalar_one()
        dump = " ".join(
            str(v) for row in (await conn.execute(text("SELECT * FROM api_tokens"))) for v in row
        )
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump
    assert await store.token_user(secret, now=T0) == alice
    assert await store.token_user(secret + "x", now=T0) is None
    assert await store.token_user("", now=T0) is None


async def test_create_token_for_unknown_user(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.create_token("nobody")
    assert await store.list_tokens() == []


async def test_tokens_are_distinct(store: Store) -> None:
    await store.add_user("alice", "qa", PASSWORD)
    (t1, s1), (t2, s2) = await store.create_token("alice"), await store.create_token("alice")
    assert s1 != s2 and t1.id != t2.id


async def test_revoked_token_and_disabled_user(store: Store) -> None:
    await store.add_user("alice", "qa", PASSWORD)
    await store.add_user("bob", "qa", PASSWORD)
    t_alice, s_alice = await store.create_token("alice")
    _, s_bob = await store.create_token("bob")
    assert await store.revoke_token(t_alice.id)
    assert await store.revoke_token(t_alice.id)  # already revoked: still True
    assert not await store.revoke_token(t_alice.id + 1000)
    assert await store.token_user(s_alice) is None
    assert await store.token_user(s_bob) is not None
    await store.set_disabled("bob")
    assert await store.token_user(s_bob) is None
    await store.set_disabled("bob", False)
    assert await store.token_user(s_bob) is not None
    listed = {t.user: t for t in await store.list_tokens()}
    assert listed["alice"].revoked and not listed["bob"].revoked


async def test_token_last_used_written_at_most_once_a_minute(store: Store) -> None:
    await store.add_user("alice", "qa", PASSWORD)
    _, secret = await store.create_token("alice", now=T0)

    async def last_used() -> datetime | None:
        [t] = await store.list_tokens()
        return t.last_used_at

    assert await last_used() is None
    await store.token_user(secret, now=T0 + timedelta(seconds=5))
    assert await last_used() == T0 + timedelta(seconds=5)
    await store.token_user(secret, now=T0 + timedelta(seconds=30))
    assert await last_used() == T0 + timedelta(seconds=5)
    await store.token_user(secret, now=T0 + timedelta(seconds=64))
    assert await last_used() == T0 + timedelta(seconds=5)
    await store.token_user(secret, now=T0 + timedelta(seconds=65))
    assert await last_used() == T0 + timedelta(seconds=65)


async def test_list_tokens(store: Store) -> None:
    await store.add_user("alice", "qa", PASSWORD)
    await store.add_user("bob", "admin", PASSWORD)
    a, _ = await store.create_token("alice", "one", now=T0)
    b, _ = await store.create_token("bob", now=T0 + timedelta(minutes=1))
    assert await store.list_tokens() == [a, b]
    assert b.name == ""


# --- sessions ---------------------------------------------------------------------------------


async def test_session_round_trip(store: Store) -> None:
    alice = await store.add_user("alice", "agent", PASSWORD, agent="a1")
    s = await store.create_session("alice", 480, now=T0)
    assert s.user == alice
    assert (s.created_at, s.expires_at) == (T0, T0 + timedelta(minutes=480))
    assert len(s.id) >= 40 and len(s.csrf_token) >= 40 and s.id != s.csrf_token
    assert await store.get_session(s.id, now=T0 + timedelta(minutes=1)) == s
    other = await store.create_session("alice", 480, now=T0)
    assert other.id != s.id and other.csrf_token != s.csrf_token
    async with store.engine.connect() as conn:
        ids = set((await conn.execute(select(SessionRow.id))).scalars())
    assert s.id not in ids and hashlib.sha256(s.id.encode()).hexdigest() in ids


async def test_session_expires(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    s = await store.create_session("alice", 10, now=T0)
    assert await store.get_session(s.id, now=T0 + timedelta(minutes=9, seconds=59)) is not None
    assert await store.get_session(s.id, now=T0 + timedelta(minutes=10)) is None
    assert await store.get_session(s.id, now=T0 + timedelta(days=1)) is None


async def test_session_sees_role_change_and_disable(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    s = await store.create_session("alice", 60, now=T0)
    # A direct change that does not end the session (no API path does this, but the
    # user must be read afresh on every lookup).
    async with store.engine.begin() as conn:
        await conn.execute(UserRow.__table__.update().values(role="qa"))  # type: ignore[attr-defined]
    got = await store.get_session(s.id, now=T0)
    assert got is not None and got.user.role == "qa"
    async with store.engine.begin() as conn:
        await conn.execute(UserRow.__table__.update().values(disabled=True))  # type: ignore[attr-defined]
    assert await store.get_session(s.id, now=T0) is None


async def test_create_session_unknown_or_disabled_user(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.create_session("nobody", 60)
    await store.add_user("alice", "agent", PASSWORD)
    await store.set_disabled("alice")
    with pytest.raises(LookupError):
        await store.create_session("alice", 60)


async def test_delete_and_purge_sessions(store: Store) -> None:
    await store.add_user("alice", "agent", PASSWORD)
    gone = await store.create_session("alice", 60, now=T0)
    await store.delete_session(gone.id)
    await store.delete_session(gone.id)  # twice: no error
    await store.delete_session("no such session")
    assert await store.get_session(gone.id, now=T0) is None
    short = await store.create_session("alice", 5, now=T0)
    long = await store.create_session("alice", 60, now=T0)
    assert await store.purge_expired_sessions(now=T0 + timedelta(minutes=4)) == 0
    assert await store.purge_expired_sessions(now=T0 + timedelta(minutes=5)) == 1
    assert await store.get_session(short.id, now=T0) is None
    assert await store.get_session(long.id, now=T0) is not None
    assert await store.purge_expired_sessions(now=T0 + timedelta(minutes=5)) == 0


# --- audit log --------------------------------------------------------------------------------


def _audit(minute: int, user: str = "admin", **detail: object) -> AuditEntry:
    return AuditEntry(
        time=T0 + timedelta(minutes=minute),
        user=user,
        address="127.0.0.1",
        action="POST /api/users",
        target=f"user{minute}",
        detail=dict(detail),
    )


async def test_audit_round_trip(store: Store) -> None:
    entry = _audit(0, role="agent", nested={"a": [1, 2]}, when=T0)
    entry_id = await store.add_audit(entry)
    items, total = await store.list_audit()
    assert total == 1
    [got] = items
    assert got.id == entry_id
    assert (got.time, got.user, got.address, got.action, got.target) == (
        entry.time,
        "admin",
        "127.0.0.1",
        "POST /api/users",
        "user0",
    )
    # JSON: a datetime comes back as its str.
    assert got.detail == {"role": "agent", "nested": {"a": [1, 2]}, "when": str(T0)}


async def test_audit_filters_and_paging(store: Store) -> None:
    for minute in range(10):
        await store.add_audit(_audit(minute, user="alice" if minute % 2 else "bob"))
    items, total = await store.list_audit(limit=3)
    assert total == 10
    assert [e.target for e in items] == ["user9", "user8", "user7"]
    items, total = await store.list_audit(offset=9, limit=3)
    assert (total, [e.target for e in items]) == (10, ["user0"])
    items, total = await store.list_audit(offset=20)
    assert (items, total) == ([], 10)
    items, total = await store.list_audit(user="alice", limit=2)
    assert total == 5 and [e.target for e in items] == ["user9", "user7"]
    items, total = await store.list_audit(
        since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5)
    )
    assert total == 3 and [e.target for e in items] == ["user4", "user3", "user2"]
    items, total = await store.list_audit(since=T0 + timedelta(minutes=3), user="bob")
    assert total == 3 and [e.target for e in items] == ["user8", "user6", "user4"]
    with pytest.raises(ValueError):
        await store.list_audit(offset=-1)


async def test_audit_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        AuditEntry(datetime(2026, 1, 1), "u", "a", "x", "t", {})
