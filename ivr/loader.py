"""Load IVR flows from ``<config>/ivr/*.yaml`` and validate the whole graph.

Theory of operation
-------------------
Each file holds one flow (``name``, ``start``, ``language``, ``nodes``). Loading a file runs
the same pipeline as :mod:`config.loader`, with the helpers of :mod:`config.problems`:
ruamel's round-trip parser keeps the line and column of every key and value, the tree is
converted to plain values while an index ``key path -> (key position, value position)`` is
built, pydantic validates each node against its model (``ivr.model``), and
:func:`config.problems.validation_problems` places every error in the file (dropping the
discriminator tag pydantic puts in locations such as ``nodes.menu.menu.timeout``).

Then the graph is checked as a whole, every problem pointing at the value that causes it:

- ``start`` and every edge (``next``, menu options, ``fallback``, branch conditions …) must
  name an existing node;
- prompt names must resolve in the prompt set of every language the flow can speak (its
  ``language`` plus those of its ``language`` nodes); ``file:`` paths, relative to the config
  folder, must exist;
- ``tts`` nodes need espeak-ng on the PATH;
- ``branch`` time conditions must be known to the host when it passes their names;
- nodes no edge reaches are reported as *warnings* (the flow still loads).

All problems of all files are returned; a file with an error yields no flow, so the host can
refuse a reload and keep the flows it runs (sessions in progress keep their own ``Flow``).
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from config.problems import (
    ConfigError,
    ConfigProblem,
    PathKey,
    YamlIndex,
    dotted,
    key_position,
    plain_tree,
    syntax_problem,
    validation_problems,
    value_position,
)
from ivr.model import Flow, LanguageNode, PromptSets, TtsNode

__all__ = ["IvrProblem", "check_flows", "load_flows", "parse_flow"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class IvrProblem(ConfigProblem):
    """A :class:`config.ConfigProblem` with a severity: errors reject the flow, warnings
    (unreachable nodes) do not."""

    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {prefix}{self.message}"


def load_flows(
    folder: str | Path,
    *,
    prompts: PromptSets | None = None,
    time_conditions: Collection[str] | None = None,
    espeak_available: bool | None = None,
    queues: Collection[str] | None = None,
) -> tuple[dict[str, Flow], list[IvrProblem]]:
    """Load every ``<folder>/ivr/*.yaml`` (``folder`` is the config folder).

    Returns the flows that have no error, by name, and every problem (errors and warnings)
    sorted by file, line and column. ``prompts`` defaults to ``<folder>/prompts`` over the
    shipped set. ``time_conditions``: names the host knows (None: not checked).
    ``espeak_available``: override the PATH check for espeak-ng (tests).
    """
    base = Path(folder)
    prompt_sets = prompts if prompts is not None else PromptSets.for_config(base)
    flows: dict[str, Flow] = {}
    problems: list[IvrProblem] = []
    first_file: dict[str, str] = {}
    for file in sorted((base / "ivr").glob("*.yaml")):
        name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(IvrProblem(name, 1, 1, f"cannot read flow: {exc}"))
            continue
        flow, found = parse_flow(
            text,
            name,
            base_dir=base,
            prompts=prompt_sets,
            time_conditions=time_conditions,
            espeak_available=espeak_available,
            default_name=file.stem,
            queues=queues,
        )
        problems += found
        if flow is None:
            continue
        if flow.name in flows:
            problems.append(
                IvrProblem(
                    name, 1, 1, f"flow {flow.name!r} is already defined in {first_file[flow.name]}"
                )
            )
            continue
        flows[flow.name] = flow
        first_file[flow.name] = name
    # A survey named by an extension/queue/transfer node is another flow: checked once all
    # flows are known; a flow naming a missing survey is refused like any other error.
    for name, flow in list(flows.items()):
        for node_name, survey, line, column in flow.survey_refs:
            if survey not in flows:
                close = difflib.get_close_matches(survey, list(flows), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(
                    IvrProblem(
                        first_file[name],
                        line,
                        column,
                        f"nodes.{node_name}.survey: unknown flow '{survey}'{hint}",
                    )
                )
                flows.pop(name, None)
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    return flows, problems


def check_flows(problems: list[IvrProblem]) -> None:
    """Raise :class:`config.ConfigError` listing the errors, if there are any."""
    errors: list[ConfigProblem] = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)


def parse_flow(
    text: str,
    file: str = "<string>",
    *,
    base_dir: Path | None = None,
    prompts: PromptSets | None = None,
    time_conditions: Collection[str] | None = None,
    espeak_available: bool | None = None,
    default_name: str | None = None,
    queues: Collection[str] | None = None,
) -> tuple[Flow | None, list[IvrProblem]]:
    """Parse and validate one flow. Returns ``(flow or None if any error, problems)``."""
    base = base_dir if base_dir is not None else Path.cwd()
    prompt_sets = prompts if prompts is not None else PromptSets.for_config(base)
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        return None, [_as_ivr(syntax_problem(file, exc))]
    except YAMLError as exc:
        return None, [IvrProblem(file, 1, 1, f"YAML error: {exc}")]

    data, index = plain_tree(tree)
    if not isinstance(data, dict):
        return None, [IvrProblem(file, 1, 1, "a flow must be a mapping with start and nodes")]
    if "name" not in data and default_name is not None:
        data["name"] = default_name
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        found = validation_problems(file, exc, index, Flow, data, root="flow", variant="node")
        return None, [_as_ivr(p) for p in found]

    problems = _check_graph(flow, file, index, base, prompt_sets, time_conditions, espeak_available)
    if queues is not None:
        for name, node in flow.nodes.items():
            queue = getattr(node, "queue", None)
            if isinstance(queue, str) and "${" not in queue and queue not in queues:
                path = ("nodes", name, "queue")
                known = ", ".join(sorted(queues)) or "none defined"
                problems.append(
                    _at_value(
                        file,
                        index,
                        path,
                        f"{dotted(path)}: unknown queue '{queue}' (known: {known})",
                    )
                )
    problems.sort(key=lambda p: (p.line, p.column))
    if any(p.severity == "error" for p in problems):
        return None, problems
    flow.bind(base_dir=base, prompts=prompt_sets, source=file)
    for node_name, node in flow.nodes.items():
        survey = getattr(node, "survey", None)
        if survey is not None:
            line, column = value_position(("nodes", node_name, "survey"), index)
            flow.survey_refs.append((node_name, survey, line, column))
    return flow, problems


def _as_ivr(problem: ConfigProblem) -> IvrProblem:
    return IvrProblem(problem.file, problem.line, problem.column, problem.message)


def _at_value(file: str, index: YamlIndex, path: PathKey, message: str) -> IvrProblem:
    line, column = value_position(path, index)
    return IvrProblem(file, line, column, message)


def _check_graph(
    flow: Flow,
    file: str,
    index: YamlIndex,
    base_dir: Path,
    prompts: PromptSets,
    time_conditions: Collection[str] | None,
    espeak_available: bool | None,
) -> list[IvrProblem]:
    problems: list[IvrProblem] = []
    names = list(flow.nodes)

    def unknown(path: PathKey, target: str, what: str) -> None:
        close = difflib.get_close_matches(target, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(_at_value(file, index, path, f"{what}: unknown node '{target}'{hint}"))

    if flow.start not in flow.nodes:
        unknown(("start",), flow.start, "start")

    languages = {flow.language} | {
        n.language for n in flow.nodes.values() if isinstance(n, LanguageNode)
    }
    if espeak_available is None:
        espeak_available = shutil.which("espeak-ng") is not None

    for name, node in flow.nodes.items():
        where = ("nodes", name)
        for rel, target in node.edges():
            if target not in flow.nodes:
                unknown((*where, *rel), target, dotted((*where, *rel)))
        for rel, prompt in node.prompt_refs():
            missing = [lang for lang in sorted(languages) if prompts.resolve(prompt, lang) is None]
            if missing:
                problems.append(
                    _at_value(
                        file,
                        index,
                        (*where, *rel),
                        f"{dotted((*where, *rel))}: prompt '{prompt}' not found in the "
                        f"{'/'.join(missing)} prompt set",
                    )
                )
        file_ref = getattr(node, "file", None)
        if isinstance(file_ref, str) and not (base_dir / file_ref).is_file():
            problems.append(
                _at_value(
                    file,
                    index,
                    (*where, "file"),
                    f"{dotted((*where, 'file'))}: file '{file_ref}' not found "
                    f"(relative to {base_dir})",
                )
            )
        if isinstance(node, TtsNode) and not espeak_available:
            problems.append(
                _at_value(
                    file,
                    index,
                    (*where, "type"),
                    f"{dotted(where)}: tts needs espeak-ng, which is not installed",
                )
            )
        conditions = getattr(node, "conditions", None)
        if time_conditions is not None and conditions is not None:
            for i, cond in enumerate(conditions):
                if cond.time is not None and cond.time not in time_conditions:
                    path = (*where, "conditions", i, "time")
                    known = ", ".join(sorted(time_conditions)) or "none defined"
                    problems.append(
                        _at_value(
                            file,
                            index,
                            path,
                            f"{dotted(path)}: unknown time condition '{cond.time}' "
                            f"(known: {known})",
                        )
                    )

    # Unreachable nodes: a warning, since half-built flows are normal while editing.
    seen: set[str] = set()
    todo = [flow.start] if flow.start in flow.nodes else []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [t for _, t in flow.nodes[current].edges() if t in flow.nodes]
    if flow.start in flow.nodes:
        for name in names:
            if name not in seen:
                line, column = key_position(("nodes", name), index)
                problems.append(
                    IvrProblem(
                        file,
                        line,
                        column,
                        f"nodes.{name}: unreachable from start '{flow.start}'",
                        "warning",
                    )
                )
    return problems
