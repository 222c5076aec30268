"""web.metrics: the Prometheus text of a real server (SIP over loopback UDP), real call
events and a real ACD host on the fake call control, parsed back with prometheus_client's
own parser."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from acd import AgentConfig, QueueConfig
from acd.host import AcdHost, AcdSettings
from pbx.digest import build_authorization, choose_challenge
from pbx.events import CallEnded
from pbx.message import Response, parse_message
from pbx.server import Extension, ServerSettings, SipServer
from pbx.stack import ListenSpec
from pbx.trunks import Trunk
from tests.unit.call_harness import FakeMedia
from tests.unit.fake_control import FakeCallControl
from web.metrics import Metrics, ServerSource

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def server(**kw: Any) -> SipServer:
    return SipServer(
        ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 0),)),
        {"1001": Extension("1001", "Alice", "right")},
        media=FakeMedia(),
        **kw,
    )


class Phone(asyncio.DatagramProtocol):
    """A UDP socket that sends raw SIP and collects what comes back."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[Response] = asyncio.Queue()
        self.port = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        assert isinstance(msg, Response)
        self.replies.put_nowait(msg)

    async def reply(self) -> Response:
        async with asyncio.timeout(3):
            return await self.replies.get()

    def request(
        self,
        method: str,
        *,
        branch: str | None = None,
        cseq: int = 1,
        call_id: str = "c1",
        extra: tuple[str, ...] = (),
        to: str = "1001",
    ) -> bytes:
        lines = [
            f"{method} sip:{to}@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch="
            + (branch or "z9hG4bK" + secrets.token_hex(6)),
            "Max-Forwards: 70",
            "From: <sip:1001@127.0.0.1>;tag=f1",
            f"To: <sip:{to}@127.0.0.1>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:1001@127.0.0.1:{self.port}>",
            *extra,
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()


@pytest.fixture
async def running() -> AsyncIterator[tuple[SipServer, Phone, Callable[[bytes], None]]]:
    sb = server()
    await sb.start()
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    phone.port = transport.get_extra_info("sockname")[1]
    address = sb.stack.local_address("UDP")
    try:
        yield sb, phone, lambda data: transport.sendto(data, address)
    finally:
        transport.close()
        await sb.stop()


async def test_sip_requests_and_responses_are_counted_on_the_wire(
    running: tuple[SipServer, Phone, Callable[[bytes], None]],
) -> None:
    sb, phone, send = running
    metrics = Metrics(sb, None)
    try:
        options = phone.request("OPTIONS", branch="z9hG4bKopt1")
        send(options)
        assert (await phone.reply()).status == 200
        send(options)  # a retransmission: the transaction answers it again
        assert (await phone.reply()).status == 200
        send(phone.request("FROB"))  # a method we do not know: OTHER, not a new label
        assert (await phone.reply()).status == 501
        # Unparsable (two Content-Length headers): a stateless 400.
        send(phone.request("OPTIONS", extra=("Content-Length: 10",)))
        assert (await phone.reply()).status == 400

        # REGISTER: challenged, then accepted; one registered contact.
        send(phone.request("REGISTER", call_id="r1", extra=("Expires: 600",)))
        challenge = await phone.reply()
        assert challenge.status == 401
        value_ = choose_challenge(challenge.get_all("WWW-Authenticate"))
        auth = build_authorization("REGISTER", "sip:1001@127.0.0.1", "1001", "right", value_)
        send(
            phone.request(
                "REGISTER", call_id="r1", cseq=2, extra=("Expires: 600", f"Authorization: {auth}")
            )
        )
        assert (await phone.reply()).status == 200

        samples = scrape(metrics)
    finally:
        metrics.close()
    requests = {
        labels[0][1]: v
        for (name, labels), v in samples.items()
        if name == "switchboard_sip_requests_total"
    }
    assert {m: n for m, n in requests.items() if n} == {"OPTIONS": 2, "OTHER": 1, "REGISTER": 2}
    assert requests["INVITE"] == 0  # every known method is there from the start
    responses = {
        labels[0][1]: v
        for (name, labels), v in samples.items()
        if name == "switchboard_sip_responses_total"
    }
    # The retransmitted OPTIONS was answered by resending the same 200: sent once.
    assert responses == {"200": 2, "400": 1, "401": 1, "501": 1}
    assert value(samples, "switchboard_registrations") == 1
    assert value(samples, "switchboard_calls_active") == 0
    assert sb.registration_count() == 1


async def test_calls_are_counted_by_direction_and_disposition_with_their_loss() -> None:
    sb = server()
    metrics = Metrics(sb, None)
    publish = sb.b2bua.events.publish
    publish(CallEnded("c1", "1001", "1002", "caller", "normal_clearing", "ANSWERED", True))
    publish(
        CallEnded(
            "c2",
            "5550100",
            "1001",
            "callee",
            "normal_clearing",
            "ANSWERED",
            True,
            direction="inbound",
            caller_loss=0.03,
            callee_loss=0.0,
        )
    )
    publish(
        CallEnded("c3", "1001", "5550199", "caller", "busy", "BUSY", False, direction="outbound")
    )
    samples = scrape(metrics)
    calls = "switchboard_calls_total"
    assert value(samples, calls, direction="internal", disposition="ANSWERED") == 1
    assert value(samples, calls, direction="inbound", disposition="ANSWERED") == 1
    assert value(samples, calls, direction="outbound", disposition="BUSY") == 1
    loss = "switchboard_rtp_packet_loss_ratio"
    assert value(samples, f"{loss}_count") == 2  # two legs had media; the others none
    assert value(samples, f"{loss}_sum") == pytest.approx(0.03)
    assert value(samples, f"{loss}_bucket", le="0.0") == 1
    assert value(samples, f"{loss}_bucket", le="0.02") == 1
    assert value(samples, f"{loss}_bucket", le="0.05") == 2

    metrics.close()  # unsubscribed: later calls are not counted
    publish(CallEnded("c4", "1001", "1002", "caller", "normal_clearing", "ANSWERED", True))
    samples = scrape(metrics)
    assert value(samples, calls, direction="internal", disposition="ANSWERED") == 1


async def test_trunks_are_up_when_usable() -> None:
    trunks = {
        "static": Trunk("static", "127.0.0.1", registers=False, qualify=0),
        # Registers, but has not (the server is not started): not usable.
        "carrier": Trunk("carrier", "127.0.0.1", username="u", password="p", registers=True),
    }
    sb = server(trunks=trunks)
    metrics = Metrics(sb, None)
    samples = scrape(metrics)
    assert value(samples, "switchboard_trunk_up", trunk="static") == 1
    assert value(samples, "switchboard_trunk_up", trunk="carrier") == 0
    # Without an ACD there are no queue or agent series.
    assert not any(name.startswith("switchboard_queue") for name, _ in samples)
    assert not any(name == "switchboard_agents" for name, _ in samples)
    # process_* from prometheus_client's process collector (on Linux).
    assert value(samples, "process_open_fds") > 0


async def test_queues_and_agents_come_from_the_acd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_700_000_000.0]
    monkeypatch.setattr("acd.host.time.time", lambda: now[0])
    control = FakeCallControl(extensions=["1001", "1002", "5550100"])
    host = AcdHost(
        cast(Any, control),
        None,
        AcdSettings(
            agents=[
                AgentConfig("alice", extensions=("1001",)),
                AgentConfig("bob", extensions=("1002",)),
            ],
            queues=[QueueConfig("support"), QueueConfig("sales")],
            config_dir=tmp_path,
        ),
    )
    metrics = Metrics(cast(ServerSource, _WithControl(server(), control)), host)
    control.arrive("queue", "support", "5550100", "600")
    now[0] += 30
    control.arrive("queue", "support", "5550101", "600")
    now[0] += 12
    host.login("bob")  # rings at once with the first caller
    samples = scrape(metrics)
    assert value(samples, "switchboard_queue_waiting", queue="support") == 2
    assert value(samples, "switchboard_queue_longest_wait_seconds", queue="support") == 42
    assert value(samples, "switchboard_queue_waiting", queue="sales") == 0
    assert value(samples, "switchboard_queue_longest_wait_seconds", queue="sales") == 0
    agents = {
        labels[0][1]: v for (name, labels), v in samples.items() if name == "switchboard_agents"
    }
    assert agents == {
        "LOGGED_OUT": 1,
        "AVAILABLE": 0,
        "NOT_READY": 0,
        "RINGING": 1,
        "ON_CALL": 0,
        "WRAP_UP": 0,
    }
    metrics.close()


class _WithControl:
    """A real server whose call events come from the fake seam the ACD host runs on."""

    def __init__(self, sb: SipServer, control: FakeCallControl) -> None:
        self._sb = sb
        self.control = control

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sb, name)


def test_the_sip_server_is_a_metrics_source() -> None:
    # Typed: mypy checks SipServer against the protocol web.metrics reads.
    source: ServerSource = server()
    assert source.sip_counts() == (dict.fromkeys(source.sip_counts()[0], 0), {})
