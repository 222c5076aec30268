"""Config schema, loader (exact file:line:column) and first-start defaults."""

from __future__ import annotations

import os
import re
import stat
import textwrap
from pathlib import Path

import pytest

from config import (
    ConfigError,
    ConfigProblem,
    ExtensionConfig,
    SwitchboardConfig,
    ensure_default_config,
    load_config,
    parse_config,
)
from config.defaults import DEFAULT_EXTENSIONS, default_config_text

VALID = """\
sip:
  listen:
    - {transport: udp, host: 0.0.0.0, port: 5060}
    - {transport: tcp, host: 127.0.0.1, port: 5070}
  realm: example
  advertise_host: 192.0.2.1
  registration: {min_expires: 30, max_expires: 7200, default_expires: 300}
  auth:
    algorithms: [MD5]
    max_failures: 3
rtp: {host: 127.0.0.1, ports: [20000, 20099], inactivity_timeout: 15}
store: {url: "postgresql+asyncpg://sb:pw@db.example/switchboard"}
extensions:
  "1001": {name: Alice, password: "s3cret", ring_timeout: 20}
  1002: {password: "x"}
"""


def _write(tmp_path: Path, text: str, name: str = "switchboard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, VALID))
    assert [(x.transport, x.host, x.port) for x in cfg.sip.listen] == [
        ("udp", "0.0.0.0", 5060),
        ("tcp", "127.0.0.1", 5070),
    ]
    assert cfg.sip.realm == "example"
    assert cfg.sip.advertise_host == "192.0.2.1"
    assert cfg.sip.registration.default_expires == 300
    assert cfg.sip.auth.algorithms == ["MD5"]
    assert cfg.sip.auth.max_failures == 3
    assert cfg.sip.auth.nonce_lifetime == 300  # default kept
    assert cfg.rtp.ports == (20000, 20099)
    assert cfg.store.url == "postgresql+asyncpg://sb:pw@db.example/switchboard"
    assert cfg.extensions["1001"].name == "Alice"
    assert cfg.extensions["1001"].ring_timeout == 20
    # An unquoted extension number is accepted as the string "1002".
    assert cfg.extensions["1002"].password == "x"
    assert type(cfg.sip.registration.min_expires) is int  # ruamel scalar types stripped


def test_folder_path_loads_switchboard_yaml(tmp_path: Path) -> None:
    _write(tmp_path, VALID)
    assert load_config(tmp_path).sip.realm == "example"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""))
    assert cfg.sip.realm == "switchboard"
    assert [x.transport for x in cfg.sip.listen] == ["udp", "tcp", "tls"]
    assert cfg.rtp.ports == (10000, 20000)
    assert cfg.extensions == {}


def test_relative_sqlite_path_resolves_against_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    _write(folder, 'store: {url: "sqlite+aiosqlite:///db/sb.db"}')
    cfg = load_config(folder)
    assert cfg.store.url == f"sqlite+aiosqlite:///{(folder / 'db' / 'sb.db').resolve()}"
    _write(folder, 'store: {url: "sqlite+aiosqlite:////abs/sb.db"}')
    assert load_config(folder).store.url == "sqlite+aiosqlite:////abs/sb.db"
    _write(folder, 'store: {url: "sqlite+aiosqlite:///:memory:"}')
    assert load_config(folder).store.url == "sqlite+aiosqlite:///:memory:"


def test_yaml_syntax_error_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  realm: [a\n  user_agent: x\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:13: YAML syntax error:")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  realm: a\n  realm: b\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:3: YAML syntax error:")
    assert "duplicate key" in problem


def test_unknown_key_points_at_key_and_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  realm: a\n  relm: b\n")
    assert _problems(path) == [f"{path}:3:3: sip.relm: unknown key 'relm' (did you mean 'realm'?)"]


def test_unknown_top_level_key_lists_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip: {}\nbananas: 3\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:2:1: bananas: unknown key 'bananas' (allowed: sip, rtp,")


def test_bad_value_type_points_at_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  registration:\n    min_expires: soon\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:18: sip.registration.min_expires: Input should be")


def test_bad_value_in_flow_sequence_item(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  listen:\n    - {transport: udp, port: 70000}\n")
    assert _problems(path) == [
        f"{path}:3:30: sip.listen[0].port: Input should be less than or equal to 65535"
    ]


def test_missing_required_key_points_at_parent_key(tmp_path: Path) -> None:
    path = _write(tmp_path, 'extensions:\n  "1001":\n    name: Alice\n')
    assert _problems(path) == [f"{path}:2:3: extensions.1001: missing required key 'password'"]


def test_all_problems_reported_in_file_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        sip:
          listen: []
          transport: udp
        rtp:
          ports: [10001, 10100]
        extensions:
          10a1: {password: x}
          "1002": {password: ""}
          "1003": {password: 1234}
        """,
    )
    assert _problems(path) == [
        f"{path}:2:11: sip.listen: at least one listen socket is required",
        f"{path}:3:3: sip.transport: unknown key 'transport' (allowed: listen, tls, realm, "
        "advertise_host, user_agent, registration, auth)",
        f"{path}:5:10: rtp.ports: the first RTP port must be even (RFC 3550 §11), got 10001",
        f"{path}:7:3: extensions.10a1: extension '10a1' must be digits only, e.g. '1001'",
        f"{path}:8:22: extensions.1002.password: String should have at least 1 character",
        f"{path}:9:22: extensions.1003.password: Input should be a valid string (put it in quotes)",
    ]


@pytest.mark.parametrize(
    ("rtp", "fragment"),
    [
        ("[10000, 10001]", "too small"),
        ("[20000, 10000]", "reversed"),
        ("[80, 1000]", "privileged"),
        ("[10000, 70000]", "less than or equal to 65535"),
    ],
)
def test_rtp_port_range_checks(rtp: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"rtp:\n  ports: {rtp}\n", "x.yaml")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sip:\n  registration: {min_expires: 600, max_expires: 60}\n", "min_expires <="),
        ("sip:\n  auth: {algorithms: []}\n", "at least one digest algorithm"),
        ("sip:\n  auth: {algorithms: [SHA-512]}\n", "'SHA-256' or 'MD5'"),
        ("sip:\n  advertise_host: 0.0.0.0\n", "not 0.0.0.0"),
        ("sip:\n  listen: [{transport: sctp}]\n", "'udp', 'tcp' or 'tls'"),
        ("sip:\n  listen: [{port: 5060}, {port: 5060}]\n", "duplicate listen socket"),
        ("sip:\n  listen: [{host: 'http://x'}]\n", "neither an IP address"),
        ("store: {url: 'mysql://x/y'}\n", "unsupported driver"),
        ("extensions: {'1001': {password: '   '}}\n", "must not be blank"),
        ("extensions: {'1001': {password: x, ring_timeout: 0}}\n", "greater than or equal to 1"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_semantic_checks(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml")
    assert fragment in str(info.value)


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path / "nope.yaml")
    assert problem.startswith(f"{tmp_path / 'nope.yaml'}:1:1: cannot read config")


def test_config_problem_str() -> None:
    assert str(ConfigProblem("a.yaml", 3, 7, "boom")) == "a.yaml:3:7: boom"


def test_config_is_immutable() -> None:
    cfg = SwitchboardConfig()
    with pytest.raises(Exception, match="frozen"):
        cfg.sip.realm = "x"


def test_shipped_default_yaml_is_valid_and_documented() -> None:
    cfg = parse_config(default_config_text(), "default.yaml")
    # Values are the defaults; the example adds extensions, a conference room, a dialplan,
    # agents and a queue (with the ACD settings' supervisors), and ticket code tables.
    assert cfg == SwitchboardConfig(
        extensions=cfg.extensions,
        conferences=cfg.conferences,
        dialplan=cfg.dialplan,
        acd=cfg.acd,
        agents=cfg.agents,
        queues=cfg.queues,
        tickets=cfg.tickets,
    )
    assert cfg.tickets.types, "the example shows ticket types"
    assert cfg.acd.pause_reasons == SwitchboardConfig().acd.pause_reasons
    assert sorted(cfg.agents) == ["alice", "bob"] and sorted(cfg.queues) == ["support"]
    assert sorted(cfg.conferences) == ["8000"]
    assert sorted(cfg.extensions) == list(DEFAULT_EXTENSIONS)
    # Every key is documented: the nearest non-blank line above it is a comment, or the key is
    # named in a comment (e.g. max_expires in the comment above `registration:`). Extension
    # numbers are documented once as "the key is the extension number".
    lines = default_config_text().splitlines()
    comments = " ".join(line for line in lines if line.strip().startswith("#"))
    for i, line in enumerate(lines):
        match = re.match(r'^\s*(?:- )?"?([A-Za-z0-9_]+)"?:', line)
        if match is None or line.strip().startswith("#"):
            continue
        key = match.group(1)
        above = next(x for x in reversed(lines[:i]) if x.strip())
        documented = above.strip().startswith("#") or re.search(rf"\b{key}\b", comments)
        assert documented or key.isdigit(), f"undocumented key {key!r} on line {i + 1}"


def test_ensure_default_config_creates_once_and_reuses(tmp_path: Path) -> None:
    var = tmp_path / "var"
    path, passwords = ensure_default_config(var)
    assert path == var / "switchboard.yaml"
    assert passwords is not None and sorted(passwords) == list(DEFAULT_EXTENSIONS)
    assert len(set(passwords.values())) == len(DEFAULT_EXTENSIONS)
    assert all(len(p) >= 16 and "change-me" not in p for p in passwords.values())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    cfg = load_config(var)
    assert {n: e.password for n, e in cfg.extensions.items()} == passwords
    assert cfg.store.url == f"sqlite+aiosqlite:///{(var / 'switchboard.db').resolve()}"
    text = path.read_text()
    assert "# Digest password" in text  # comments survive

    again_path, again = ensure_default_config(var)
    assert again_path == path and again is None
    assert path.read_text() == text  # reused, not regenerated


def test_default_passwords_differ_between_installs(tmp_path: Path) -> None:
    _, first = ensure_default_config(tmp_path / "a")
    _, second = ensure_default_config(tmp_path / "b")
    assert first is not None and second is not None
    assert set(first.values()).isdisjoint(second.values())


# --- dialplan ---------------------------------------------------------------------------------

DIALPLAN = """\
extensions:
  "1001": {password: x}
  "1002": {password: x}
conferences:
  "8000": {}
dialplan:
  blacklist:
    - {number: "+8613800000000"}
    - {prefix: "+1900", action: announce, prompt: blocked}
  inbound:
    - {did: "4001", destination: {kind: time_condition, target: office}}
    - {did: "4001", caller: "+8610", destination: {kind: queue, target: vip, priority: 5}}
    - {did: "_40XX", destination: {kind: extension, target: "1002"}}
    - {caller: "+86", destination: {kind: ivr, target: main}}
  regions: {"+1": na, "+44": uk}
  internal:
    - {pattern: "_7XXX", strip: 1, prepend: "1", destination: {kind: voicemail}}
  outbound:
    - {pattern: "_9.", strip: 1, trunk: carrier}
  time_conditions:
    office:
      timezone: Asia/Shanghai
      weekly:
        - {days: mon-fri, hours: "09:00-18:00"}
      holidays:
        - {date: 2025-10-01, until: 2025-10-07, name: National Day}
      calendars: [cn]
      open: {kind: queue, target: sales, skills: [zh]}
      closed: {kind: voicemail, target: "1001"}
  holidays:
    cn:
      - {date: "01-01", name: New Year}
trunks:
  carrier: {host: 127.0.0.1, port: 5062}
"""


def test_dialplan_loads_and_routes(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from app.settings import build_dialplan
    from pbx.dialplan import Destination, DestinationKind

    queues = "queues: {vip: {}, na: {}, uk: {}, sales: {}}\n"
    cfg = load_config(_write(tmp_path, DIALPLAN + queues))
    plan = build_dialplan(cfg)
    monday = datetime(2025, 6, 2, 2, tzinfo=UTC)  # 10:00 in Shanghai
    national_day = datetime(2025, 10, 2, 2, tzinfo=UTC)
    new_year = datetime(2026, 1, 1, 2, tzinfo=UTC)  # from the shared calendar
    assert plan.route_inbound("4001", "+8613800000000", monday).destination == Destination(
        DestinationKind.HANGUP, status=603
    )
    assert plan.route_inbound("4001", "+19005", monday).destination.prompt == "blocked"
    assert plan.route_inbound("4001", "+8610123", monday).destination.target == "vip"
    sales = plan.route_inbound("4001", "+8621123", monday)
    assert sales.destination == Destination(DestinationKind.QUEUE, "sales", skills=("zh",))
    for day in (national_day, new_year):
        assert plan.route_inbound("4001", "+33", day).destination.target == "1001"
    assert plan.route_inbound("4050", "+33", monday).destination.target == "1002"
    assert plan.route_inbound("5000", "+8621", monday).destination.target == "main"
    assert plan.route_inbound("5000", "+4420", monday).destination.target == "uk"
    assert plan.route_inbound("5000", "+33", monday).destination.status == 404
    vm = plan.route_internal("7002", "1001", monday)
    assert (vm.destination.kind, vm.destination.target) == (DestinationKind.VOICEMAIL, "1002")
    out = plan.route_internal("900441234", "1001", monday)
    assert (out.destination.target, out.number) == ("carrier", "00441234")
    assert plan.route_internal("8000", "1001", monday).destination.kind == "conference"


def test_shipped_dialplan_builds() -> None:
    from datetime import UTC, datetime

    from app.settings import build_dialplan

    plan = build_dialplan(parse_config(default_config_text(), "default.yaml"))
    assert (
        plan.route_inbound(
            "4000", "+15551234", datetime(2025, 6, 2, 10, tzinfo=UTC)
        ).destination.target
        == "1001"
    )
    closed = plan.route_inbound("4000", "+15551234", datetime(2025, 12, 25, 10, tzinfo=UTC))
    assert (closed.destination.kind, closed.destination.target) == ("voicemail", "1001")
    assert (
        plan.route_inbound("4000", "+19001", datetime(2025, 6, 2, tzinfo=UTC)).destination.status
        == 603
    )


def test_dialplan_value_errors_point_at_the_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        dialplan:
          blacklist:
            - {number: "+86138", prefix: "+1"}
            - {prefix: "+1900", action: announce}
          inbound:
            - {did: "_40[XX", destination: {kind: queue, target: sales}}
            - {caller: "+86", destination: {kind: play_hangup}}
            - {name: nothing, destination: {kind: hangup}}
          internal:
            - {pattern: "_9.", strip: 3, destination: {kind: outbound}}
            - {pattern: "9XX", destination: {kind: outbound}}
          outbound:
            - {pattern: "_0.", prepend: "00x"}
          regions: {"+1": ""}
          time_conditions:
            office:
              timezone: Mars/Olympus
              weekly:
                - {days: funday, hours: "25:00-26:00"}
              holidays:
                - {date: "2025-02-30"}
              open: {kind: queue}
              closed: {kind: hangup, status: 700}
        """,
    )
    assert _problems(path) == [
        f"{path}:3:7: dialplan.blacklist[0]: a blacklist entry needs exactly one of number: "
        "and prefix:",
        f"{path}:4:7: dialplan.blacklist[1]: action announce needs prompt: the prompt to play",
        f"{path}:6:13: dialplan.inbound[0].did: in '_40[XX': '[' at position 4 is never closed",
        f"{path}:7:36: dialplan.inbound[1].destination: a play_hangup destination needs "
        "prompt: the prompt to play",
        f"{path}:8:7: dialplan.inbound[2]: an inbound route needs did:, caller: or both",
        f"{path}:10:7: dialplan.internal[0]: strip 3 removes more than the 2 characters of the "
        "shortest number matching '_9.'",
        f"{path}:11:17: dialplan.internal[1].pattern: '9XX' is not a number (digits, *, #, "
        "leading +); start patterns with '_' (e.g. '_1XXX') and regular expressions with 're:'",
        f"{path}:13:33: dialplan.outbound[0].prepend: prepend '00x' must be digits, *, # (with "
        "a leading + allowed)",
        f"{path}:14:19: dialplan.regions.+1: name must not be blank",
        f"{path}:17:17: dialplan.time_conditions.office.timezone: unknown time zone "
        "'Mars/Olympus' (use a tz database name such as 'Europe/Paris')",
        f"{path}:19:18: dialplan.time_conditions.office.weekly[0].days: unknown day 'funday': "
        "use mon tue wed thu fri sat sun, ranges (mon-fri), lists (sat,sun) or daily",
        f"{path}:19:33: dialplan.time_conditions.office.weekly[0].hours: bad time 25:00 in "
        "'25:00-26:00': hours 00-23, minutes 00-59 (24:00 only as an end)",
        f"{path}:21:18: dialplan.time_conditions.office.holidays[0].date: bad date "
        "'2025-02-30': day is out of range for month",
        f"{path}:22:13: dialplan.time_conditions.office.open: a queue destination needs "
        "target: a queue name",
        f"{path}:23:38: dialplan.time_conditions.office.closed.status: Input should be less "
        "than or equal to 699",
    ]


def test_dialplan_reference_errors_point_at_the_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        extensions:
          "1001": {password: x}
        conferences:
          "8000": {}
        dialplan:
          inbound:
            - {did: "4001", destination: {kind: time_condition, target: ofice}}
            - {did: "4002", destination: {kind: extension, target: "1009"}}
            - {did: "4002", destination: {kind: extension}}
          internal:
            - {pattern: "_1XXX", destination: {kind: conference, target: "8001"}}
          outbound:
            - {pattern: "_1XXX"}
          time_conditions:
            office:
              weekly:
                - {days: mon-fri, hours: "09:00-18:00"}
                - {days: fri, hours: "17:00-20:00"}
              holidays:
                - {date: 2025-10-07, until: 2025-10-01}
              calendars: [cn]
              open: {kind: time_condition, target: later}
              closed: {kind: voicemail, target: "1002"}
            later:
              open: {kind: time_condition, target: office}
              closed: {kind: hangup}
        """,
    )
    assert _problems(path) == [
        f"{path}:7:65: dialplan.inbound[0].destination.target: unknown time condition 'ofice' "
        "(did you mean 'office'?)",
        f"{path}:8:60: dialplan.inbound[1].destination.target: unknown extension '1009'",
        f"{path}:9:13: dialplan.inbound[2].did: duplicate inbound route (same did and caller)",
        f"{path}:9:21: dialplan.inbound[2].destination.target: an extension destination needs "
        "target",
        f"{path}:11:66: dialplan.internal[0].destination.target: unknown conference '8001'",
        f"{path}:13:17: dialplan.outbound[0].pattern: duplicate pattern '_1XXX'",
        f"{path}:18:30: dialplan.time_conditions.office.weekly[1].hours: overlaps weekly[0] of "
        "the same condition",
        f"{path}:20:37: dialplan.time_conditions.office.holidays[0].until: holiday range ends "
        "before it starts: 2025-10-07 > 2025-10-01",
        f"{path}:21:19: dialplan.time_conditions.office.calendars[0]: unknown holiday calendar "
        "'cn'",
        f"{path}:23:41: dialplan.time_conditions.office.closed.target: unknown extension '1002'",
        f"{path}:25:44: dialplan.time_conditions.later.open.target: time conditions loop: "
        "office -> later -> office",
    ]


def test_known_names_hook_checks_ivr_queues_and_prompts(tmp_path: Path) -> None:
    from config.schema import KnownNames

    path = _write(tmp_path, DIALPLAN)
    with pytest.raises(ConfigError, match="unknown queue 'vip'"):
        load_config(path)  # queues are checked against the queues section by default
    known = KnownNames(ivr_flows={"welcome"}, queues={"sales", "vip", "na"}, prompts=set())
    with pytest.raises(ConfigError) as info:
        load_config(path, known=known)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:9:51: dialplan.blacklist[1].prompt: unknown prompt 'blocked'",
        f"{path}:14:56: dialplan.inbound[3].destination.target: unknown IVR flow 'main'",
        f"{path}:15:30: dialplan.regions.+44: unknown queue 'uk'",
    ]
    ok = KnownNames(ivr_flows={"main"}, queues={"sales", "vip", "na", "uk"}, prompts={"blocked"})
    assert load_config(path, known=ok).dialplan.regions == {"+1": "na", "+44": "uk"}


def test_top_level_model_error_is_reported_as_such() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('extensions: {"8000": {password: x}}\nconferences: {"8000": {}}\n', "x.yaml")
    assert str(info.value) == (
        "x.yaml:1:1: top level: numbers used by both an extension and a conference: ['8000']"
    )


ACD_BAD = """\
extensions:
  "1002": {password: x}
  "1003": {password: y}
acd:
  supervisors: ["1009"]
agents:
  alice: {extensions: ["1002"], skills: {english: 80}}
  bob: {extensions: ["1002", "1004"]}
queues:
  support:
    members: [alice, carol]
    overflow: "queue:sales"
    exit_destination: "voicemail:1099"
    skill_rules:
      - {wait_under: 30, require: "english => 50"}
      - {require: "english > 0"}
  sales:
    strategy: longest_idel
"""


def test_acd_sections_report_each_problem_at_its_value(tmp_path: Path) -> None:
    path = _write(tmp_path, ACD_BAD)
    references = [
        f"{path}:5:17: acd.supervisors[0]: unknown extension '1009'",
        f"{path}:8:22: agents.bob.extensions[0]: extension '1002' already belongs to agent 'alice'",
        f"{path}:8:30: agents.bob.extensions[1]: unknown extension '1004'",
        f"{path}:11:22: queues.support.members[1]: unknown agent 'carol'",
        f"{path}:13:23: queues.support.exit_destination: unknown extension '1099'",
    ]
    # Schema errors and references are reported in the same run, in file order.
    problems = _problems(path)
    assert problems[:5] == references
    assert problems[5].startswith(f"{path}:15:35: queues.support.skill_rules[0].require:")
    assert "cannot read skill requirement 'english => 50'" in problems[5]
    assert problems[6].startswith(f"{path}:18:15: queues.sales.strategy:")
    assert len(problems) == 7
    fixed = ACD_BAD.replace("=> 50", ">= 50").replace("longest_idel", "linear")
    path = _write(tmp_path, fixed)
    assert _problems(path) == references
    ok = fixed.replace('"1009"', '"1003"').replace('"1002", "1004"', '"1003"')
    ok = ok.replace(", carol", "").replace("1099", "1003")
    cfg = load_config(_write(tmp_path, ok))
    assert cfg.queues["support"].overflow == "queue:sales"
    looped = ok.replace("queue:sales", "queue:support")
    assert _problems(_write(tmp_path, looped)) == [
        f"{path}:12:15: queues.support.overflow: a queue cannot overflow into itself"
    ]


def test_last_skill_rule_must_not_have_wait_under(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "queues:\n  q:\n    skill_rules:\n      - {wait_under: 30, require: 'a > 1'}\n",
    )
    (problem,) = _problems(path)
    assert "the last skill rule must not have wait_under" in problem


def test_wrap_up_codes_may_carry_labels_and_the_acd_gets_codes_and_labels(
    tmp_path: Path,
) -> None:
    from app.settings import acd_from_config

    text = (
        "queues:\n  q:\n    wrap_up_codes:\n      - '1'\n      - {code: sale, label: Sale made}\n"
    )
    cfg = parse_config(text, "x.yaml")
    assert cfg.queues["q"].wrap_up_code_labels() == [("1", None), ("sale", "Sale made")]
    _, (queue,) = acd_from_config(cfg)
    assert queue.wrap_up_codes == ("1", "sale")
    assert queue.wrap_up_labels == {"sale": "Sale made"}
    twice = "queues:\n  q:\n    wrap_up_codes: ['1', {code: '1', label: One}]\n"
    (problem,) = _problems(_write(tmp_path, twice))
    assert "wrap_up_codes lists '1' more than once" in problem
    unlabelled = "queues:\n  q:\n    wrap_up_codes: [{code: '1'}]\n"
    assert _problems(_write(tmp_path, unlabelled))


def test_schema_errors_do_not_hide_reference_errors(tmp_path: Path) -> None:
    # One run reports both stages. References are checked on the valid parts: the bad route
    # [0] is left out, yet route [2] is still reported as [2]; extension 1001 is declared
    # (with a bad password), so a route to it is not "unknown extension" on top.
    path = _write(
        tmp_path,
        """\
        extensions:
          1001: {password: ""}
        dialplan:
          inbound:
            - {did: "x", destination: {kind: extension, target: "9999"}}
            - {did: "555", destination: {kind: extension, target: "1001"}}
            - {did: "556", destination: {kind: extension, target: "7777"}}
          internal_default: {kind: conference, target: "4444"}
        """,
    )
    assert _problems(path) == [
        f"{path}:2:20: extensions.1001.password: String should have at least 1 character",
        f"{path}:5:13: dialplan.inbound[0].did: 'x' is not a number (digits, *, #, leading +); "
        "start patterns with '_' (e.g. '_1XXX') and regular expressions with 're:'",
        f"{path}:7:59: dialplan.inbound[2].destination.target: unknown extension '7777'",
        f"{path}:8:48: dialplan.internal_default.target: unknown conference '4444'",
    ]


def test_check_across_sections_runs_despite_field_errors() -> None:
    # Pydantic runs the whole-file check only when every field is valid; it is run again on
    # the valid sections so that it is not hidden by an unrelated error.
    text = (
        'extensions: {"8000": {password: x}}\nconferences: {"8000": {}}\n'
        "rtp: {ports: [10001, 10100]}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml")
    assert [str(p) for p in info.value.problems] == [
        "x.yaml:1:1: top level: numbers used by both an extension and a conference: ['8000']",
        "x.yaml:3:14: rtp.ports: the first RTP port must be even (RFC 3550 §11), got 10001",
    ]


def test_check_config_returns_the_valid_parts_with_the_problems(tmp_path: Path) -> None:
    # What later stages (IVR flows against queues and time conditions) need from a config
    # that has errors: the sections and entries that are valid, defaults for the rest.
    from config import check_config

    _write(
        tmp_path,
        """\
        sip: 5
        rtp: {host: 127.0.0.1, ports: [20000, 20001]}
        extensions:
          "1001": {password: x, ring_timeout: 0}
          "1002": {ring_timeout: 5}
        queues:
          sales: {strategy: linear}
          support: {strategy: nope}
        """,
    )
    check = check_config(tmp_path)
    assert [p.line for p in check.problems] == [1, 2, 4, 5, 8]
    cfg = check.config
    assert cfg is not None
    assert cfg.sip == SwitchboardConfig().sip  # wrong as a whole: the defaults stand
    assert cfg.rtp.host == "127.0.0.1"  # the valid value kept, the bad one defaulted
    assert cfg.rtp.ports == SwitchboardConfig().rtp.ports
    assert list(cfg.extensions) == ["1001"]  # 1002 lacks its password: left out
    assert cfg.extensions["1001"].ring_timeout == ExtensionConfig(password="x").ring_timeout
    assert {name: q.strategy for name, q in cfg.queues.items()} == {
        "sales": "linear",
        "support": "longest_idle",
    }
    assert check_config(tmp_path / "missing.yaml").config is None
    good = check_config(_write(tmp_path, VALID))
    assert good.problems == [] and good.config == load_config(tmp_path)


def test_voicemail_settings_defaults_and_checks() -> None:
    from config.schema import VoicemailConfig

    shipped = parse_config(default_config_text(), "default.yaml")
    assert shipped.extensions["1001"].voicemail == VoicemailConfig()  # the documented defaults
    assert shipped.features.voicemail_own == "*97" and shipped.features.voicemail_any == "*98"
    cfg = parse_config(
        'extensions:\n  "1001":\n    password: pw\n'
        '    voicemail: {enabled: true, pin: "0042", no_answer_seconds: 12, mwi: unsolicited}\n',
        "x.yaml",
    )
    vm = cfg.extensions["1001"].voicemail
    assert (vm.enabled, vm.pin, vm.no_answer_seconds, vm.mwi) == (True, "0042", 12, "unsolicited")
    for bad in ("{enabled: true}", '{pin: "12"}', '{pin: "12ab"}', "{mwi: sometimes}"):
        with pytest.raises(ConfigError):
            parse_config(f'extensions:\n  "1001": {{password: pw, voicemail: {bad}}}\n', "x.yaml")


def test_browser_phone_ice_servers(tmp_path: Path) -> None:
    ok = VALID + textwrap.dedent(
        """\
        http:
          browser_phone:
            ice_servers:
              - {urls: ["stun:stun.example.net:3478"]}
              - {urls: ["turn:turn.example.net:3478?transport=udp"], username: u, credential: p}
        """
    )
    cfg = load_config(_write(tmp_path, ok))
    assert cfg.http.browser_phone.enabled
    assert [s.urls for s in cfg.http.browser_phone.ice_servers] == [
        ["stun:stun.example.net:3478"],
        ["turn:turn.example.net:3478?transport=udp"],
    ]
    no_credential = VALID + 'http: {browser_phone: {ice_servers: [{urls: ["turn:t.example"]}]}}\n'
    problems = _problems(_write(tmp_path, no_credential, "bad.yaml"))
    assert any("TURN server needs username and credential" in p for p in problems), problems
    not_ice = VALID + 'http: {browser_phone: {ice_servers: [{urls: ["http://x"]}]}}\n'
    problems = _problems(_write(tmp_path, not_ice, "bad2.yaml"))
    assert any("bad2.yaml:" in p and "urls" in p for p in problems), problems
