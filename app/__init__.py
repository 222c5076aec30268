"""The composition root: builds a running Switchboard from a config and a store.

The parts are built here and nowhere else: the SIP server (with the media implementation the
config asks for), the store, the ACD host and the IVR host, which drive calls only through the
server's call-control seam (``server.control``). The config becomes domain settings in
:mod:`app.settings`; the store meets the SIP core in :mod:`app.store`. This package also
reloads the config (SIGHUP) and runs the whole until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import structlog

from acd.host import AcdHost
from app.media import build_media
from app.reload import ReloadReport, write_report
from app.settings import (
    acd_settings_from_config,
    build_dialplan,
    conferences_from_config,
    extensions_from_config,
    inbound_trunks_from_config,
    mailboxes_from_config,
    outbound_policy_from_config,
    outbound_trunks_from_config,
    pbx_feature_codes,
    recording_settings_from_config,
    settings_from_config,
    tls_settings_from_config,
    trunks_from_config,
)
from app.store import StorePersistence
from config import (
    ConfigError,
    ConfigProblem,
    SwitchboardConfig,
    check_config,
    config_file_path,
    load_config,
)
from config.schema import KnownNames
from crm import Store, VoicemailData
from ivr import Flow, PromptSets, check_flows, load_flows
from ivr.host import IvrHost
from pbx import dialplan as dp
from pbx.server import SipServer
from recorder.service import Recorder

__all__ = [
    "ReloadReport",
    "Running",
    "StorePersistence",
    "build_server",
    "export_voicemail",
    "load_all",
    "queue_log_lines",
    "reload_config",
    "reload_config_async",
    "run",
    "settings_from_config",
    "voicemail_messages",
]

log = structlog.get_logger("switchboard")


def load_ivr(cfg: SwitchboardConfig, config_dir: Path) -> dict[str, Flow]:
    """The IVR flows of ``config_dir/ivr/*.yaml``; ``ConfigError`` lists every problem."""
    flows, problems = load_flows(
        config_dir, time_conditions=set(cfg.dialplan.time_conditions), queues=set(cfg.queues)
    )
    for problem in problems:
        if problem.severity == "warning":
            log.warning("ivr_flow_warning", problem=str(problem))
    check_flows(problems)
    return flows


class _PromptNames(Collection[str]):
    """The prompts a dialplan may name: anything :func:`prompt_resolver` finds."""

    def __init__(self, resolve: Callable[[str], str | None]) -> None:
        self._resolve = resolve

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._resolve(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def load_all(path: Path) -> tuple[SwitchboardConfig, dict[str, Flow]]:
    """Load the config at ``path`` and its IVR flows, checking the dialplan against the flows
    and prompts that exist. Raises ``ConfigError`` listing every problem (file:line:column)
    of the config *and* of the flows in one go, even when the config itself has errors."""
    first = check_config(path)
    folder = config_file_path(path).resolve().parent
    if first.config is None:  # unreadable or not YAML: nothing to check the flows against
        raise ConfigError(first.problems)
    cfg = first.config
    flows, problems = load_flows(
        folder, time_conditions=set(cfg.dialplan.time_conditions), queues=set(cfg.queues)
    )
    for problem in problems:
        if problem.severity == "warning":
            log.warning("ivr_flow_warning", problem=str(problem))
    # A flow with errors is reported once, by the IVR loader, not again as "unknown flow".
    names = set(flows) | {f.stem for f in (folder / "ivr").glob("*.yaml")}
    known = KnownNames(ivr_flows=names, prompts=_PromptNames(prompt_resolver(folder)))
    errors: list[ConfigProblem] = [p for p in problems if p.severity == "error"]
    second = check_config(path, known=known)
    errors = [*second.problems, *errors]
    if errors or second.config is None:
        raise ConfigError(errors)
    return second.config, flows


def prompt_resolver(config_dir: Path) -> Callable[[str], str | None]:
    """Dialplan prompts: a prompt name from the prompt sets (English), or a file path
    relative to the config folder."""
    sets = PromptSets.for_config(config_dir)

    def resolve(name: str) -> str | None:
        found = sets.resolve(name, "en")
        if found is not None:
            return str(found)
        path = config_dir / name
        return str(path) if path.is_file() else None

    return resolve


@dataclass(slots=True)
class Running:
    """What a running Switchboard is made of. ``config`` is the live config (replaced by each
    reload); ``started`` the one it started with, which keys a reload cannot apply keep."""

    server: SipServer
    store: Store
    ivr: IvrHost
    acd: AcdHost
    recorder: Recorder
    config: SwitchboardConfig
    started: SwitchboardConfig


async def build_server(cfg: SwitchboardConfig, config_dir: Path | None = None) -> Running:
    flows = load_ivr(cfg, config_dir) if config_dir is not None else {}
    folder = config_dir or Path.cwd()
    plan = build_dialplan(cfg)
    store = await Store.open(cfg.store.url)
    # Trunk host names are resolved here (getaddrinfo), TLS files read (a self-signed pair
    # made on first start): off the event loop.
    inbound_trunks, outbound_trunks, tls = await asyncio.to_thread(
        lambda: (
            inbound_trunks_from_config(cfg),
            outbound_trunks_from_config(cfg),
            tls_settings_from_config(cfg, folder),
        )
    )
    server = SipServer(
        replace(settings_from_config(cfg), tls=tls),
        extensions_from_config(cfg),
        StorePersistence(store),
        conferences=conferences_from_config(cfg),
        dialplan=plan,
        media=build_media(cfg),
        prompt_path=prompt_resolver(folder) if config_dir is not None else None,
        inbound_trunks=inbound_trunks,
        outbound_trunks=outbound_trunks,
        outbound_policy=outbound_policy_from_config(cfg),
        trunks=trunks_from_config(cfg),
    )
    acd = AcdHost(server.control, store, acd_settings_from_config(cfg, folder))
    ivr = IvrHost(
        server.control,
        store,
        plan,
        flows,
        folder,
        callback_requests=acd.add_callback,
        mailboxes=mailboxes_from_config(cfg, folder),
    )
    recorder = Recorder(
        server.control,
        store,
        recording_settings_from_config(cfg, folder, prompt_resolver(folder)),
    )
    await acd.start()
    await recorder.open()  # repairs what a crash cut short before calls arrive
    return Running(server, store, ivr, acd, recorder, cfg, cfg)


async def queue_log_lines(
    config_path: Path, since: datetime | None = None, queue: str | None = None
) -> list[str]:
    """The queue event log in Asterisk queue_log format, from the store the config names.
    Raises ``ConfigError`` for a config with errors."""
    cfg = load_config(config_path)
    store = await Store.open(cfg.store.url)
    try:
        return [e.queue_log_line() for e in await store.list_queue_events(since, queue)]
    finally:
        await store.close()


async def voicemail_messages(config_path: Path, mailbox: str | None = None) -> list[VoicemailData]:
    """Voicemail messages (oldest first, optionally of one mailbox) from the store the config
    names. Raises ``ConfigError`` for a config with errors."""
    cfg = load_config(config_path)
    store = await Store.open(cfg.store.url)
    try:
        return await store.list_voicemails(mailbox)
    finally:
        await store.close()


async def export_voicemail(config_path: Path, vm_id: int, out: Path) -> tuple[VoicemailData, bool]:
    """Copy message ``vm_id``'s WAV to ``out``; returns the message and whether the file
    still matches its stored SHA-256. ``LookupError`` when there is no such message,
    ``OSError`` when its file cannot be read or ``out`` written."""
    cfg = load_config(config_path)
    store = await Store.open(cfg.store.url)
    try:
        message = await store.get_voicemail(vm_id)
    finally:
        await store.close()
    if message is None:
        raise LookupError(f"no voicemail message {vm_id}")
    data = await asyncio.to_thread(Path(message.path).read_bytes)
    await asyncio.to_thread(out.write_bytes, data)
    return message, hashlib.sha256(data).hexdigest() == message.sha256


PID_FILE = "switchboard.pid"


def reload_config(running: Running, config_path: Path) -> ReloadReport:
    """Load the config and IVR flows again and swap them in; a config with errors is refused
    (every problem logged with file:line:column) and the running one keeps serving. Calls
    already in an IVR flow finish on the flow they started with.

    Keys only a restart applies (:mod:`app.reload`) keep their old value; the report names
    them, and so does one warning line."""
    return apply_reload(running, prepare_reload(config_path))


async def reload_config_async(running: Running, config_path: Path) -> ReloadReport:
    """:func:`reload_config` with the reading and checking (YAML, flows, dialplan: most of
    a second for thousands of extensions) in a worker thread; the swap on the loop."""
    prepared = await asyncio.to_thread(prepare_reload, config_path)
    return apply_reload(running, prepared)


@dataclass(frozen=True, slots=True)
class PreparedReload:
    cfg: SwitchboardConfig
    flows: dict[str, Flow]
    folder: Path
    plan: dp.Dialplan


def prepare_reload(config_path: Path) -> PreparedReload | ReloadReport:
    """Read and check the config and flows (no running state touched: any thread)."""
    try:
        cfg, flows = load_all(config_path)
        folder = config_file_path(config_path).resolve().parent
        plan = build_dialplan(cfg)
    except ConfigError as err:
        return ReloadReport(ok=False, problems=[str(p) for p in err.problems])
    return PreparedReload(cfg, flows, folder, plan)


def apply_reload(running: Running, prepared: PreparedReload | ReloadReport) -> ReloadReport:
    """Swap a prepared config in (on the loop); a refused one is logged and changes nothing."""
    if isinstance(prepared, ReloadReport):
        for problem in prepared.problems:
            log.warning("config_reload_refused", problem=problem)
        return prepared
    cfg, flows, folder, plan = prepared.cfg, prepared.flows, prepared.folder, prepared.plan
    report = ReloadReport.compare(running.started, running.config, cfg)
    old, running.config = running.config, cfg
    running.ivr.reconfigure(
        plan,
        flows,
        folder,
        mailboxes=mailboxes_from_config(cfg, folder),
    )
    if (old.agents, old.queues, old.acd, old.features) != (
        cfg.agents,
        cfg.queues,
        cfg.acd,
        cfg.features,
    ):
        running.acd.reconfigure(acd_settings_from_config(cfg, folder))
    running.recorder.reconfigure(
        recording_settings_from_config(cfg, folder, prompt_resolver(folder))
    )
    running.server.reconfigure(
        extensions_from_config(cfg),
        conferences_from_config(cfg),
        pbx_feature_codes(cfg),
        dialplan=plan,
        outbound_policy=outbound_policy_from_config(cfg),
    )
    if (old.sip.auth, old.sip.registration) != (cfg.sip.auth, cfg.sip.registration):
        running.server.configure_auth(settings_from_config(cfg))
    if report.restart_needed:
        log.warning("config_reload_restart_needed", keys=report.restart_needed)
    log.info("config_reload_applied", keys=report.applied)
    return report


def _reload_and_report(running: Running, config_path: Path, folder: Path) -> None:
    """SIGHUP: reload (read off the loop), then leave the report where ``switchboard config
    reload`` looks."""

    async def reload() -> None:
        report = await reload_config_async(running, config_path)
        report.at = time.time()
        try:
            await asyncio.to_thread(write_report, folder, report)
        except OSError as exc:
            log.warning("reload_report_not_written", folder=str(folder), error=str(exc))

    task = asyncio.get_running_loop().create_task(reload())
    _RELOADS.add(task)
    task.add_done_callback(_RELOADS.discard)


_RELOADS: set[asyncio.Task[None]] = set()  # SIGHUP reloads in flight (kept from the GC)


async def run(
    cfg: SwitchboardConfig, config_dir: Path | None = None, config_file: Path | None = None
) -> None:
    """Run until SIGINT/SIGTERM: start, serve, then hang up calls and close cleanly.

    SIGHUP reloads the config from ``config_dir`` (``switchboard config reload`` sends it,
    finding the process through ``switchboard.pid`` in that folder).
    """
    running = await build_server(cfg, config_dir)
    server, store = running.server, running.store
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    pid_file: Path | None = None
    if config_dir is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(
                signal.SIGHUP, _reload_and_report, running, config_file or config_dir, config_dir
            )
        pid_file = config_dir / PID_FILE
    control_plane = None
    try:
        await server.start()
        await running.ivr.publish_mailbox_counts()  # message-waiting state after a restart
        if cfg.http.enabled and config_dir is not None:
            from app.http import ControlPlane

            async def reload_now() -> ReloadReport:
                report = await reload_config_async(running, config_file or config_dir)
                report.at = time.time()
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(write_report, config_dir, report)
                return report

            control_plane = ControlPlane(running, config_dir, config_file, reload_now)
            await control_plane.start()
        if pid_file is not None:
            pid_file.write_text(f"{os.getpid()}\n")
        log.info(
            "switchboard_started",
            extensions=len(cfg.extensions),
            config_dir=str(config_dir) if config_dir else None,
        )
        await stop.wait()
    finally:
        log.info("switchboard_stopping")
        if control_plane is not None:
            await control_plane.stop()
        await server.stop()
        await running.ivr.drain()
        await running.acd.drain()
        await running.recorder.close()
        await store.close()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
