"""The ACD still finds a caller's grade through the customer store (acd/host.py asks
``Store.find_customer_by_number`` for every queue call whose grade it needs), now with
numbers matched however they were typed and a customer's extra numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm import CustomerData, CustomerNumberData, Store
from tests.unit.fake_control import FakeCallControl
from tests.unit.test_acd_host import (  # noqa: F401  (fixtures)
    ALICE,
    CUSTOMER,
    Clock,
    Logs,
    clock,
    control,
    log_in,
    logs,
    make_host,
    store,
    until,
)


@pytest.mark.parametrize("caller", ["0305550177", "+49305550177", "00861380013800"])
async def test_grade_found_however_the_caller_id_is_typed(
    control: FakeCallControl,  # noqa: F811
    tmp_path: Path,
    clock: Clock,  # noqa: F811
    store: Store,  # noqa: F811
    logs: Logs,  # noqa: F811
    caller: str,
) -> None:
    await store.create_customer(
        CustomerData(
            "Gold Inc",
            "+49 30 555 0177",
            grade="A",
            numbers=(CustomerNumberData("+86 138 0013 800", "mobile"),),
        )
    )
    host = make_host(control, tmp_path, store, grade_priority={"A": 10})
    first = control.arrive("queue", "support", CUSTOMER, "600")
    clock.advance(30)
    gold = control.arrive("queue", "support", caller, "600")
    await until(lambda: gold in host.acd.calls)
    assert host.acd.position(gold) == 1 and host.acd.position(first) == 2
    await log_in(control, ALICE)
    assert control.named("offer") == [("offer", gold, "alice/1001", ALICE)]
