"""IVR: YAML flows (``<config>/ivr/*.yaml``), a validated node graph and the engine that runs a
flow on one call through the small :class:`IvrCall` interface the host implements.

Typical host use::

    flows, problems = load_flows(config_dir, time_conditions=known_names)
    check_flows(problems)                      # raises config.ConfigError on errors
    session = IvrSession(flows["main"], call_control, time_condition=tc, customer_lookup=f)
    outcome = await session.start()            # Outcome(kind, data); session.key_trail
"""

from ivr.engine import (
    CallerHungUp,
    CustomerLookup,
    DigitPressed,
    IvrCall,
    IvrEvent,
    IvrFinished,
    IvrResult,
    IvrSession,
    NodeEntered,
    PromptMissing,
    TimeCondition,
    TtsCache,
    TtsError,
    Webhook,
)
from ivr.loader import IvrProblem, check_flows, load_flows, parse_flow
from ivr.model import DEFAULT_PROMPTS_DIR, LANGUAGES, Flow, Outcome, PromptSets
from ivr.say import say, say_date, say_digits, say_number
from ivr.webhook import WebhookError, http_json

__all__ = [
    "DEFAULT_PROMPTS_DIR",
    "LANGUAGES",
    "CallerHungUp",
    "CustomerLookup",
    "DigitPressed",
    "Flow",
    "IvrCall",
    "IvrEvent",
    "IvrFinished",
    "IvrProblem",
    "IvrResult",
    "IvrSession",
    "NodeEntered",
    "Outcome",
    "PromptMissing",
    "PromptSets",
    "TimeCondition",
    "TtsCache",
    "TtsError",
    "Webhook",
    "WebhookError",
    "check_flows",
    "http_json",
    "load_flows",
    "parse_flow",
    "say",
    "say_date",
    "say_digits",
    "say_number",
]
