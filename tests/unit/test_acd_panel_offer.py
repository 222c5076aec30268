"""acd.host and the agent panel: declining a ringing offer from the panel is a missed
offer (as a 486/603 from the phone), and a transfer's queue-log line names its target."""

from __future__ import annotations

from acd import AgentState
from acd.host import AcdHost
from tests.unit import test_acd_host as harness
from tests.unit.fake_control import FakeCallControl
from tests.unit.test_acd_host import (
    ALICE,
    BOB,
    CUSTOMER,
    Clock,
    Logs,
    log_in,
    queue_line,
    queue_log,
    settle,
    state,
)

# The ACD host's fixtures (a fake seam, the host, its clock and logs).
clock = harness.clock
control = harness.control
host = harness.host
logs = harness.logs


async def test_rejecting_from_the_panel_stops_the_ringing_and_offers_the_next_agent(
    control: FakeCallControl, host: AcdHost, clock: Clock, logs: Logs
) -> None:
    await log_in(control, ALICE)
    clock.advance(1)
    await log_in(control, BOB)
    assert host.reject_offer("alice") is None  # nothing rings yet
    call = control.arrive("queue", "support", CUSTOMER, "600")
    assert control.named("offer") == [("offer", call, "alice/1001", ALICE)]

    clock.advance(2)
    assert host.reject_offer("alice") == call
    assert ("cancel_offer", call, "alice/1001") in control.commands
    await settle()
    assert ("RINGNOANSWER", call, "alice") in queue_log(logs)
    assert control.named("offer")[-1] == ("offer", call, "bob/1002", BOB)
    assert state(host, "alice") is AgentState.AVAILABLE
    assert state(host, "bob") is AgentState.RINGING
    assert host.reject_offer("alice") is None


async def test_a_transfer_names_its_target_in_the_queue_log(
    control: FakeCallControl, host: AcdHost, logs: Logs
) -> None:
    await log_in(control, ALICE)
    call = control.arrive("queue", "support", CUSTOMER, "600")
    control.answer_offer(call, "alice/1001")
    control.end(call, side="callee", cause="transferred", transferred_to="2002")
    assert queue_log(logs)[-1] == ("TRANSFER", call, "alice")
    assert queue_line(logs, "TRANSFER")[5].startswith("2002")
