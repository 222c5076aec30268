"""The composition root: builds a running Switchboard from a config and a store.

This is the one module that knows both the SIP core (:mod:`pbx`) and the store (:mod:`crm`):
it turns the YAML config into :class:`pbx.server.ServerSettings`, and implements the server's
:class:`pbx.server.Persistence` with :class:`crm.Store`. Everything else stays one-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import structlog

from acd.host import AcdHost
from config import ConfigError, ConfigProblem, SwitchboardConfig, config_file_path, load_config
from config.schema import KnownNames, build_dialplan
from crm import Store
from crm.store import BindingData, CallRecordData, ExtensionSettingsData
from ivr import Flow, PromptSets, check_flows, load_flows
from ivr.host import IvrHost
from pbx.dialplan import Dialplan
from pbx.features import ExtensionSettings
from pbx.persistence import CallDetail, StoredBinding
from pbx.server import (
    DEFAULT_MUSIC_ON_HOLD,
    Conference,
    Extension,
    ServerSettings,
    SipServer,
)
from pbx.stack import ListenSpec

__all__ = ["Running", "StorePersistence", "build_server", "run", "settings_from_config"]

log = structlog.get_logger("switchboard")


def settings_from_config(cfg: SwitchboardConfig) -> ServerSettings:
    sip = cfg.sip
    return ServerSettings(
        listen=tuple(ListenSpec(x.transport.upper(), x.host, x.port) for x in sip.listen),
        realm=sip.realm,
        advertise_host=sip.advertise_host,
        user_agent=sip.user_agent,
        min_expires=sip.registration.min_expires,
        max_expires=sip.registration.max_expires,
        default_expires=sip.registration.default_expires,
        algorithms=tuple(sip.auth.algorithms),
        nonce_lifetime=float(sip.auth.nonce_lifetime),
        max_failures=sip.auth.max_failures,
        failure_window=float(sip.auth.failure_window),
        block_seconds=float(sip.auth.block_seconds),
        rtp_host=cfg.rtp.host,
        rtp_ports=(cfg.rtp.ports[0], cfg.rtp.ports[1]),
        rtp_inactivity_timeout=float(cfg.rtp.inactivity_timeout),
        music_on_hold=tuple(cfg.media.music_on_hold) or (str(DEFAULT_MUSIC_ON_HOLD),),
        tone_plan=cfg.media.tone_plan,
        feature_codes=tuple(cfg.features.model_dump().items()),
    )


def extensions_from_config(cfg: SwitchboardConfig) -> dict[str, Extension]:
    return {
        num: Extension(
            number=num,
            name=e.name,
            password=e.password,
            ring_timeout=float(e.ring_timeout),
            pickup_group=e.pickup_group,
            dtmf_mode=e.dtmf_mode,
        )
        for num, e in cfg.extensions.items()
    }


# CallDetail (pbx) and CallRecordData (crm) name the same facts alike; the record derives
# duration and billable seconds itself and turns disposition/side into its enums.
_RECORD_INPUTS = tuple(
    f.name for f in fields(CallRecordData) if f.init and f.name in CallDetail.__dataclass_fields__
)


def _record_of(d: CallDetail) -> CallRecordData:
    return CallRecordData(**{name: getattr(d, name) for name in _RECORD_INPUTS})


class StorePersistence:
    """:class:`pbx.server.Persistence` on top of :class:`crm.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def apply_bindings(
        self, saves: list[StoredBinding], deletes: list[tuple[str, str]]
    ) -> None:
        await self.store.apply_binding_changes(
            [
                BindingData(
                    aor=b.aor,
                    contact_uri=b.contact_uri,
                    received=f"{b.source[0]}:{b.source[1]}",
                    transport=b.transport,
                    call_id=b.call_id,
                    cseq=b.cseq,
                    expires_at=datetime.fromtimestamp(b.expires_at_epoch, UTC),
                    user_agent=b.user_agent or None,
                )
                for b in saves
            ],
            deletes,
        )

    async def load_bindings(self) -> list[StoredBinding]:
        out: list[StoredBinding] = []
        for b in await self.store.load_bindings():
            host, _, port = b.received.rpartition(":")
            out.append(
                StoredBinding(
                    aor=b.aor,
                    contact_uri=b.contact_uri,
                    source=(host, int(port or 5060)),
                    transport=b.transport,
                    call_id=b.call_id,
                    cseq=b.cseq,
                    expires_at_epoch=b.expires_at.timestamp(),
                    user_agent=b.user_agent or "",
                )
            )
        return out

    async def save_calls(self, details: list[CallDetail]) -> None:
        await self.store.add_call_records([_record_of(d) for d in details])

    async def save_settings(self, settings: dict[str, ExtensionSettings]) -> None:
        await self.store.save_extension_settings(
            [
                ExtensionSettingsData(
                    number=ext,
                    dnd=v.dnd,
                    forward_all=v.forward_all,
                    forward_busy=v.forward_busy,
                    forward_no_answer=v.forward_no_answer,
                )
                for ext, v in settings.items()
            ]
        )

    async def load_settings(self) -> dict[str, ExtensionSettings]:
        return {
            row.number: ExtensionSettings(
                dnd=row.dnd,
                forward_all=row.forward_all,
                forward_busy=row.forward_busy,
                forward_no_answer=row.forward_no_answer,
            )
            for row in await self.store.load_extension_settings()
        }


def conferences_from_config(cfg: SwitchboardConfig) -> dict[str, Conference]:
    return {
        num: Conference(num, room.name, room.max_members) for num, room in cfg.conferences.items()
    }


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
    and prompts that exist. Raises ``ConfigError`` listing every problem (file:line:column)."""
    cfg = load_config(path)
    folder = config_file_path(path).resolve().parent
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
    try:
        cfg = load_config(path, known=known)
    except ConfigError as err:
        errors = [*err.problems, *errors]
    if errors:
        raise ConfigError(errors)
    return cfg, flows


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


def install_ivr(
    server: SipServer,
    store: Store | None,
    plan: Dialplan,
    flows: dict[str, Flow],
    config_dir: Path,
    tone_plan: str,
) -> IvrHost:
    """Give the server the IVR flows, voicemail and surveys of one configuration."""
    host = IvrHost(server, store, plan, flows, config_dir, tone_plan)
    server.voicemail_application = host.voicemail_application()
    return host


@dataclass(slots=True)
class Running:
    """What a running Switchboard is made of (the IVR host changes on every reload)."""

    server: SipServer
    store: Store
    ivr: IvrHost | None = None
    acd: AcdHost | None = None


async def build_server(cfg: SwitchboardConfig, config_dir: Path | None = None) -> Running:
    flows = load_ivr(cfg, config_dir) if config_dir is not None else {}
    plan = build_dialplan(cfg)
    store = await Store.open(cfg.store.url)
    host: IvrHost | None = None
    server = SipServer(
        settings_from_config(cfg),
        extensions_from_config(cfg),
        StorePersistence(store),
        conferences=conferences_from_config(cfg),
        dialplan=plan,
    )
    if config_dir is not None:
        server.prompt_path = prompt_resolver(config_dir)
        host = install_ivr(server, store, plan, flows, config_dir, cfg.media.tone_plan)
        server.applications = host.applications()
    acd = AcdHost(server, store, cfg, config_dir or Path.cwd(), host)
    acd.install()
    await acd.start()
    return Running(server, store, host, acd)


PID_FILE = "switchboard.pid"


def reload_config(running: Running, config_path: Path) -> bool:
    """Load the config and IVR flows again and swap them in; a config with errors is refused
    (every problem logged with file:line:column) and the running one keeps serving. Calls
    already in an IVR flow finish on the flow they started with."""
    try:
        cfg, flows = load_all(config_path)
        folder = config_file_path(config_path).resolve().parent
        plan = build_dialplan(cfg)
    except ConfigError as err:
        for problem in err.problems:
            log.warning("config_reload_refused", problem=str(problem))
        return False
    server = running.server
    host = install_ivr(server, running.store, plan, flows, folder, cfg.media.tone_plan)
    running.ivr = host
    if running.acd is not None:
        running.acd.use_ivr(host)
        if running.acd.config != (cfg.agents, cfg.queues, cfg.acd):
            running.acd.reconfigure(cfg, folder)
    server.reconfigure(
        extensions_from_config(cfg),
        conferences_from_config(cfg),
        tuple(cfg.features.model_dump().items()),
        dialplan=plan,
        applications=host.applications(),
    )
    return True


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
                signal.SIGHUP, reload_config, running, config_file or config_dir
            )
        pid_file = config_dir / PID_FILE
    try:
        await server.start()
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
        await server.stop()
        if running.ivr is not None:
            await running.ivr.drain()
        if running.acd is not None:
            await running.acd.drain()
        await store.close()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
