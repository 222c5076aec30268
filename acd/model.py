"""What the ACD is configured with: agents, queues, skill rules.

Skill rules widen with the caller's wait: an ordered list of steps, each with an optional
``wait_under`` (seconds) and requirements such as ``english >= 50``; the first step whose
``wait_under`` is above the caller's wait applies, and the last step normally has none. A
skill name may come from a call variable (``$lang >= 50`` with ``lang=english`` set by the
IVR). An agent without the skill never satisfies a requirement on it (a missing skill is not
0), and a requirement naming a variable the call does not have is not satisfied either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "AgentConfig",
    "QueueConfig",
    "Requirement",
    "RuleStep",
    "Strategy",
    "WrapUpMode",
    "parse_requirements",
]


class Strategy(Enum):
    RING_ALL = "ring_all"
    LONGEST_IDLE = "longest_idle"
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK_TIME = "least_talk_time"
    ROUND_ROBIN = "round_robin"
    LINEAR = "linear"
    RANDOM = "random"
    WEIGHTED_RANDOM = "weighted_random"
    RING_PROGRESSIVELY = "ring_progressively"
    BEST_SKILL = "best_skill"


class WrapUpMode(Enum):
    OPTIONAL = "optional"  # ends after the time, or earlier when the agent says so
    TIMED = "timed"  # ends after the time only
    FORCED = "forced"  # ends only when the agent enters a wrap-up code


_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_REQ = re.compile(r"^\s*(\$?[A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<)\s*(\d{1,3})\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """``skill op level``; ``skill`` starting with ``$`` names a call variable."""

    skill: str
    op: str
    level: int

    def skill_name(self, variables: Mapping[str, str]) -> str | None:
        if self.skill.startswith("$"):
            return variables.get(self.skill[1:]) or None
        return self.skill

    def holds(self, skills: Mapping[str, int], variables: Mapping[str, str]) -> bool:
        name = self.skill_name(variables)
        if name is None:
            return False
        have = skills.get(name)
        return have is not None and bool(_OPS[self.op](have, self.level))

    def __str__(self) -> str:
        return f"{self.skill} {self.op} {self.level}"


def parse_requirements(text: str) -> tuple[Requirement, ...]:
    """``"english >= 50 and billing > 0"`` (``and`` or ``,`` between requirements); an empty
    text means "any agent of the queue". Raises ValueError with the part it cannot read."""
    out: list[Requirement] = []
    for part in re.split(r",|\band\b", text):
        if not part.strip():
            continue
        m = _REQ.match(part)
        if m is None:
            raise ValueError(
                f"cannot read skill requirement {part.strip()!r} (e.g. 'english >= 50')"
            )
        level = int(m.group(3))
        if level > 100:
            raise ValueError(f"skill level {level} is above 100")
        out.append(Requirement(m.group(1), m.group(2), level))
    return tuple(out)


def required_skills(variables: Mapping[str, str]) -> tuple[str, ...]:
    """The skills a call requires: the ``skills`` variable (comma-separated, set from a
    dialplan route's or IVR queue node's ``skills:``). Every queue enforces them, with or
    without ``skill_rules`` (which may still ask for levels)."""
    return tuple(s.strip() for s in variables.get("skills", "").split(",") if s.strip())


@dataclass(frozen=True, slots=True)
class RuleStep:
    """Requirements that apply while the caller has waited less than ``wait_under``."""

    requirements: tuple[Requirement, ...] = ()
    wait_under: float | None = None

    def holds(self, skills: Mapping[str, int], variables: Mapping[str, str]) -> bool:
        for r in self.requirements:  # noqa: SIM110 - a plain loop is faster on this hot path
            if not r.holds(skills, variables):
                return False
        return True

    def score(self, skills: Mapping[str, int], variables: Mapping[str, str]) -> int:
        """The sum of the agent's levels in the skills this step names (best_skill)."""
        total = 0
        for r in self.requirements:
            name = r.skill_name(variables)
            if name is not None:
                total += skills.get(name, 0)
        return total


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    name: str = ""
    extensions: tuple[str, ...] = ()
    skills: Mapping[str, int] = field(default_factory=dict)
    wrap_up: float | None = None  # overrides the queue's wrap-up seconds
    # While logged in, the class of service of calls out from the agent's extensions
    # (None: each extension's own).
    class_of_service: str | None = None


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    # Agents who serve this queue, in order (linear, round robin); empty: every agent the
    # skill rules accept, in agent id order.
    members: tuple[str, ...] = ()
    skill_rules: tuple[RuleStep, ...] = ()
    ring_timeout: float = 15.0  # seconds an offer rings before it is taken back
    retry_delay: float = 5.0  # after an unanswered offer, before the next one
    auto_pause_after: int = 0  # missed offers in a row that pause an agent (0: never)
    wrap_up: float = 0.0
    wrap_up_mode: WrapUpMode = WrapUpMode.OPTIONAL
    wrap_up_codes: tuple[str, ...] = ()
    # What the agent panel shows for a code ("Sale made"); codes without one show as they are.
    wrap_up_labels: Mapping[str, str] = field(default_factory=dict)
    maxlen: int = 0  # waiting callers at most (0: no limit)
    join_empty: bool = True  # may a caller join when no agent could take the call?
    leave_when_empty: bool = False  # do waiting callers leave when that becomes true?
    max_wait: float = 0.0  # seconds before overflow (0: wait forever)
    overflow: str | None = None  # "queue:<name>", "ivr:<flow>", "voicemail:<box>", "callback"
    progressive_step: float = 10.0  # ring_progressively: one more agent every N seconds
    service_level: float = 20.0  # answered within this many seconds counts as in service
    last_agent_days: float = 0.0  # look back this many days for the caller's last agent
    last_agent_wait: float = 0.0  # and hold the call for them this many seconds (0: off)
    grade_priority: Mapping[str, int] = field(default_factory=dict)  # customer grade -> prio
    announce_position_every: float = 0.0
    announce_every: float = 0.0
    exit_key: str | None = None
    exit_destination: str | None = None  # default: the overflow destination
    callback_key: str | None = None
    callback_offer_after: float = 0.0  # offer a callback after this wait (0: not offered)
    callback_attempts: int = 3
    callback_retry_delay: float = 60.0
    callback_agent_first: bool = True  # call the agent, then the customer

    def step_for(self, waited: float) -> tuple[int, RuleStep]:
        """The skill-rule step that applies after ``waited`` seconds."""
        rules = self.skill_rules
        for i, step in enumerate(rules):
            if step.wait_under is None or waited < step.wait_under:
                return i, step
        if rules:
            return len(rules) - 1, rules[-1]
        return 0, _ANY

    def next_widening(self, waited: float) -> float | None:
        """Seconds of wait at which the next step starts, if any."""
        for step in self.skill_rules:
            if step.wait_under is not None and waited < step.wait_under:
                return step.wait_under
        return None


_ANY = RuleStep()
