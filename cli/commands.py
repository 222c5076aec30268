"""The live commands: ``status``, ``reg``, ``call``, ``ext``, ``queue``, ``agent``, ``cdr``,
``user``, ``token``, ``trunk``, ``recording`` (in :mod:`cli.recordings`) and ``watch``, each
one request (or one paged listing) to the running server's HTTP API (docs/api.md) through
:mod:`cli.client`.

Every listing prints a table, or with ``--json`` the raw items as one JSON array (all pages,
or the first ``--limit``). A failure is one line on stderr and the exit code of
:mod:`cli.client` (0 ok, 1 refused, 2 usage or no server, 3 not authorised, 4 server error).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from cli.client import ApiClient, ApiError, locate

DEFAULT_CONFIG = Path("var")

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="Config folder (holding switchboard.yaml) or YAML file of the running server: "
        "its http host and port, and admin.token next to it. "
        "SWITCHBOARD_URL and SWITCHBOARD_TOKEN override both.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw items as one JSON array.")]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="At most this many items (default: all).")
]


def _sub(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


reg_app = _sub("SIP registrations of the running server.")
call_app = _sub("Live calls: list, show, hang up, click-to-call.")
ext_app = _sub("Extensions in the config: list, add, remove, set a password.")
queue_app = _sub("Queues: live state and today's statistics.")
agent_app = _sub("Agents: list, log in and out, pause and unpause.")
cdr_app = _sub("Call records.")
user_app = _sub("API users and their roles.")
token_app = _sub("API bearer tokens for scripts.")
trunk_app = _sub("Carrier trunks.")


def register(app: typer.Typer) -> None:
    """Add the live commands to the ``switchboard`` app."""
    from cli.recordings import recording_app  # it builds on the helpers here

    app.command("status")(status)
    app.command("watch")(watch)
    for name, sub in (
        ("reg", reg_app),
        ("call", call_app),
        ("ext", ext_app),
        ("queue", queue_app),
        ("agent", agent_app),
        ("cdr", cdr_app),
        ("user", user_app),
        ("token", token_app),
        ("trunk", trunk_app),
        ("recording", recording_app),
    ):
        app.add_typer(sub, name=name)
    from cli.reports import report_app  # it builds on the helpers below

    app.add_typer(report_app, name="report")
    from cli.customers import customer_app  # it builds on the helpers below

    app.add_typer(customer_app, name="customer")
    from cli.tickets import ticket_app  # it builds on the helpers below

    app.add_typer(ticket_app, name="ticket")
    from cli.kb import kb_app, qa_app  # it builds on the helpers below

    app.add_typer(kb_app, name="kb")
    app.add_typer(qa_app, name="qa")


# -- plumbing ----------------------------------------------------------------------------


@contextmanager
def _api(config: Path) -> Iterator[ApiClient]:
    """A client of the server for ``config``; an ApiError becomes one line and its exit."""
    try:
        with ApiClient(locate(config)) as client:
            yield client
    except ApiError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(err.exit_code) from None


def _seg(value: str) -> str:
    """One path segment (call ids and names may hold characters URLs reserve)."""
    return quote(value, safe="")


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    return str(value)


def _when(value: Any) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC, as the API sends it)."""
    text = _text(value)
    return text[:19].replace("T", " ") if len(text) >= 19 and text[10] == "T" else text


Column = tuple[str, Callable[[dict[str, Any]], str]]


def _col(header: str, key: str, fmt: Callable[[Any], str] = _text) -> Column:
    return header, lambda item: fmt(item.get(key))


def _table(items: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None:
    if not items:
        typer.echo(empty)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for item in items:
        table.add_row(*(fmt(item) for _, fmt in columns))
    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console.width = 10_000  # piped: one line per row, nothing folded, for grep and awk
    console.print(table)


def _fields(item: dict[str, Any], skip: Sequence[str] = ()) -> None:
    """One ``key: value`` line per field."""
    width = max((len(k) for k in item if k not in skip), default=0)
    for key, value in item.items():
        if key in skip:
            continue
        shown = _when(value) if key.endswith("_at") or key in ("since", "time") else _text(value)
        typer.echo(f"{key + ':':<{width + 1}} {shown}")


def _listing(
    config: Path,
    path: str,
    as_json: bool,
    limit: int | None,
    columns: Sequence[Column],
    empty: str,
    **params: Any,
) -> list[dict[str, Any]]:
    with _api(config) as api:
        items = api.items(path, limit=limit, **params)
    if as_json:
        _print_json(items)
    else:
        _table(items, columns, empty)
    return items


# -- status and watch --------------------------------------------------------------------


def status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Is the server up: version, uptime, live calls and registrations."""
    with _api(config) as api:
        health = api.get("/api/health")
        url = api.target.url
    if as_json:
        _print_json(health)
        return
    uptime = int(float(health.get("uptime_seconds") or 0))
    hours, rest = divmod(uptime, 3600)
    typer.echo(
        f"switchboard {health.get('version', '?')} at {url}: {health.get('status', '?')}, "
        f"up {hours}h{rest // 60:02d}m{rest % 60:02d}s, {health.get('calls', 0)} call(s), "
        f"{health.get('registrations', 0)} registration(s)"
    )


def watch(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Print live events (agent states, queue events, calls, registrations) one per line,
    as the server sends them, until Ctrl-C. --json prints each event as a JSON line."""
    try:
        with _api(config) as api:
            for event in api.events():
                if as_json:
                    typer.echo(json.dumps(event, ensure_ascii=False))
                else:
                    typer.echo(event_line(event))
        typer.echo("the server ended the event stream", err=True)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def event_line(event: dict[str, Any]) -> str:
    """One readable line for an event of docs/api.md "Events"."""
    e = dict(event)
    kind = str(e.pop("type", "?"))
    when = _when(e.pop("time", ""))
    if kind == "agent_state":
        text = f"{e.pop('agent', '?')} {e.pop('old_state', '?')} -> {e.pop('new_state', '?')}"
    elif kind == "call":
        text = f"{e.pop('event', '?')} {e.pop('caller', '?')} -> {e.pop('callee', '?')}"
    elif kind == "queue":
        # Agent-wide entries (AGENTLOGIN, PAUSE) name no queue.
        text = " ".join(str(p) for p in (e.pop("queue", None), e.pop("event", "?")) if p)
    elif kind == "registration":
        text = f"{e.pop('event', '?')} {e.pop('aor', '?')}"
    else:
        text = ""
    rest = " ".join(f"{k}={_text(v)}" for k, v in e.items() if v not in (None, "", [], {}))
    return " ".join(part for part in (when, kind, text, rest) if part)


# -- registrations -----------------------------------------------------------------------


@reg_app.command("list")
def reg_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    aor: Annotated[str | None, typer.Option(help="Only this address of record.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Registered contacts: address of record, contact, source, transport, seconds left,
    User-Agent."""
    columns = [
        _col("AOR", "aor"),
        _col("CONTACT", "contact"),
        _col("SOURCE", "source"),
        _col("TRANSPORT", "transport"),
        _col("EXPIRES IN", "expires_in"),
        _col("USER AGENT", "user_agent"),
    ]
    _listing(config, "/api/registrations", as_json, limit, columns, "no registrations", aor=aor)


# -- calls -------------------------------------------------------------------------------

CALL_COLUMNS = [
    _col("ID", "id"),
    _col("STATE", "state"),
    _col("CALLER", "caller"),
    _col("CALLEE", "callee"),
    _col("STARTED", "started_at", _when),
    _col("ANSWERED", "answered_at", _when),
]


@call_app.command("list")
def call_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Live calls, each with the id that `call show` and `call hangup` take."""
    _listing(config, "/api/calls", as_json, limit, CALL_COLUMNS, "no calls")


@call_app.command("show")
def call_show(
    call_id: Annotated[str, typer.Argument(metavar="ID", help="The call id (see call list).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One live call."""
    with _api(config) as api:
        call = api.get(f"/api/calls/{_seg(call_id)}")
    if as_json:
        _print_json(call)
    else:
        _fields(call)


@call_app.command("hangup")
def call_hangup(
    call_id: Annotated[str, typer.Argument(metavar="ID", help="The call id (see call list).")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Hang up a live call (both parties get a BYE)."""
    with _api(config) as api:
        api.post(f"/api/calls/{_seg(call_id)}/hangup")
    typer.echo(f"call {call_id} hung up")


@call_app.command("originate")
def call_originate(
    number: Annotated[str, typer.Argument(help="The number to dial.")],
    extension: Annotated[str, typer.Option("--extension", "-e", help="The phone to ring first.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Click-to-call: ring EXTENSION, and when it answers dial NUMBER with its rights."""
    with _api(config) as api:
        answer = api.post("/api/calls", {"extension": extension, "number": number})
    typer.echo(
        f"ringing {extension}, then dialling {number} "
        f"(originate id {_text((answer or {}).get('originate_id'))})"
    )


# -- extensions --------------------------------------------------------------------------


@ext_app.command("list")
def ext_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Extensions: number, name, registered or not."""
    columns = [_col("NUMBER", "number"), _col("NAME", "name"), _col("REGISTERED", "registered")]
    _listing(config, "/api/extensions", as_json, limit, columns, "no extensions")


@ext_app.command("add")
def ext_add(
    number: Annotated[str, typer.Argument(help="The extension number.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password: Annotated[
        str | None, typer.Option(help="SIP password (default: a generated one, printed).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Add an extension to the config (comments kept) and reload it."""
    body: dict[str, Any] = {"number": number}
    if name is not None:
        body["name"] = name
    if password is not None:
        body["password"] = password
    with _api(config) as api:
        answer = api.post("/api/extensions", body)
    typer.echo(f"extension {number} added; password {_text((answer or {}).get('password'))}")


@ext_app.command("remove")
def ext_remove(
    number: Annotated[str, typer.Argument(help="The extension number.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Remove an extension from the config and reload it."""
    with _api(config) as api:
        api.delete(f"/api/extensions/{_seg(number)}")
    typer.echo(f"extension {number} removed")


@ext_app.command("passwd")
def ext_passwd(
    number: Annotated[str, typer.Argument(help="The extension number.")],
    password: Annotated[
        str | None, typer.Option(help="The new SIP password (default: a generated one).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Set an extension's SIP password (printed) and reload the config."""
    body = {} if password is None else {"password": password}
    with _api(config) as api:
        answer = api.put(f"/api/extensions/{_seg(number)}/password", body)
    typer.echo(f"extension {number} password {_text((answer or {}).get('password'))}")


# -- queues ------------------------------------------------------------------------------


def _seconds(value: Any) -> str:
    return "" if value is None else f"{float(value):.0f}s"


@queue_app.command("list")
def queue_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Queues: strategy, callers waiting, longest wait, agents by state."""
    columns = [
        _col("NAME", "name"),
        _col("STRATEGY", "strategy"),
        _col("WAITING", "waiting"),
        _col("LONGEST WAIT", "longest_wait_seconds", _seconds),
        _col("AGENTS", "agents"),
    ]
    _listing(config, "/api/queues", as_json, limit, columns, "no queues")


def _queue(config: Path, name: str) -> dict[str, Any]:
    with _api(config) as api:
        queue: dict[str, Any] = api.get(f"/api/queues/{_seg(name)}")
    return queue


@queue_app.command("show")
def queue_show(
    name: Annotated[str, typer.Argument(help="The queue name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One queue: live state and its members."""
    queue = _queue(config, name)
    if as_json:
        _print_json(queue)
    else:
        _fields(queue, skip=("today",))


@queue_app.command("stats")
def queue_stats(
    name: Annotated[str, typer.Argument(help="The queue name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Today's numbers for one queue: offered, answered, abandoned, service level,
    average speed of answer; and now: waiting, longest wait, agents by state."""
    queue = _queue(config, name)
    today = queue.get("today") or {}
    if as_json:
        _print_json({"name": queue.get("name", name), **today, "waiting": queue.get("waiting")})
        return
    level = today.get("service_level")
    asa = today.get("asa_seconds")
    typer.echo(f"queue {queue.get('name', name)} today")
    typer.echo(f"  offered        {_text(today.get('offered'))}")
    typer.echo(f"  answered       {_text(today.get('answered'))}")
    typer.echo(f"  abandoned      {_text(today.get('abandoned'))}")
    shown = "-" if level is None else f"{100 * float(level):.1f}%"
    typer.echo(
        f"  service level  {shown} (answered within "
        f"{_seconds(today.get('service_level_seconds')) or '?'})"
    )
    typer.echo(f"  ASA            {'-' if asa is None else _seconds(asa)}")
    typer.echo(
        f"now: {_text(queue.get('waiting'))} waiting, longest "
        f"{_seconds(queue.get('longest_wait_seconds')) or '0s'}; "
        f"agents {_text(queue.get('agents'))}"
    )


# -- agents ------------------------------------------------------------------------------


@agent_app.command("list")
def agent_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Agents: state (and pause reason) since when, extensions, queues."""
    columns = [
        _col("ID", "id"),
        _col("NAME", "name"),
        _col("STATE", "state"),
        _col("REASON", "reason"),
        _col("SINCE", "since", _when),
        _col("EXTENSIONS", "extensions"),
        _col("QUEUES", "queues"),
    ]
    _listing(config, "/api/agents", as_json, limit, columns, "no agents")


def _agent_action(config: Path, agent_id: str, action: str, body: dict[str, Any] | None) -> None:
    with _api(config) as api:
        agent = api.post(f"/api/agents/{_seg(agent_id)}/{action}", body)
    agent = agent or {}
    reason = f" ({agent['reason']})" if agent.get("reason") else ""
    typer.echo(f"agent {agent.get('id', agent_id)}: {_text(agent.get('state'))}{reason}")


AgentId = Annotated[str, typer.Argument(metavar="ID", help="The agent id (agents: in the config).")]


@agent_app.command("login")
def agent_login(agent_id: AgentId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Log an agent in (available for queue calls)."""
    _agent_action(config, agent_id, "login", None)


@agent_app.command("logout")
def agent_logout(agent_id: AgentId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Log an agent out (after the call when on one)."""
    _agent_action(config, agent_id, "logout", None)


@agent_app.command("pause")
def agent_pause(
    agent_id: AgentId,
    reason: Annotated[str | None, typer.Option(help="Why (e.g. lunch).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Pause an agent: no queue calls are offered until unpause."""
    _agent_action(config, agent_id, "pause", {} if reason is None else {"reason": reason})


@agent_app.command("unpause")
def agent_unpause(agent_id: AgentId, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Make a paused agent available again."""
    _agent_action(config, agent_id, "unpause", None)


# -- call records ------------------------------------------------------------------------


def _disposition(value: str | None) -> str | None:
    # ANSWERED, NO ANSWER, BUSY, FAILED, CANCELLED (docs/records.md): no-answer works too.
    return None if value is None else value.replace("-", " ").replace("_", " ").upper()


@cdr_app.command("search")
def cdr_search(
    config: ConfigOpt = DEFAULT_CONFIG,
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601, UTC if naive).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")] = None,
    number: Annotated[
        str | None, typer.Option(help="Caller, callee or dialled number contains this.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Answered by this agent.")] = None,
    queue: Annotated[str | None, typer.Option(help="Through this queue.")] = None,
    disposition: Annotated[
        str | None, typer.Option(help="ANSWERED, NO ANSWER, BUSY, FAILED or CANCELLED.")
    ] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Search call records (docs/records.md has every column; --json prints them all)."""
    columns = [
        _col("START", "start", _when),
        _col("CALLER", "caller"),
        _col("CALLEE", "callee"),
        _col("DIALLED", "dialled"),
        _col("DISPOSITION", "disposition"),
        _col("BILLSEC", "billable_seconds", lambda v: "" if v is None else f"{float(v):.0f}"),
        _col("QUEUE", "queue"),
        _col("AGENT", "agent"),
        _col("CALL ID", "call_id"),
    ]
    _listing(
        config,
        "/api/cdrs",
        as_json,
        limit,
        columns,
        "no call records",
        since=since,
        until=until,
        number=number,
        agent=agent,
        queue=queue,
        disposition=_disposition(disposition),
    )


# -- users and tokens --------------------------------------------------------------------


class Role(StrEnum):
    agent = "agent"
    supervisor = "supervisor"
    qa = "qa"
    admin = "admin"


PasswordOpt = Annotated[
    str,
    typer.Option(
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="The password (asked for, hidden, when not given).",
    ),
]


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[Role, typer.Option(help="What the user may do (docs/api.md).")],
    password: PasswordOpt,
    agent: Annotated[
        str | None, typer.Option(help="The agent (agents: id) an agent user is.")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Add an API user with one role."""
    body: dict[str, Any] = {"name": name, "role": role.value, "password": password}
    if agent is not None:
        body["agent"] = agent
    with _api(config) as api:
        api.post("/api/users", body)
    linked = f" (agent {agent})" if agent else ""
    typer.echo(f"user {name} added with role {role.value}{linked}")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The login name.")],
    password: PasswordOpt,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Set a user's password."""
    with _api(config) as api:
        api.put(f"/api/users/{_seg(name)}/password", {"password": password})
    typer.echo(f"password of {name} changed")


@user_app.command("role")
def user_role(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[Role, typer.Argument(help="agent, supervisor, qa or admin.")],
    agent: Annotated[
        str | None, typer.Option(help="The agent (agents: id) an agent user is.")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Change a user's role (and linked agent)."""
    body: dict[str, Any] = {"role": role.value}
    if agent is not None:
        body["agent"] = agent
    with _api(config) as api:
        api.put(f"/api/users/{_seg(name)}/role", body)
    typer.echo(f"user {name} now has role {role.value}")


@user_app.command("list")
def user_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """API users: name, role, linked agent, created, disabled."""
    columns = [
        _col("NAME", "name"),
        _col("ROLE", "role"),
        _col("AGENT", "agent"),
        _col("CREATED", "created_at", _when),
        _col("DISABLED", "disabled"),
    ]
    _listing(config, "/api/users", as_json, limit, columns, "no users")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Create a bearer token for a user. The token is printed once, alone on stdout (the
    server keeps only its hash)."""
    body: dict[str, Any] = {"user": user}
    if name is not None:
        body["name"] = name
    with _api(config) as api:
        answer = api.post("/api/tokens", body) or {}
    if as_json:
        _print_json(answer)
        return
    typer.echo(f"token {_text(answer.get('id'))} for {user} (shown once):", err=True)
    typer.echo(_text(answer.get("token")))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The token id (token list).")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    with _api(config) as api:
        api.delete(f"/api/tokens/{token_id}")
    typer.echo(f"token {token_id} revoked")


@token_app.command("list")
def token_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Tokens (never the secrets): id, user, name, created, last used, revoked."""
    columns = [
        _col("ID", "id"),
        _col("USER", "user"),
        _col("NAME", "name"),
        _col("CREATED", "created_at", _when),
        _col("LAST USED", "last_used_at", _when),
        _col("REVOKED", "revoked"),
    ]
    _listing(config, "/api/tokens", as_json, limit, columns, "no tokens")


# -- trunks ------------------------------------------------------------------------------

TRUNK_COLUMNS = [
    _col("NAME", "name"),
    _col("STATE", "state"),
    _col("REGISTERED", "registered"),
    _col("LAST STATUS", "last_status"),
    _col("CHANNELS", "channels"),
    _col("MAX", "max_channels"),
]


@trunk_app.command("list")
def trunk_list(
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, limit: LimitOpt = None
) -> None:
    """Trunks: registration state, last status, channels in use."""
    _listing(config, "/api/trunks", as_json, limit, TRUNK_COLUMNS, "no trunks")


@trunk_app.command("status")
def trunk_status(
    name: Annotated[str, typer.Argument(help="The trunk name.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One trunk's state."""
    with _api(config) as api:
        found = api.get(f"/api/trunks/{quote(name, safe='')}")
    if as_json:
        _print_json(found)
    else:
        _fields(found)
