"""Problems in YAML files as ``file:line:column: message``, shared by every YAML loader.

Theory of operation:

1. ruamel.yaml's round-trip loader keeps, for every mapping key and sequence item, the line
   and column where it was written (``.lc``). :func:`plain_tree` walks that tree once to
   (a) build a :data:`YamlIndex` ``key path -> (key position, value position)`` and (b) turn
   ruamel's scalar subclasses into plain ``int``/``float``/``str`` so pydantic sees ordinary
   Python values. A syntax error carries ruamel's ``problem_mark``: :func:`syntax_problem`.
2. Pydantic validates the plain tree. :func:`validation_problems` turns every error of a
   ``ValidationError`` into a :class:`ConfigProblem`: its ``loc`` (the key path) is looked up
   in the index; errors about a value point at the value, unknown keys and bad mapping keys
   at the key, missing keys at the key of the mapping that lacks them. The main config
   (:mod:`config.loader`) and the IVR flows (:mod:`ivr.loader`) both use it, so a problem
   reads the same wherever it is.

Lines and columns are 1-based, as editors and compilers print them.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "PathKey",
    "Position",
    "YamlIndex",
    "dotted",
    "key_position",
    "plain_tree",
    "syntax_problem",
    "validation_problems",
    "value_position",
]

Position = tuple[int, int]  # 1-based (line, column)
PathKey = tuple[str | int, ...]
YamlIndex = dict[PathKey, tuple[Position, Position]]  # path -> (key position, value position)


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


def syntax_problem(file: str, exc: MarkedYAMLError) -> ConfigProblem:
    """The problem for a YAML syntax error, at the mark ruamel gives."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    parts = [p for p in (exc.context, exc.problem) if p]
    message = "YAML syntax error: " + ("; ".join(parts) if parts else str(exc))
    return ConfigProblem(file, line, column, message)


def plain_tree(tree: Any) -> tuple[Any, YamlIndex]:
    """Convert ruamel's round-trip tree to plain Python values and index every position."""
    index: YamlIndex = {(): ((1, 1), (1, 1))}
    return _plain(tree, (), index), index


def key_position(path: PathKey, index: YamlIndex) -> Position:
    """Where the key of ``path`` (or of its nearest written ancestor) is."""
    for n in range(len(path), -1, -1):
        if path[:n] in index:
            return index[path[:n]][0]
    return (1, 1)


def value_position(path: PathKey, index: YamlIndex) -> Position:
    """Where the value of ``path`` is; its nearest ancestor's key if it is not written."""
    if path in index:
        return index[path][1]
    return key_position(path, index)


def dotted(path: PathKey) -> str:
    """``("sip", "listen", 0, "port")`` -> ``sip.listen[0].port``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_problems(
    file: str,
    error: ValidationError | Sequence[ErrorDetails],
    index: YamlIndex,
    model: type[BaseModel],
    data: Any,
    *,
    root: str = "top level",
    variant: str = "",
) -> list[ConfigProblem]:
    """Every error of ``error`` (from validating ``data`` against ``model``; or its chosen
    ``errors()``) as a problem at its place in the file, sorted by line and column.

    ``root`` names the whole document in messages ("top level: ...", "flow: ..."); ``variant``
    is what the members of a discriminated union are called ("node" gives "unknown node type
    'x'"). Unknown keys get a "did you mean" hint from the fields of the model found at that
    path (for a discriminated union, the member its tag selects).
    """
    errors = error.errors() if isinstance(error, ValidationError) else error
    problems = [_problem(file, err, index, model, data, root, variant) for err in errors]
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


def _problem(
    file: str,
    err: Any,
    index: YamlIndex,
    model: type[BaseModel],
    data: Any,
    root: str,
    variant: str,
) -> ConfigProblem:
    # Pydantic puts a discriminated union's tag into the location (nodes.menu.menu.timeout);
    # the YAML has no such key.
    loc = _without_tags(model, tuple(err["loc"]))
    kind: str = err["type"]
    is_key_error = bool(loc) and loc[-1] == "[key]"
    path = tuple(p for p in loc if p != "[key]")
    name = dotted(path)

    if kind == "missing":
        parent, missing = path[:-1], path[-1]
        position = key_position(parent, index)
        message = f"{dotted(parent) or root}: missing required key '{missing}'"
    elif kind == "extra_forbidden":
        position = key_position(path, index)
        message = f"{name}: unknown key '{path[-1]}'" + _suggest(model, path, data)
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = str(err.get("ctx", {}).get("discriminator", "'type'")).strip("'")
        tag = _value_at(data, (*path, tag_key))
        noun = f"{variant} type" if variant else tag_key
        if tag is not None:
            position = value_position((*path, tag_key), index)
            message = f"{name}: unknown {noun} '{tag}'"
        else:
            position = key_position(path, index)
            message = f"{name}: missing required key '{tag_key}'"
        tags = _union_tags(_type_at(model, path, data))
        if tags:
            message += f" ({tag_key}s: " + ", ".join(tags) + ")"
    elif is_key_error:
        position = key_position(path, index)
        message = f"{name}: {_clean(err['msg'])}"
    elif not path:  # a check on the whole document (e.g. numbers used twice)
        position = (1, 1)
        message = f"{root}: {_clean(err['msg'])}"
    else:
        position = value_position(path, index)
        message = f"{name}: {_clean(err['msg'])}"
        if kind == "string_type" and isinstance(err.get("input"), int | float):
            message += " (put it in quotes)"
    return ConfigProblem(file, position[0], position[1], message)


def _plain(node: Any, path: PathKey, index: YamlIndex) -> Any:
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


def _clean(msg: str) -> str:
    # Pydantic prefixes custom validator messages with "Value error, ".
    return msg.removeprefix("Value error, ")


def _value_at(data: Any, path: PathKey) -> Any:
    for part in path:
        # Two branches: mypy narrows `part` to int only in the second.
        if isinstance(data, dict) and part in data:  # noqa: SIM114
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _suggest(model: type[BaseModel], path: PathKey, data: Any) -> str:
    found = _type_at(model, path[:-1], data)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        return ""
    allowed = list(found.model_fields)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return " (allowed: " + ", ".join(allowed) + ")"


# --- Following a key path through the schema's type annotations ---------------------------


def _type_at(model: type[BaseModel], path: PathKey, data: Any) -> Any:
    """The type expected at ``path`` (a discriminated union resolved by the tag in ``data``);
    None where the path leaves the schema."""
    current: Any = model
    for n, part in enumerate(path):
        current = _select(current, _value_at(data, path[:n]))
        current = _child_type(current, part)
        if current is None:
            return None
    return _select(current, _value_at(data, path))


def _without_tags(model: type[BaseModel], loc: PathKey) -> PathKey:
    out: list[str | int] = []
    current: Any = model
    for part in loc:
        members = _union_members(current)
        if members and isinstance(part, str):
            chosen = [m for m in members if part in _tags_of(m, members)]
            if len(chosen) == 1:  # a tag pydantic inserted, not a key of the YAML
                current = chosen[0]
                continue
        out.append(part)
        current = None if current is None or part == "[key]" else _child_type(current, part)
    return tuple(out)


def _child_type(tp: Any, part: str | int) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if not isinstance(part, str) or part not in tp.model_fields:
            return None
        return _strip(tp.model_fields[part].annotation)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return _strip(args[0])
    if origin is dict and len(args) == 2:
        return _strip(args[1])
    return None


def _select(tp: Any, value: Any) -> Any:
    """The member of a union of models whose tag fields match ``value``; else ``tp``."""
    members = _union_members(tp)
    if not members or not isinstance(value, dict):
        return tp
    keys = _tag_keys(members)
    for member in members:
        if keys and all(value.get(key) in _literal(member, key) for key in keys):
            return member
    return tp


def _union_members(tp: Any) -> list[type[BaseModel]]:
    tp = _strip(tp)
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return []
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
        return args
    return []


def _union_tags(tp: Any) -> list[str]:
    members = _union_members(tp)
    return [str(v) for member in members for v in _tags_of(member, members)]


def _tag_keys(members: list[type[BaseModel]]) -> list[str]:
    """The discriminator: the fields that are a ``Literal`` in every member of the union."""
    keys = [key for key in members[0].model_fields if _literal(members[0], key)]
    return [key for key in keys if all(_literal(m, key) for m in members)]


def _tags_of(member: type[BaseModel], members: list[type[BaseModel]]) -> list[Any]:
    return [v for key in _tag_keys(members) for v in _literal(member, key)]


def _literal(model: type[BaseModel], key: str) -> tuple[Any, ...]:
    info = model.model_fields.get(key)
    if info is None or typing.get_origin(info.annotation) is not typing.Literal:
        return ()
    return typing.get_args(info.annotation)


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
