"""Load ``switchboard.yaml`` and report every problem as ``file:line:column: message``.

Theory of operation:

1. ruamel.yaml's round-trip loader parses the file; :mod:`config.problems` turns the tree
   into plain values and an index of where every key and value was written. A syntax error
   becomes a single problem at ruamel's mark.
2. Pydantic validates the plain tree against :class:`config.schema.SwitchboardConfig`; every
   error becomes a problem at its key or value (:func:`config.problems.validation_problems`).
3. References between values (:func:`config.schema.dialplan_problems`) are checked next,
   also when step 2 found errors: then on the valid parts of the file (see "The valid parts"
   below), with every name the file declares counting as declared.
4. All problems of every step are reported together, sorted by position: fixing one set
   must not reveal the next. Only a file that cannot be read or parsed stops at step 1.
5. Relative SQLite paths in ``store.url`` are resolved against the config file's folder, so a
   config behaves the same whatever the working directory of ``switchboard serve`` is. So are
   the TLS files (``sip.tls.certificate``/``key``, a trunk's ``ca_file``); a config read from
   a file then has those files loaded once as TLS would load them, so a missing file, a key
   that does not match its certificate or a CA file that is not PEM is a problem at its key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from config.problems import (
    ConfigError,
    ConfigProblem,
    PathKey,
    dotted,
    plain_tree,
    syntax_problem,
    validation_problems,
    value_position,
)
from config.schema import DeclaredNames, KnownNames, SwitchboardConfig, dialplan_problems

__all__ = [
    "CONFIG_FILENAME",
    "ConfigCheck",
    "ConfigError",
    "ConfigProblem",
    "check_config",
    "config_file_path",
    "load_config",
    "parse_config",
    "resolve_relative_paths",
]

CONFIG_FILENAME = "switchboard.yaml"


def config_file_path(path: str | Path) -> Path:
    """Return the YAML file for ``path``: the file itself, or ``switchboard.yaml`` in a folder."""
    p = Path(path)
    return p / CONFIG_FILENAME if p.is_dir() else p


@dataclass(frozen=True, slots=True)
class ConfigCheck:
    """Everything one run of the checks found in a config file.

    ``config`` is the validated config when ``problems`` is empty. With problems it is the
    config made of the parts that are valid (defaults elsewhere), so that the checks that
    need a config (cross-references here, IVR flows against its queues and time conditions
    in the caller) can still run and report in the same run; it must not be served. It is
    None when the file could not be read or parsed as YAML.
    """

    config: SwitchboardConfig | None
    problems: list[ConfigProblem]


def check_config(path: str | Path, *, known: KnownNames | None = None) -> ConfigCheck:
    """Read and check a config, collecting every problem instead of stopping at the first
    stage that fails. ``path`` and ``known`` as in :func:`load_config`."""
    file = config_file_path(path)
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ConfigCheck(None, [ConfigProblem(name, 1, 1, f"cannot read config: {exc}")])
    check = _check_text(text, name, known)
    if check.config is None:
        return check
    config = resolve_relative_paths(check.config, file.parent)
    problems = check.problems
    files = _tls_file_problems(config)
    if files:
        _, index = plain_tree(YAML(typ="rt").load(text))
        for where, message in files:
            line, column = value_position(where, index)
            problems.append(ConfigProblem(name, line, column, f"{dotted(where)}: {message}"))
        problems = sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))
    return ConfigCheck(config, problems)


def _tls_file_problems(config: SwitchboardConfig) -> list[tuple[PathKey, str]]:
    """Load the TLS files the config names as the server will (RFC 3261 §26.2.1 needs a
    usable certificate and key before the first connection, not at it)."""
    out: list[tuple[PathKey, str]] = []
    tls = config.sip.tls
    if tls.certificate is not None and tls.key is not None:
        for key in ("certificate", "key"):
            if not Path(getattr(tls, key)).is_file():
                out.append((("sip", "tls", key), f"no such file {getattr(tls, key)}"))
        if not out:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls.certificate, tls.key)
            except (OSError, ssl.SSLError) as exc:
                out.append((("sip", "tls", "certificate"), f"cannot load with its key: {exc}"))
    for name, trunk in config.trunks.items():
        if trunk.ca_file is None:
            continue
        path: PathKey = ("trunks", name, "ca_file")
        if not Path(trunk.ca_file).is_file():
            out.append((path, f"no such file {trunk.ca_file}"))
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=trunk.ca_file)
        except (OSError, ssl.SSLError) as exc:
            out.append((path, f"not a PEM CA certificate file: {exc}"))
    return out


def load_config(path: str | Path, *, known: KnownNames | None = None) -> SwitchboardConfig:
    """Load and validate a config.

    ``path`` is either the folder holding ``switchboard.yaml`` or the YAML file itself.
    ``known`` names IVR flows, queues and prompts defined elsewhere, so dialplan destinations
    can be checked against them (None: those names are not checked).
    Raises :class:`ConfigError` listing all problems.
    """
    check = check_config(path, known=known)
    if check.problems or check.config is None:
        raise ConfigError(check.problems)
    return check.config


def parse_config(
    text: str, file: str = "<string>", *, known: KnownNames | None = None
) -> SwitchboardConfig:
    """Validate YAML ``text``; ``file`` is only used in problem reports. Paths stay as written.

    After the schema, cross-references in the dialplan are checked (see
    :func:`config.schema.dialplan_problems`; ``known`` as in :func:`load_config`), also when
    the schema found errors: raises :class:`ConfigError` listing the problems of both."""
    check = _check_text(text, file, known)
    if check.problems or check.config is None:
        raise ConfigError(check.problems)
    return check.config


def _check_text(text: str, file: str, known: KnownNames | None) -> ConfigCheck:
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        return ConfigCheck(None, [syntax_problem(file, exc)])
    except YAMLError as exc:  # errors without a mark (rare): point at the start
        return ConfigCheck(None, [ConfigProblem(file, 1, 1, f"YAML error: {exc}")])

    data, index = plain_tree(tree)
    if data is None:  # an empty file means "all defaults"
        data = {}
    if not isinstance(data, dict):
        message = "top level: the config must be a mapping of sections (sip, rtp, store, ...)"
        return ConfigCheck(None, [ConfigProblem(file, 1, 1, message)])
    problems: list[ConfigProblem] = []
    renumbered: Renumbered = {}
    try:
        config = SwitchboardConfig.model_validate(data)
    except ValidationError as exc:
        config, renumbered, across = _valid_parts(data)
        errors = [*exc.errors(), *across]
        problems += validation_problems(file, errors, index, SwitchboardConfig, data)
    # References between values (a destination naming an unknown extension, ...) point at
    # the value that names the missing thing. Names count as declared even where their own
    # settings have errors, so one mistake is not reported twice.
    for path, message in dialplan_problems(config, known, DeclaredNames.of_yaml(data)):
        path = _original_path(path, renumbered)
        line, column = value_position(path, index)
        problems.append(ConfigProblem(file, line, column, f"{dotted(path)}: {message}"))
    # A check across sections that fails on a file with no other error is found twice.
    problems = sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))
    return ConfigCheck(config, problems)


# --- The valid parts of a config with schema errors ----------------------------------------
#
# Each top-level section is validated on its own and, where it has errors, the values they
# point at are left out and the section validated again: a bad optional value falls back to
# its default, an entry missing a required key (or failing its own check) is left out whole,
# a section wrong as a whole becomes its default. The errors of those later rounds are not
# reported: they are about what we left out, or checks on a mapping or list we left
# something out of, which would judge a default instead of what the file says (such a check
# runs once the bad value is fixed). Then the valid sections are checked together: pydantic
# skips the checks across sections (numbers used twice) while any field has an error.
# Leaving out list items renumbers the items after them; the ``renumbered`` map turns new
# numbers back into the file's, so problems found later point at the right place.

_MAX_ROUNDS = 16  # each round leaves out at least one more value; nesting is far shallower

Renumbered = dict[PathKey, list[int]]  # list path (new numbering) -> file index of each item


def _valid_parts(data: dict[Any, Any]) -> tuple[SwitchboardConfig, Renumbered, list[ErrorDetails]]:
    """The config made of the valid parts of ``data``, the renumbering, and the errors of
    the checks across sections."""
    values: dict[str, Any] = {}
    renumbered: Renumbered = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in SwitchboardConfig.model_fields:
            continue
        found = _valid_section(key, value)
        if found is not None:
            values[key], maps = found
            renumbered.update(maps)
    try:
        # The sections are validated already (instances pass through as they are).
        return SwitchboardConfig.model_validate(values), renumbered, []
    except ValidationError as exc:
        return SwitchboardConfig.model_construct(**values), renumbered, exc.errors()


def _valid_section(key: str, value: Any) -> tuple[Any, Renumbered] | None:
    dropped: set[PathKey] = set()  # paths in the file's numbering
    for _ in range(_MAX_ROUNDS):
        maps: Renumbered = {}
        candidate = _without(value, dropped, (key,), (key,), maps)
        try:
            section = SwitchboardConfig.model_validate({key: candidate})
        except ValidationError as exc:
            more = {
                _original_path(_present({key: candidate}, _loc_path(err)), maps)
                for err in exc.errors()
            }
            if any(len(path) <= 1 for path in more) or more <= dropped:
                return None  # the section as a whole is wrong: its defaults stand
            dropped |= more
        else:
            return getattr(section, key), maps
    return None


def _loc_path(err: ErrorDetails) -> PathKey:
    return tuple(p for p in err["loc"] if p != "[key]")


def _without(
    node: Any, dropped: set[PathKey], old: PathKey, new: PathKey, maps: dict[PathKey, list[int]]
) -> Any:
    """``node`` (at ``old`` in the file, ``new`` in the result) without the dropped paths."""
    if isinstance(node, dict):
        return {
            k: _without(v, dropped, (*old, str(k)), (*new, str(k)), maps)
            for k, v in node.items()
            if (*old, str(k)) not in dropped
        }
    if isinstance(node, list):
        kept = [i for i in range(len(node)) if (*old, i) not in dropped]
        if len(kept) != len(node):
            maps[new] = kept
        return [_without(node[i], dropped, (*old, i), (*new, j), maps) for j, i in enumerate(kept)]
    return node


def _present(data: Any, loc: PathKey) -> PathKey:
    """The longest start of ``loc`` that exists in ``data``: a missing key's mapping, the
    value itself for a bad value (pydantic may add union member names after it)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict):
            key = next((k for k in data if str(k) == str(part)), None)
            if key is None:
                break
            data = data[key]
            out.append(str(part))
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            out.append(part)
        else:
            break
    return tuple(out)


def _original_path(path: PathKey, renumbered: dict[PathKey, list[int]]) -> PathKey:
    out: list[str | int] = []
    for n, part in enumerate(path):
        kept = renumbered.get(path[:n])
        if isinstance(part, int) and kept is not None and 0 <= part < len(kept):
            out.append(kept[part])
        else:
            out.append(part)
    return tuple(out)


def resolve_relative_paths(config: SwitchboardConfig, base_dir: Path) -> SwitchboardConfig:
    """Make relative paths (SQLite database, music-on-hold files, TLS files) absolute,
    relative to ``base_dir``, the folder holding the config file."""
    from sqlalchemy.engine import make_url

    tls = config.sip.tls
    if tls.certificate is not None and tls.key is not None:
        paths = {k: str((base_dir / getattr(tls, k)).resolve()) for k in ("certificate", "key")}
        sip = config.sip.model_copy(update={"tls": tls.model_copy(update=paths)})
        config = config.model_copy(update={"sip": sip})
    if any(t.ca_file is not None for t in config.trunks.values()):
        trunks = {
            name: t
            if t.ca_file is None
            else t.model_copy(update={"ca_file": str((base_dir / t.ca_file).resolve())})
            for name, t in config.trunks.items()
        }
        config = config.model_copy(update={"trunks": trunks})

    moh = [str((base_dir / p).resolve()) for p in config.media.music_on_hold]
    if moh != config.media.music_on_hold:
        media = config.media.model_copy(update={"music_on_hold": moh})
        config = config.model_copy(update={"media": media})
    url = make_url(config.store.url)
    db = url.database
    if not url.drivername.startswith("sqlite") or not db or db == ":memory:":
        return config
    if db.startswith("file:") or Path(db).is_absolute():
        return config
    resolved = url.set(database=str((base_dir / db).resolve()))
    store = config.store.model_copy(update={"url": resolved.render_as_string(hide_password=False)})
    return config.model_copy(update={"store": store})
