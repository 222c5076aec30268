"""ivr.host: the store behind IVR lookups and results (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from crm import CustomerData, Store
from ivr import IvrSession, parse_flow
from ivr.host import IvrHost
from pbx.dialplan import Dialplan
from tests.unit.fake_control import FakeCallControl


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


class Caller:
    caller = "+15551234567"
    did = "4000"

    async def play(self, items: list[Any], interrupt_digits: str) -> str | None:
        return None

    async def collect_digit(self, timeout: float) -> str | None:
        return None

    async def record(self, path: Path, max_seconds: float, beep: bool) -> float:
        return 0.0

    async def transfer(self, destination: str, survey: str | None = None) -> None:
        self.transferred = destination

    async def hangup(self) -> None:
        pass


FLOW = """name: main
start: who
nodes:
  who: {type: lookup, source: customer, next: vip}
  vip:
    type: branch
    conditions: [{variable: customer.grade, equals: A, next: gold}]
    default: other
  gold: {type: extension, extension: "${customer.name}"}
  other: {type: extension, extension: "nobody"}
"""


async def test_customer_lookup_reads_the_store(store: Store, tmp_path: Path) -> None:
    await store.add_customer(CustomerData(name="1009", phone="1 555 123 4567", grade="A"))
    host = IvrHost(cast(Any, FakeCallControl()), store, Dialplan(), {}, tmp_path)
    flow, problems = parse_flow(FLOW, base_dir=tmp_path)
    assert flow is not None, problems
    call = Caller()
    session = IvrSession(flow, call, customer_lookup=host.customer_lookup)
    outcome = await session.start()
    assert outcome.data["extension"] == "1009" and call.transferred == "1009"
    assert session.variables["customer.found"] == "true"
    call.caller = "999"
    outcome = await IvrSession(flow, call, customer_lookup=host.customer_lookup).start()
    assert outcome.data["extension"] == "nobody"
