"""Registrar (RFC 3261 §10.3) and location store, driven with ``now`` directly."""

from __future__ import annotations

import pytest

from pbx.location import LocationStore
from pbx.message import Request, parse_message
from pbx.registrar import Registrar

SRC = ("192.0.2.10", 5070)


def register(
    contacts: list[str],
    *,
    expires: int | None = None,
    call_id: str = "reg-1@phone",
    cseq: int = 1,
    aor: str = "1001",
) -> Request:
    lines = [
        "REGISTER sip:switchboard SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKabc",
        "Max-Forwards: 70",
        f"From: <sip:{aor}@switchboard>;tag=f1",
        f"To: <sip:{aor}@switchboard>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines.append("Content-Length: 0")
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(
        LocationStore(max_contacts_per_aor=3), min_expires=60, max_expires=3600, default_expires=600
    )


def test_add_binding_and_200_lists_it(registrar: Registrar) -> None:
    out = registrar.handle(
        register(["<sip:1001@10.0.0.5:5070>"], expires=300),
        "1001",
        SRC,
        "UDP",
        1000.0,
        "t",
        wall_time=1.7e9,
    )
    assert out.response.status == 200
    assert out.response.get_list("Contact") == ["<sip:1001@10.0.0.5:5070>;expires=300"]
    assert out.response.get("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    (change,) = out.changes
    assert not change.removed and change.contact.source == SRC
    (c,) = registrar.location.lookup("1001", 1000.0)
    assert c.expires_at == 1300.0 and c.transport == "UDP"


def test_default_and_per_contact_expires(registrar: Registrar) -> None:
    registrar.handle(
        register(["<sip:a@h1>", "<sip:b@h2>;expires=120"]), "1001", SRC, "UDP", 0.0, "t"
    )
    got = {c.uri: c.expires_at for c in registrar.location.lookup("1001", 0.0)}
    assert got == {"sip:a@h1": 600.0, "sip:b@h2": 120.0}


def test_interval_too_brief_is_423_with_min_expires(registrar: Registrar) -> None:
    out = registrar.handle(register(["<sip:a@h1>"], expires=30), "1001", SRC, "UDP", 0.0, "t")
    assert out.response.status == 423
    assert out.response.get("Min-Expires") == "60"
    assert registrar.location.lookup("1001", 0.0) == []


def test_expiry_above_max_is_shortened(registrar: Registrar) -> None:
    out = registrar.handle(register(["<sip:a@h1>"], expires=99999), "1001", SRC, "UDP", 0.0, "t")
    assert out.response.get_list("Contact") == ["<sip:a@h1>;expires=3600"]


def test_refresh_remove_and_wildcard(registrar: Registrar) -> None:
    loc = registrar.location
    registrar.handle(
        register(["<sip:a@h1>", "<sip:b@h2>"], expires=300), "1001", SRC, "UDP", 0.0, "t"
    )
    registrar.handle(register(["<sip:a@h1>"], expires=600, cseq=2), "1001", SRC, "UDP", 100.0, "t")
    assert {c.uri: c.expires_at for c in loc.lookup("1001", 100.0)} == {
        "sip:a@h1": 700.0,
        "sip:b@h2": 300.0,
    }
    out = registrar.handle(
        register(["<sip:b@h2>"], expires=0, cseq=3), "1001", SRC, "UDP", 101.0, "t"
    )
    assert [c.uri for c in loc.lookup("1001", 101.0)] == ["sip:a@h1"]
    assert [ch.removed for ch in out.changes] == [True]
    out = registrar.handle(register(["*"], expires=0, cseq=4), "1001", SRC, "UDP", 102.0, "t")
    assert out.response.status == 200 and loc.lookup("1001", 102.0) == []
    assert out.response.get("Contact") is None


def test_wildcard_needs_expires_zero_and_no_other_contact(registrar: Registrar) -> None:
    assert (
        registrar.handle(register(["*"], expires=60), "1001", SRC, "UDP", 0.0, "t").response.status
        == 400
    )
    assert (
        registrar.handle(
            register(["*", "<sip:a@h>"], expires=0), "1001", SRC, "UDP", 0.0, "t"
        ).response.status
        == 400
    )


def test_out_of_order_cseq_is_refused(registrar: Registrar) -> None:
    registrar.handle(register(["<sip:a@h1>"], expires=300, cseq=5), "1001", SRC, "UDP", 0.0, "t")
    out = registrar.handle(
        register(["<sip:a@h1>"], expires=0, cseq=4), "1001", SRC, "UDP", 1.0, "t"
    )
    assert out.response.status == 500
    assert len(registrar.location.lookup("1001", 1.0)) == 1


def test_query_without_contact_lists_bindings(registrar: Registrar) -> None:
    registrar.handle(register(["<sip:a@h1>"], expires=300), "1001", SRC, "UDP", 0.0, "t")
    out = registrar.handle(register([], cseq=2), "1001", SRC, "UDP", 10.0, "t")
    assert out.response.get_list("Contact") == ["<sip:a@h1>;expires=290"]
    assert out.changes == []


def test_contact_limit(registrar: Registrar) -> None:
    out = registrar.handle(
        register([f"<sip:p{i}@h>" for i in range(4)], expires=300), "1001", SRC, "UDP", 0.0, "t"
    )
    assert out.response.status == 403
    assert registrar.location.lookup("1001", 0.0) == []


def test_bad_expires_is_400(registrar: Registrar) -> None:
    out = registrar.handle(register(["<sip:a@h>;expires=soon"]), "1001", SRC, "UDP", 0.0, "t")
    assert out.response.status == 400


def test_expire_drops_old_bindings_only() -> None:
    loc = LocationStore()
    reg = Registrar(loc, min_expires=1)
    reg.handle(register(["<sip:a@h1>"], expires=10), "1001", SRC, "UDP", 0.0, "t")
    reg.handle(register(["<sip:b@h2>"], expires=100, call_id="other"), "1001", SRC, "UDP", 0.0, "t")
    assert loc.next_expiry() == 10.0
    assert [c.uri for _, c in loc.expire(10.0)] == ["sip:a@h1"]
    assert [c.uri for c in loc.lookup("1001", 10.0)] == ["sip:b@h2"]
    assert loc.expire(50.0) == []


def test_lookup_orders_by_q(registrar: Registrar) -> None:
    registrar.handle(
        register(["<sip:low@h>;q=0.1", "<sip:high@h>;q=0.9"], expires=300),
        "1001",
        SRC,
        "UDP",
        0.0,
        "t",
    )
    assert [c.uri for c in registrar.location.lookup("1001", 0.0)] == ["sip:high@h", "sip:low@h"]
