"""The write-behind queue between the SIP core and the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pbx.features import ExtensionSettings
from pbx.persistence import CallDetail, StoredBinding, WriteBehind


class FakeStore:
    """An in-memory ``pbx.persistence.Persistence``."""

    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[tuple[list[StoredBinding], list[tuple[str, str]]]] = []
        self.calls: list[list[CallDetail]] = []
        self.settings: list[dict[str, ExtensionSettings]] = []
        self.fail_times = fail_times

    async def apply_bindings(
        self, saves: list[StoredBinding], deletes: list[tuple[str, str]]
    ) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise OSError("database is locked")
        self.batches.append((saves, deletes))

    async def load_bindings(self) -> list[StoredBinding]:
        return []

    async def save_calls(self, details: list[CallDetail]) -> None:
        self.calls.append(details)

    async def save_settings(self, settings: dict[str, ExtensionSettings]) -> None:
        self.settings.append(settings)

    async def load_settings(self) -> dict[str, ExtensionSettings]:
        return {}


def binding(uri: str, cseq: int) -> StoredBinding:
    return StoredBinding("1001", uri, ("127.0.0.1", 5060), "UDP", "c", cseq, 1e9, "ua")


def detail(n: int) -> CallDetail:
    t = datetime.now(UTC)
    return CallDetail(
        f"call-{n}", "1001", "1002", t, None, t, "no_answer", "NO ANSWER", "system", 480
    )


async def test_changes_coalesce_into_one_transaction() -> None:
    store = FakeStore()
    wb = WriteBehind(store, interval=0.01)
    wb.binding_saved(binding("sip:a@h", 1))
    wb.binding_saved(binding("sip:a@h", 2))  # refresh before the flush: written once
    wb.binding_saved(binding("sip:b@h", 1))
    wb.binding_removed("1001", "sip:b@h")  # removal cancels the pending save
    wb.call_ended(detail(1))
    wb.call_ended(detail(2))
    await asyncio.sleep(0.05)
    assert len(store.batches) == 1
    saves, deletes = store.batches[0]
    assert [(b.contact_uri, b.cseq) for b in saves] == [("sip:a@h", 2)]
    assert deletes == [("1001", "sip:b@h")]
    assert [[d.call_id for d in batch] for batch in store.calls] == [["call-1", "call-2"]]
    assert wb.pending == 0


async def test_failed_flush_is_retried_and_nothing_is_lost() -> None:
    store = FakeStore(fail_times=1)
    wb = WriteBehind(store, interval=0.01)
    wb.binding_saved(binding("sip:a@h", 1))
    wb.call_ended(detail(1))
    await asyncio.sleep(0.015)  # first flush fails
    wb.binding_saved(binding("sip:a@h", 2))  # a newer change arrives meanwhile
    await asyncio.sleep(0.06)
    assert [b.cseq for b in store.batches[-1][0]] == [2]
    assert [d.call_id for batch in store.calls for d in batch] == ["call-1"]


async def test_close_flushes_everything() -> None:
    store = FakeStore()
    wb = WriteBehind(store, interval=60)
    wb.call_ended(detail(7))
    await wb.close()
    assert [d.call_id for batch in store.calls for d in batch] == ["call-7"]


class SlowStore(FakeStore):
    """A store whose commit of call records takes until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def save_calls(self, details: list[CallDetail]) -> None:
        await self.release.wait()
        self.release.clear()
        self.calls.append(details)


async def test_a_call_record_is_acknowledged_only_after_its_commit() -> None:
    store = SlowStore()
    wb = WriteBehind(store, interval=60)  # no interval: call records commit at once
    first = wb.call_ended(detail(1))
    await asyncio.sleep(0.01)
    assert not first.done() and store.calls == []  # the commit is still running
    store.release.set()
    await asyncio.wait_for(first, 1)
    assert [d.call_id for d in store.calls[0]] == ["call-1"]


async def test_records_arriving_during_a_commit_share_the_next_one() -> None:
    store = SlowStore()
    wb = WriteBehind(store, interval=60)
    first = wb.call_ended(detail(1))
    await asyncio.sleep(0.01)  # batch 1 is being committed
    later = [wb.call_ended(detail(n)) for n in (2, 3, 4)]
    store.release.set()
    await asyncio.wait_for(first, 1)
    assert not any(f.done() for f in later)  # they wait for their own batch
    await asyncio.sleep(0.01)
    store.release.set()
    await asyncio.wait_for(asyncio.gather(*later), 1)
    assert [[d.call_id for d in b] for b in store.calls] == [
        ["call-1"],
        ["call-2", "call-3", "call-4"],  # one commit for everything that waited
    ]


async def test_a_record_whose_commit_failed_is_acknowledged_after_the_retry() -> None:
    store = FakeStore(fail_times=1)  # apply_bindings fails once: the whole flush fails
    wb = WriteBehind(store, interval=0.02)
    wb.binding_saved(binding("sip:a@h", 1))
    done = wb.call_ended(detail(1))
    await asyncio.sleep(0.01)
    assert not done.done()  # the failed commit acknowledged nothing
    await asyncio.wait_for(done, 1)
    assert [d.call_id for batch in store.calls for d in batch] == ["call-1"]
