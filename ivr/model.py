"""IVR flow model: pydantic models for the nodes of a flow, prompt sets and outcomes.

Theory of operation
-------------------
A flow is a named graph: ``start`` names the first node and every node names the nodes that
may follow it (``next``, menu ``options``, ``fallback``, branch conditions ...). The node's
``type`` selects its model (a pydantic discriminated union); every model forbids unknown keys
so a typo is an error with a position instead of a silently ignored setting.

These models check what concerns one node (a regex compiles, ``min_digits <= max_digits``,
a play node names a prompt or a file). What ties nodes together — edges that point nowhere,
prompts missing from the prompt sets, unreachable nodes — is checked by :mod:`ivr.loader`,
which knows where each value was written. Each node therefore describes its edges and
prompts as ``(field path, value)`` pairs, so the loader can point at the exact value.

Models are frozen: a running session keeps the :class:`Flow` it started with while a reload
builds new ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_PROMPTS_DIR",
    "DTMF_KEYS",
    "LANGUAGES",
    "BranchNode",
    "CallbackNode",
    "CollectNode",
    "Condition",
    "ExtensionNode",
    "Flow",
    "HangupNode",
    "LanguageNode",
    "LookupNode",
    "MenuNode",
    "Node",
    "Outcome",
    "PlayNode",
    "PromptSets",
    "QueueNode",
    "SayNode",
    "SetNode",
    "SurveyNode",
    "TransferNode",
    "TtsNode",
    "VoicemailNode",
]

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
LANGUAGES = ("en", "zh")
DTMF_KEYS = "0123456789*#"
PROMPT_EXTENSIONS = (".wav", ".flac", ".ogg")

Language = Literal["en", "zh"]
FieldPath = tuple[str | int, ...]
SurveyRating = Literal["satisfied", "neutral", "unsatisfied"]


def _scalar_to_str(value: Any) -> Any:
    # YAML reads `1001`, `5.5` as numbers; where a field holds text (digits, templates) keep
    # them as written instead of rejecting them.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_scalar_to_str)]
Seconds = Annotated[float, Field(gt=0, le=3600)]
Retries = Annotated[int, Field(ge=0, le=20)]


def _check_regex(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression {value!r}: {exc}") from None
    return value


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Node(_Model):
    """Fields every node may have; subclasses list which fields are edges and prompts."""

    # Field names that hold the name of another node (optional ones may be None).
    _edge_fields: ClassVar[tuple[str, ...]] = ("next",)
    # Field names that hold a prompt name or a list of prompt names.
    _prompt_fields: ClassVar[tuple[str, ...]] = ()

    def edges(self) -> list[tuple[FieldPath, str]]:
        """Every node this one can lead to, with the field path that names it."""
        out: list[tuple[FieldPath, str]] = []
        for name in self._edge_fields:
            value = getattr(self, name, None)
            if isinstance(value, str):
                out.append(((name,), value))
        return out

    def prompt_refs(self) -> list[tuple[FieldPath, str]]:
        """Every prompt name this node plays, with the field path that names it."""
        out: list[tuple[FieldPath, str]] = []
        for name in self._prompt_fields:
            value = getattr(self, name, None)
            if isinstance(value, str):
                out.append(((name,), value))
            elif isinstance(value, list):
                out += [((name, i), v) for i, v in enumerate(value)]
        return out


PromptRef = str | list[str]


class PlayNode(_Node):
    """Play prompts (by name, from the caller's prompt set) or a file; a key may interrupt."""

    type: Literal["play"]
    prompt: PromptRef | None = None
    file: str | None = None
    interruptible: bool = True
    next: str | None = None
    _prompt_fields = ("prompt",)

    @model_validator(mode="after")
    def _one_source(self) -> PlayNode:
        if (self.prompt is None) == (self.file is None):
            raise ValueError("a play node needs exactly one of 'prompt' or 'file'")
        return self


class SayNode(_Node):
    """Read a value aloud as digits, a number or a date (``${var}`` templates allowed)."""

    type: Literal["say"]
    kind: Literal["digits", "number", "date"]
    value: Text
    language: Language | None = None  # default: the session's current language
    interruptible: bool = True
    next: str | None = None


class TtsNode(_Node):
    """Speak text with espeak-ng (cached per text and voice)."""

    type: Literal["tts"]
    text: Text
    voice: str | None = None  # default: "en" or "cmn" after the session's language
    interruptible: bool = True
    next: str | None = None


class MenuNode(_Node):
    """Play a prompt and branch on one key; invalid keys and silence are retried."""

    type: Literal["menu"]
    prompt: PromptRef
    options: dict[str, str]
    timeout: Seconds = 5.0
    retries: Retries = 2
    invalid_prompt: str | None = "invalid"
    timeout_prompt: str | None = "timeout"
    fallback: str | None = None  # after the last retry; None hangs up
    _edge_fields = ("fallback",)
    _prompt_fields = ("prompt", "invalid_prompt", "timeout_prompt")

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_scalar_to_str(k): v for k, v in value.items()}
        return value

    @field_validator("options")
    @classmethod
    def _keys_are_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a menu needs at least one option")
        for key in value:
            if len(key) != 1 or key not in DTMF_KEYS:
                raise ValueError(f"option {key!r} is not a single phone key (0-9, *, #)")
        return value

    def edges(self) -> list[tuple[FieldPath, str]]:
        return [(("options", k), v) for k, v in self.options.items()] + super().edges()


class CollectNode(_Node):
    """Collect several digits into a variable (``#`` ends, timeouts, regex, retries)."""

    type: Literal["collect"]
    prompt: PromptRef | None = None
    variable: str
    min_digits: Annotated[int, Field(ge=0, le=64)] = 1
    max_digits: Annotated[int, Field(ge=1, le=64)] = 20
    terminator: Literal["#", "*"] | None = "#"
    first_digit_timeout: Seconds = 5.0
    inter_digit_timeout: Seconds = 3.0
    pattern: str | None = None
    retries: Retries = 2
    invalid_prompt: str | None = "invalid"
    timeout_prompt: str | None = "timeout"
    next: str
    fallback: str | None = None
    _edge_fields = ("next", "fallback")
    _prompt_fields = ("prompt", "invalid_prompt", "timeout_prompt")

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        return _check_regex(value)

    @model_validator(mode="after")
    def _bounds(self) -> CollectNode:
        if self.min_digits > self.max_digits:
            raise ValueError(
                f"min_digits ({self.min_digits}) is larger than max_digits ({self.max_digits})"
            )
        return self


class SetNode(_Node):
    """Assign variables (values may use ``${var}``)."""

    type: Literal["set"]
    variables: dict[str, Text]
    next: str | None = None


class Condition(_Model):
    """One branch condition: every test given must hold; no test at all always holds.

    ``variable`` names a flow variable (``caller`` and ``did`` are always set). ``time``
    names a time condition the host evaluates (``time_condition(name, now)``).
    """

    variable: str | None = None
    equals: Text | None = None
    not_equals: Text | None = None
    one_of: list[Text] | None = None
    prefix: Text | None = None
    matches: str | None = None
    empty: bool | None = None
    time: str | None = None
    next: str

    @field_validator("matches")
    @classmethod
    def _matches_compiles(cls, value: str | None) -> str | None:
        return _check_regex(value)

    @model_validator(mode="after")
    def _needs_variable(self) -> Condition:
        tests = (self.equals, self.not_equals, self.one_of, self.prefix, self.matches, self.empty)
        if self.variable is None and any(t is not None for t in tests):
            raise ValueError("a condition that tests a value needs 'variable'")
        return self


class BranchNode(_Node):
    """Go to the ``next`` of the first condition that holds, else to ``default``."""

    type: Literal["branch"]
    conditions: list[Condition]
    default: str
    _edge_fields = ("default",)

    def edges(self) -> list[tuple[FieldPath, str]]:
        out: list[tuple[FieldPath, str]] = [
            (("conditions", i, "next"), c.next) for i, c in enumerate(self.conditions)
        ]
        return out + super().edges()


class LookupNode(_Node):
    """Look the caller up (customer store or HTTP webhook); results become ``<into>.<key>``
    variables and ``<into>.found`` is ``true``/``false``."""

    type: Literal["lookup"]
    source: Literal["customer", "webhook"] = "customer"
    url: str | None = None
    method: Literal["GET", "POST"] = "POST"
    timeout: Seconds = 3.0
    into: str = "customer"
    next: str | None = None
    not_found: str | None = None  # default: next
    fallback: str | None = None  # on error or timeout; default: not_found, then next
    _edge_fields = ("next", "not_found", "fallback")

    @model_validator(mode="after")
    def _webhook_url(self) -> LookupNode:
        if self.source == "webhook":
            if not self.url:
                raise ValueError("a webhook lookup needs 'url'")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url {self.url!r} must start with http:// or https://")
        elif self.url is not None:
            raise ValueError("'url' only applies to source: webhook")
        return self


class _RoutingNode(_Node):
    """A node that hands the caller on: an optional prompt first, and an optional survey flow
    to run for the caller after the callee hangs up."""

    prompt: PromptRef | None = None
    survey: str | None = None
    _edge_fields = ()
    _prompt_fields = ("prompt",)


class QueueNode(_RoutingNode):
    """Hand the call to an ACD queue (an outcome the host carries out)."""

    type: Literal["queue"]
    queue: Text
    priority: Text = "0"
    skills: list[Text] = Field(default_factory=list)


class ExtensionNode(_RoutingNode):
    """Connect the caller to an extension (``transfer`` on the call, then the outcome)."""

    type: Literal["extension"]
    extension: Text


class TransferNode(_RoutingNode):
    """Transfer the caller to an extension, or with ``number:<digits>`` written in the flow
    (no ``${...}`` in it: toll fraud) to an outside number through the outbound rules."""

    type: Literal["transfer"]
    destination: Text


class VoicemailNode(_Node):
    """Record a message after the beep; the outcome names the file for the host to store."""

    type: Literal["voicemail"]
    mailbox: Text | None = None  # default: the called number (did)
    prompt: PromptRef | None = "voicemail-after-beep"
    max_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    beep: bool = True
    next: str | None = None  # e.g. a thank-you and hang-up
    _prompt_fields = ("prompt",)


class CallbackNode(_Node):
    """Collect a number to be called back (``#`` alone: the caller's own number)."""

    type: Literal["callback"]
    prompt: PromptRef | None = "enter-number"
    queue: Text | None = None
    min_digits: Annotated[int, Field(ge=1, le=32)] = 3
    max_digits: Annotated[int, Field(ge=1, le=32)] = 15
    first_digit_timeout: Seconds = 5.0
    inter_digit_timeout: Seconds = 3.0
    retries: Retries = 2
    use_caller_id: bool = True
    invalid_prompt: str | None = "invalid"
    timeout_prompt: str | None = "timeout"
    confirm_prompt: PromptRef | None = "thank-you"
    next: str | None = None
    fallback: str | None = None
    _edge_fields = ("next", "fallback")
    _prompt_fields = ("prompt", "invalid_prompt", "timeout_prompt", "confirm_prompt")


def _default_ratings() -> dict[str, SurveyRating]:
    return {"1": "satisfied", "2": "neutral", "3": "unsatisfied"}


class SurveyNode(_Node):
    """Post-call satisfaction: one key → satisfied/neutral/unsatisfied, or why not rated."""

    type: Literal["survey"]
    prompt: PromptRef = "survey"
    options: dict[str, SurveyRating] = Field(default_factory=_default_ratings)
    timeout: Seconds = 5.0
    retries: Retries = 0
    invalid_prompt: str | None = "invalid"
    thanks_prompt: PromptRef | None = "thank-you"
    next: str | None = None
    _prompt_fields = ("prompt", "invalid_prompt", "thanks_prompt")

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_scalar_to_str(k): v for k, v in value.items()}
        return value

    @field_validator("options")
    @classmethod
    def _keys_are_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if len(key) != 1 or key not in DTMF_KEYS:
                raise ValueError(f"option {key!r} is not a single phone key (0-9, *, #)")
        return value


class LanguageNode(_Node):
    """Switch the session's prompt set."""

    type: Literal["language"]
    language: Language
    next: str | None = None


class HangupNode(_Node):
    """Optionally play a prompt, then hang up."""

    type: Literal["hangup"]
    prompt: PromptRef | None = None
    cause: str = "normal"
    _edge_fields = ()
    _prompt_fields = ("prompt",)


Node = Annotated[
    PlayNode
    | SayNode
    | TtsNode
    | MenuNode
    | CollectNode
    | SetNode
    | BranchNode
    | LookupNode
    | QueueNode
    | ExtensionNode
    | TransferNode
    | VoicemailNode
    | CallbackNode
    | SurveyNode
    | LanguageNode
    | HangupNode,
    Field(discriminator="type"),
]

NODE_TYPES: tuple[str, ...] = (
    "play",
    "say",
    "tts",
    "menu",
    "collect",
    "set",
    "branch",
    "lookup",
    "queue",
    "extension",
    "transfer",
    "voicemail",
    "callback",
    "survey",
    "language",
    "hangup",
)


class PromptSets:
    """Where prompt names resolve: ``<root>/<language>/<name>.wav`` (or .flac/.ogg), searching
    ``roots`` in order (a config folder's ``prompts/`` before the shipped default set)."""

    def __init__(self, roots: list[Path] | tuple[Path, ...]) -> None:
        self.roots = tuple(Path(r) for r in roots)
        self._found: dict[tuple[str, str], Path | None] = {}

    @classmethod
    def default(cls) -> PromptSets:
        """Only the prompt set shipped in ``ivr/prompts``."""
        return cls([DEFAULT_PROMPTS_DIR])

    @classmethod
    def for_config(cls, config_dir: Path) -> PromptSets:
        """``<config_dir>/prompts`` overriding the shipped set."""
        return cls([Path(config_dir) / "prompts", DEFAULT_PROMPTS_DIR])

    def resolve(self, name: str, language: str) -> Path | None:
        """The file for prompt ``name`` in ``language``, or None."""
        key = (name, language)
        if key in self._found:
            return self._found[key]
        found: Path | None = None
        if name and "/" not in name and "\\" not in name and not name.startswith("."):
            for root in self.roots:
                for ext in PROMPT_EXTENSIONS:
                    path = root / language / f"{name}{ext}"
                    if path.is_file():
                        found = path
                        break
                if found is not None:
                    break
        self._found[key] = found
        return found


class Flow(_Model):
    """One IVR flow: a ``start`` node and named nodes. Built by :func:`ivr.loader.load_flows`,
    which also sets where its files and prompts are found."""

    name: str
    start: str
    language: Language = "en"
    nodes: dict[str, Node]

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    # (node, survey flow name, line, column) of every ``survey:`` key, checked across flows.
    _survey_refs: list[tuple[str, str, int, int]] = PrivateAttr(default_factory=list)
    _prompts: PromptSets = PrivateAttr(default_factory=PromptSets.default)
    _source: str = PrivateAttr(default="<string>")

    @property
    def base_dir(self) -> Path:
        """Folder that relative ``file:`` paths are resolved against (the config folder)."""
        return self._base_dir

    @property
    def prompts(self) -> PromptSets:
        """Prompt sets this flow's prompt names resolve against."""
        return self._prompts

    @property
    def source(self) -> str:
        """File the flow was loaded from."""
        return self._source

    def bind(self, *, base_dir: Path, prompts: PromptSets, source: str) -> Flow:
        """Set where files and prompts are found (the loader does this once)."""
        self._base_dir = base_dir
        self._prompts = prompts
        self._source = source
        return self

    @property
    def survey_refs(self) -> list[tuple[str, str, int, int]]:
        """``(node, survey flow, line, column)`` of every ``survey:`` key in this flow."""
        return self._survey_refs


OutcomeKind = Literal[
    "extension",
    "transfer",
    "queue",
    "voicemail",
    "callback",
    "survey_result",
    "hangup",
    "error",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a flow ended, for the host to carry out and record.

    ``kind`` / ``data``:

    - ``extension``: ``{"extension": "1002"}`` (``transfer()`` was already called)
    - ``transfer``: ``{"destination": "..."}`` (``transfer()`` was already called)
    - ``queue``: ``{"queue": "sales", "priority": 5, "skills": ["en", "billing"]}``
    - ``voicemail``: ``{"mailbox": "1001", "path": "/…/x.wav", "seconds": 12.3}``
    - ``callback``: ``{"number": "5551234", "queue": "sales" | None}``
    - ``survey_result``: ``{"result": "satisfied" | "neutral" | "unsatisfied" |
      "hung up without rating" | "invalid key" | "no rating entered", "digit": "1" | None}``
    - ``hangup``: ``{"by": "caller" | "ivr", "cause": "...", "node": "..."}``
    - ``error``: ``{"error": "...", "node": "..."}`` (a bug; the call was hung up)
    """

    kind: OutcomeKind
    data: dict[str, Any] = field(default_factory=dict)
