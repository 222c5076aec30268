"""Edits of ``switchboard.yaml`` made for the API (extensions added, removed, passwords
changed) on the round-trip tree, so the admin's comments, order and quoting survive.

These only transform text; the caller (``app/``) validates the result like any config
before it replaces the file, then reloads.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

__all__ = ["ExtensionExistsError", "add_extension", "remove_extension", "set_extension_password"]


class ExtensionExistsError(Exception):
    """The extension to add is in the config already."""


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    return yaml


def _edit(text: str, change: Any) -> str:
    yaml = _yaml()
    tree = yaml.load(text)
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        raise ValueError("the config is not a YAML mapping")
    extensions = tree.get("extensions")
    if extensions is None:
        extensions = tree["extensions"] = CommentedMap()
    if not isinstance(extensions, CommentedMap):
        raise ValueError("extensions: is not a mapping")
    change(extensions)
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def _key(extensions: CommentedMap, number: str) -> Any:
    """The key ``number`` is stored under (quoted string, or a bare int in hand-written YAML)."""
    for key in extensions:
        if str(key) == number:
            return key
    return None


def add_extension(text: str, number: str, name: str | None, password: str) -> str:
    """``text`` with extension ``number`` added; :class:`ExtensionExistsError` if it is
    there already."""

    def change(extensions: CommentedMap) -> None:
        if _key(extensions, number) is not None:
            raise ExtensionExistsError(number)
        entry = CommentedMap()
        if name:
            entry["name"] = name
        entry["password"] = DoubleQuotedScalarString(password)
        entry.fa.set_flow_style()
        extensions[DoubleQuotedScalarString(number)] = entry

    return _edit(text, change)


def remove_extension(text: str, number: str) -> str:
    """``text`` without extension ``number``; ``LookupError`` if there is none."""

    def change(extensions: CommentedMap) -> None:
        key = _key(extensions, number)
        if key is None:
            raise LookupError(number)
        del extensions[key]

    return _edit(text, change)


def set_extension_password(text: str, number: str, password: str) -> str:
    """``text`` with extension ``number``'s password replaced; ``LookupError`` if none."""

    def change(extensions: CommentedMap) -> None:
        key = _key(extensions, number)
        if key is None:
            raise LookupError(number)
        entry = extensions[key]
        if not isinstance(entry, dict):
            raise ValueError(f"extensions.{number} is not a mapping")
        entry["password"] = DoubleQuotedScalarString(password)

    return _edit(text, change)
