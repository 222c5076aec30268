"""``config/default.yaml`` says its values are the defaults: hold it to that.

The shipped file is also the documentation of every key. Where it shows a value that is not
the schema's default (an example queue's exit key, the example extensions' names), the line
says so with an ``# example`` comment, on the key itself or on a key above it. This test walks
the file and the validated model side by side and lists every value that differs from its
field's default without such a mark (issue 15: ``exit_key: "0"`` was shown as the default
while the real default is none, so callers pressing 0 stayed queued).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

import config
from config import load_config

DEFAULT = Path(config.__file__).resolve().parent / "default.yaml"
MARK = "# example"


def _unmarked_differences() -> list[str]:
    text = DEFAULT.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = YAML(typ="rt").load(text)
    model = load_config(DEFAULT)
    problems: list[str] = []

    def is_marked(line: int) -> bool:
        return MARK in lines[line]

    def differs(path: str, value: Any, raw: Any, default: Any) -> bool:
        if path == "store.url":  # the loader makes the relative URL absolute: compare as written
            return bool(raw != default)
        return bool(value != default)

    def walk_model(obj: BaseModel, node: CommentedMap, marked: bool, path: str) -> None:
        fields = type(obj).model_fields
        for key in node:
            name = str(key)
            field = fields[name]
            line = node.lc.key(key)[0]
            here = marked or is_marked(line)
            value, raw = getattr(obj, name), node[key]
            where = f"{path}{name}"
            if isinstance(value, BaseModel) and isinstance(raw, CommentedMap):
                walk_model(value, raw, here, where + ".")
                continue
            if (
                isinstance(value, dict)
                and isinstance(raw, CommentedMap)
                and any(isinstance(v, BaseModel) for v in value.values())
            ):
                # Named entries (extensions, queues, agents...): the names are the admin's,
                # what each entry sets is checked against its fields' defaults.
                for k in raw:
                    entry_line = raw.lc.key(k)[0]
                    sub = raw[k]
                    entry = value[str(k)]
                    entry_marked = here or is_marked(entry_line)
                    if isinstance(sub, CommentedMap):
                        walk_model(entry, sub, entry_marked, f"{where}[{k}].")
                continue
            if field.is_required() or here:
                continue
            default = field.get_default(call_default_factory=True)
            if differs(where, value, raw, default):
                problems.append(
                    f"default.yaml:{line + 1}: {where} = {raw!r} is not the default "
                    f"{default!r} (mark the line '{MARK}' or use the default)"
                )

    walk_model(model, tree, False, "")
    return problems


def test_every_value_shown_is_the_default_or_marked_as_an_example() -> None:
    problems = _unmarked_differences()
    assert not problems, "\n".join(problems)


def test_the_marks_are_checked() -> None:
    # The check itself must be able to fail: the header promises defaults, and the first
    # example queue has values that are not (they carry the mark).
    text = DEFAULT.read_text(encoding="utf-8")
    assert "values below are the defaults" in text
    assert f'exit_key: "0"  {MARK}' in text
