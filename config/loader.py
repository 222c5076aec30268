"""Load ``switchboard.yaml`` and report every problem as ``file:line:column: message``.

Theory of operation:

1. ruamel.yaml's round-trip loader parses the file; :mod:`config.problems` turns the tree
   into plain values and an index of where every key and value was written. A syntax error
   becomes a single problem at ruamel's mark.
2. Pydantic validates the plain tree against :class:`config.schema.SwitchboardConfig`; every
   error becomes a problem at its key or value (:func:`config.problems.validation_problems`).
   All errors are reported, not just the first one.
3. Relative SQLite paths in ``store.url`` are resolved against the config file's folder, so a
   config behaves the same whatever the working directory of ``switchboard serve`` is.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from config.problems import (
    ConfigError,
    ConfigProblem,
    dotted,
    plain_tree,
    syntax_problem,
    validation_problems,
    value_position,
)
from config.schema import KnownNames, SwitchboardConfig, dialplan_problems

__all__ = [
    "CONFIG_FILENAME",
    "ConfigError",
    "ConfigProblem",
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
        raise ConfigError([syntax_problem(file, exc)]) from None
    except YAMLError as exc:  # errors without a mark (rare): point at the start
        raise ConfigError([ConfigProblem(file, 1, 1, f"YAML error: {exc}")]) from None

    data, index = plain_tree(tree)
    if data is None:  # an empty file means "all defaults"
        data = {}
    if not isinstance(data, dict):
        message = "top level: the config must be a mapping of sections (sip, rtp, store, ...)"
        raise ConfigError([ConfigProblem(file, 1, 1, message)])
    try:
        config = SwitchboardConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(file, exc, index, SwitchboardConfig, data)) from None
    # References between values (a destination naming an unknown extension, ...) point at
    # the value that names the missing thing.
    refs = dialplan_problems(config, known)
    if refs:
        problems = []
        for path, message in refs:
            line, column = value_position(path, index)
            problems.append(ConfigProblem(file, line, column, f"{dotted(path)}: {message}"))
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
