"""What a config reload changed, what it applied, and what waits for a restart.

Theory of operation
-------------------
``switchboard config reload`` (SIGHUP) swaps in the routing tables live: extensions,
conferences, dialplan, feature codes, the ACD's agents, queues and settings, IVR flows, and
the SIP server's digest and registration settings (``sip.auth``, ``sip.registration``).
Sockets, the RTP range, the media workers, the store, the trunks and the server's identity
(realm, advertised host, User-Agent) are taken at start: a change to them keeps serving with the old
value until the next start, and every reload names those keys until then.

:func:`changed_keys` diffs two configs into dotted keys (``rtp.ports``,
``sip.auth.algorithms``, ``extensions.1004``); :class:`ReloadReport` sorts them into applied
and restart-needed. The server writes the report of each SIGHUP to ``reload-status.json`` in
the config folder (:func:`write_report`), where the CLI that sent the signal reads it
(:func:`read_report`) to tell the admin exactly what happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config import SwitchboardConfig

__all__ = [
    "LIVE_KEYS",
    "REPORT_FILE",
    "ReloadReport",
    "changed_keys",
    "read_report",
    "write_report",
]

# Config keys a reload applies to the running process (a key and everything under it).
LIVE_KEYS = (
    "extensions",
    "conferences",
    "dialplan",
    "features",
    "acd",
    "agents",
    "queues",
    "sip.auth",
    "sip.registration",
    # recording.folder waits for a restart (recordings in progress are written there)
    "recording.record",
    "recording.sample_percent",
    "recording.format",
    "recording.retention_days",
    "recording.announcement",
    "recording.toggle_code",
    "recording.pause_code",
    "reports",
)

REPORT_FILE = "reload-status.json"


def _is_live(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in LIVE_KEYS)


def _diff(old: Any, new: Any, prefix: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(key)
            else:
                _diff(old[k], new[k], key, out)
    elif old != new:
        out.append(prefix)


def changed_keys(old: SwitchboardConfig, new: SwitchboardConfig) -> list[str]:
    """Dotted keys whose value differs (mappings are descended, lists compared whole)."""
    out: list[str] = []
    _diff(old.model_dump(mode="json"), new.model_dump(mode="json"), "", out)
    return out


@dataclass(slots=True)
class ReloadReport:
    """The outcome of one reload. ``restart_needed`` lists every key that differs from the
    config the process started with and that a reload cannot apply (still on the old value)."""

    ok: bool
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    at: float = 0.0

    @classmethod
    def compare(
        cls, started: SwitchboardConfig, current: SwitchboardConfig, new: SwitchboardConfig
    ) -> ReloadReport:
        """``started``: the config of the process's start; ``current``: the live one."""
        return cls(
            ok=True,
            applied=[k for k in changed_keys(current, new) if _is_live(k)],
            restart_needed=[k for k in changed_keys(started, new) if not _is_live(k)],
        )

    def summary(self) -> str:
        """One paragraph for a terminal: what was applied, what needs a restart."""
        if not self.ok:
            return "reload refused:\n" + "\n".join(self.problems)
        lines = [f"reloaded (pid {self.pid})"]
        lines.append("applied: " + (", ".join(self.applied) if self.applied else "no changes"))
        if self.restart_needed:
            lines.append(
                "needs a restart (the old value keeps serving until then): "
                + ", ".join(self.restart_needed)
            )
        return "\n".join(lines)


def write_report(folder: Path, report: ReloadReport) -> None:
    """Write ``report`` to ``folder/reload-status.json`` atomically (never half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=".reload-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(report), f)
        os.replace(tmp, folder / REPORT_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def read_report(folder: Path) -> ReloadReport | None:
    """The last report written in ``folder``, or None (no file, or not a report)."""
    try:
        data = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        return ReloadReport(**data)
    except (OSError, ValueError, TypeError):
        return None
