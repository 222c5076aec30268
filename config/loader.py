"""Load ``switchboard.yaml`` and report every problem as ``file:line:column: message``.

Theory of operation:

1. ruamel.yaml's round-trip loader parses the file. It keeps, for every mapping key and
   sequence item, the line and column where it was written (``.lc``). A syntax error carries
   ruamel's ``problem_mark``, which becomes a single problem.
2. The parsed tree is walked once to (a) build an index ``path -> (key position, value
   position)`` and (b) convert ruamel's scalar subclasses into plain ``int``/``float``/``str`` so
   pydantic sees ordinary Python values.
3. Pydantic validates the plain tree against :class:`config.schema.SwitchboardConfig`. Every
   error has a ``loc`` (the key path); we look it up in the index: errors about a value point
   at the value, unknown keys and bad mapping keys point at the key, missing keys point at the
   key of the mapping that lacks them. All errors are reported, not just the first one.
4. Relative SQLite paths in ``store.url`` are resolved against the config file's folder, so a
   config behaves the same whatever the working directory of ``switchboard serve`` is.

Lines and columns are 1-based, as editors and compilers print them.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from config.schema import KnownNames, SwitchboardConfig, dialplan_problems

CONFIG_FILENAME = "switchboard.yaml"

Position = tuple[int, int]  # 1-based (line, column)
PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """The config could not be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def config_file_path(path: str | Path) -> Path:
    """Return the YAML file for ``path``: the file itself, or ``switchboard.yaml`` in a folder."""
    p = Path(path)
    return p / CONFIG_FILENAME if p.is_dir() else p


def load_config(path: str | Path, *, known: KnownNames | None = None) -> SwitchboardConfig:
    """Load and validate a config.

    ``path`` is either the folder holding ``switchboard.yaml`` or the YAML file itself.
    ``known`` names IVR flows, queues and prompts defined elsewhere, so dialplan destinations
    can be checked against them (None: those names are not checked).
    Raises :class:`ConfigError` listing all problems.
    """
    file = config_file_path(path)
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(name, 1, 1, f"cannot read config: {exc}")]) from None
    config = parse_config(text, name, known=known)
    return resolve_relative_paths(config, file.parent)


def parse_config(
    text: str, file: str = "<string>", *, known: KnownNames | None = None
) -> SwitchboardConfig:
    """Validate YAML ``text``; ``file`` is only used in problem reports. Paths stay as written.

    After the schema, cross-references in the dialplan are checked (see
    :func:`config.schema.dialplan_problems`; ``known`` as in :func:`load_config`)."""
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(file, exc)]) from None
    except YAMLError as exc:  # errors without a mark (rare): point at the start
        raise ConfigError([ConfigProblem(file, 1, 1, f"YAML error: {exc}")]) from None

    index: dict[PathKey, tuple[Position, Position]] = {(): ((1, 1), (1, 1))}
    data = _plain(tree, (), index)
    if data is None:  # an empty file means "all defaults"
        data = {}
    try:
        config = SwitchboardConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_validation_problem(file, err, index) for err in exc.errors()]
        problems.sort(key=lambda p: (p.line, p.column))
        raise ConfigError(problems) from None
    # Step 3b: references between values (a destination naming an unknown extension, ...)
    # point at the value that names the missing thing.
    refs = dialplan_problems(config, known)
    if refs:
        problems = []
        for path, message in refs:
            line, column = _value_position(path, index)
            problems.append(ConfigProblem(file, line, column, f"{_dotted(path)}: {message}"))
        problems.sort(key=lambda p: (p.line, p.column))
        raise ConfigError(problems)
    return config


def resolve_relative_paths(config: SwitchboardConfig, base_dir: Path) -> SwitchboardConfig:
    """Make relative paths (SQLite database, music-on-hold files) absolute, relative to
    ``base_dir``, the folder holding the config file."""
    from sqlalchemy.engine import make_url

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


def _syntax_problem(file: str, exc: MarkedYAMLError) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    parts = [p for p in (exc.context, exc.problem) if p]
    message = "YAML syntax error: " + ("; ".join(parts) if parts else str(exc))
    return ConfigProblem(file, line, column, message)


def _plain(node: Any, path: PathKey, index: dict[PathKey, tuple[Position, Position]]) -> Any:
    """Convert ruamel's tree to plain Python and record positions of every key and item."""
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            kline, kcol = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            plain_key = _scalar(key)
            positions = ((kline + 1, kcol + 1), (vline + 1, vcol + 1))
            # Mapping keys are indexed as strings: the schema turns `1001:` into "1001".
            child = (*path, str(plain_key))
            index[child] = positions
            out[plain_key] = _plain(value, child, index)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, value in enumerate(node):
            line, col = node.lc.item(i)
            index[(*path, i)] = ((line + 1, col + 1), (line + 1, col + 1))
            items.append(_plain(value, (*path, i), index))
        return items
    return _scalar(node)


def _scalar(value: Any) -> Any:
    # ruamel's round-trip scalars subclass int/float/str to keep formatting; strip that.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if type(value).__name__ == "ScalarBoolean":
            return bool(value)
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _validation_problem(
    file: str, err: Any, index: dict[PathKey, tuple[Position, Position]]
) -> ConfigProblem:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    is_key_error = bool(loc) and loc[-1] == "[key]"
    path = tuple(p for p in loc if p != "[key]")
    dotted = _dotted(path)

    if kind == "missing":
        parent, missing = path[:-1], path[-1]
        position = _key_position(parent, index)
        where = _dotted(parent) or "top level"
        message = f"{where}: missing required key '{missing}'"
    elif kind == "extra_forbidden":
        position = _key_position(path, index)
        message = f"{dotted}: unknown key '{path[-1]}'" + _suggest(path)
    elif is_key_error:
        position = _key_position(path, index)
        message = f"{dotted}: {_clean(err['msg'])}"
    elif not path and kind == "model_type":
        position = (1, 1)
        message = "top level: the config must be a mapping of sections (sip, rtp, store, ...)"
    elif not path:  # a check on the whole file (e.g. numbers used twice)
        position = (1, 1)
        message = f"top level: {_clean(err['msg'])}"
    else:
        position = _value_position(path, index)
        message = f"{dotted}: {_clean(err['msg'])}"
        if kind == "string_type" and isinstance(err.get("input"), int | float):
            message += " (put it in quotes)"
    return ConfigProblem(file, position[0], position[1], message)


def _key_position(path: PathKey, index: dict[PathKey, tuple[Position, Position]]) -> Position:
    for n in range(len(path), -1, -1):
        if path[:n] in index:
            return index[path[:n]][0]
    return (1, 1)


def _value_position(path: PathKey, index: dict[PathKey, tuple[Position, Position]]) -> Position:
    if path in index:
        return index[path][1]
    return _key_position(path, index)


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clean(msg: str) -> str:
    # Pydantic prefixes custom validator messages with "Value error, ".
    return msg.removeprefix("Value error, ")


def _suggest(path: PathKey) -> str:
    model = _model_at(path[:-1])
    if model is None:
        return ""
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return " (allowed: " + ", ".join(allowed) + ")"


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """Follow ``path`` through the schema's type annotations to the model found there."""
    current: Any = SwitchboardConfig
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        else:
            current = _element_type(current)
            if current is None:
                return None
        current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _strip(tp: Any) -> Any:
    """Remove Annotated[...] and Optional[...] around a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _element_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None
