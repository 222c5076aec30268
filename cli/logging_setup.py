"""structlog configuration for the ``switchboard`` process.

Everything goes through the stdlib ``logging`` root handler with structlog's
``ProcessorFormatter``: structlog loggers and plain ``logging`` loggers (asyncio, SQLAlchemy,
third-party libraries) come out in the same format — readable key=value lines on a terminal
(coloured when stderr is a TTY), or one JSON object per line with ``--log-json``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure_logging(
    *, json: bool = False, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging. Safe to call more than once."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    out = stream if stream is not None else sys.stderr

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
        final: list[Any] = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
        final = [renderer]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # A filtering logger turns calls below the level into no-ops before any processor
        # runs: debug lines on the RTP and SIP hot paths then cost one method call.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Not cached: modules bind loggers at import time and tests reconfigure.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # SQLAlchemy's engine logger echoes every statement at INFO: far too chatty even for debug.
    logging.getLogger("sqlalchemy.engine").setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
