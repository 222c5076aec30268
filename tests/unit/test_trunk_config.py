"""The `trunks:` section and outbound rules that name trunks (issue 16)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config

# The issue's example, as written.
EXAMPLE = """\
trunks:
  carrier:
    host: 127.0.0.1          # the carrier's proxy/registrar (name or address)
    port: 5062
    transport: udp           # udp | tcp | tls
    username: sbtrunk        # digest credentials (REGISTER, and challenged INVITEs/BYEs)
    password: trunkpw
    register: true           # false: an IP-authenticated trunk
    max_channels: 30
  backup:
    host: 127.0.0.1
    port: 5064
    register: false          # IP-authenticated: calls from this host are accepted as this trunk
queues:
  support: {}
dialplan:
  inbound:
    - {did: "4100", destination: {kind: queue, target: support}}
  outbound:
    - {pattern: "_9.", strip: 1, trunks: [carrier, backup]}
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "switchboard.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return [str(p).split("switchboard.yaml:", 1)[1] for p in info.value.problems]


def test_the_issue_example_loads(tmp_path: Path) -> None:
    cfg = _load(tmp_path, EXAMPLE)
    carrier = cfg.trunks["carrier"]  # type: ignore[attr-defined]
    assert (carrier.host, carrier.port, carrier.registers, carrier.max_channels) == (
        "127.0.0.1",
        5062,
        True,
        30,
    )
    assert cfg.trunks["backup"].username is None  # type: ignore[attr-defined]
    rule = cfg.dialplan.outbound[0]  # type: ignore[attr-defined]
    assert rule.trunk_order == ["carrier", "backup"]


def test_unknown_trunks_are_reported_where_they_are_named(tmp_path: Path) -> None:
    text = EXAMPLE.replace("trunks: [carrier, backup]", "trunks: [carrier, bakup]")
    text += '    - {pattern: "_00.", trunk: nowhere}\n'
    assert _problems(tmp_path, text) == [
        "20:52: dialplan.outbound[0].trunks[1]: unknown trunk 'bakup'",
        "21:32: dialplan.outbound[1].trunk: unknown trunk 'nowhere'",
    ]


@pytest.mark.parametrize(
    ("trunk", "message"),
    [
        ("{host: 127.0.0.1, register: true}", "register: true needs username and password"),
        ("{host: 127.0.0.1, username: u}", "give both username and password, or neither"),
        ("{host: 127.0.0.1, acl: [10.0.0.0/33]}", "is not an address or CIDR network"),
        ("{host: 127.0.0.1, transport: sctp}", "transport"),
        ("{host: 127.0.0.1, ca_file: ca.pem}", "tls only"),
        ("{host: 'sip:carrier'}", "neither an IP address nor a host name"),
        ("{host: 127.0.0.1, dids: ['4100'], caller_id: '4200'}", "not one of this trunk's dids"),
        ("{host: 127.0.0.1, expires: 10}", "expires"),
    ],
)
def test_bad_trunks_are_refused(tmp_path: Path, trunk: str, message: str) -> None:
    problems = _problems(tmp_path, f"trunks:\n  t: {trunk}\n")
    assert len(problems) == 1 and message in problems[0], problems


def test_trunk_and_trunks_together_are_refused(tmp_path: Path) -> None:
    text = EXAMPLE.replace("trunks: [carrier, backup]", "trunk: carrier, trunks: [backup]")
    problems = _problems(tmp_path, text)
    assert len(problems) == 1 and "not both" in problems[0], problems


def test_a_queue_may_overflow_to_a_number_an_outbound_rule_dials(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        EXAMPLE.replace("  support: {}", '  support: {overflow: "number:90612345678"}'),
    )
    assert cfg.queues["support"].overflow == "number:90612345678"  # type: ignore[attr-defined]


def test_a_queue_overflow_to_a_number_no_rule_dials_is_refused(tmp_path: Path) -> None:
    text = EXAMPLE.replace("  support: {}", '  support: {overflow: "number:0612345678"}')
    with pytest.raises(ConfigError, match=r"no dialplan\.outbound rule dials '0612345678'"):
        _load(tmp_path, text)


def test_caller_id_privacy_and_agent_class_keys_load(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        '    - {pattern: "_9.", strip: 1, trunks: [carrier, backup]}',
        '    - {pattern: "_9.", strip: 1, trunks: [carrier, backup], caller_id: "4100",'
        " privacy: true}\n  system_class_of_service: local",
    )
    text += (
        "extensions:\n"
        '  "1001": {password: pw1, caller_id: "4100", hide_caller_id: true}\n'
        "agents:\n"
        '  alice: {extensions: ["1001"], class_of_service: international}\n'
    )
    cfg: Any = _load(tmp_path, text)
    rule = cfg.dialplan.outbound[0]
    assert (rule.caller_id, rule.privacy) == ("4100", True)
    assert cfg.dialplan.system_class_of_service == "local"
    ext = cfg.extensions["1001"]
    assert (ext.caller_id, ext.hide_caller_id) == ("4100", True)
    assert cfg.agents["alice"].class_of_service == "international"
    with pytest.raises(ConfigError, match="class_of_service"):
        _load(tmp_path, text.replace("class_of_service: international", "class_of_service: x"))


def test_a_number_destination_needs_a_rule_that_dials_it(tmp_path: Path) -> None:
    ok = EXAMPLE.replace("{kind: queue, target: support}", '{kind: number, target: "90612345678"}')
    cfg: Any = _load(tmp_path, ok)
    assert cfg.dialplan.inbound[0].destination.target == "90612345678"
    with pytest.raises(ConfigError, match=r"no dialplan\.outbound rule dials '0612345678'"):
        _load(tmp_path, ok.replace('"90612345678"', '"0612345678"'))
    with pytest.raises(ConfigError, match="must be digits"):
        _load(tmp_path, ok.replace('"90612345678"', '"mobile"'))
