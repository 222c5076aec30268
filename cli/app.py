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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from config import ConfigError, SwitchboardConfig, config_file_path, load_config
from config.schema import build_dialplan
from crm import Store
from crm.store import BindingData, CallRecordData, Disposition, ExtensionSettingsData, HangupSide
from ivr import Flow, IvrEvent, IvrFinished, IvrSession, PromptSets, check_flows, load_flows
from ivr.pbx_call import PbxCallControl, application_factory
from pbx.dialplan import Dialplan
from pbx.features import ExtensionSettings
from pbx.persistence import CallDetail, StoredBinding
from pbx.server import (
    DEFAULT_MUSIC_ON_HOLD,
    ApplicationFactory,
    Conference,
    Extension,
    ServerSettings,
    SipServer,
)
from pbx.stack import ListenSpec

__all__ = ["StorePersistence", "build_server", "run", "settings_from_config"]

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
        await self.store.add_call_records(
            [
                CallRecordData(
                    call_id=d.call_id,
                    caller=d.caller,
                    callee=d.callee,
                    start=d.start,
                    end=d.end,
                    answer=d.answer,
                    hangup_cause=d.hangup_cause,
                    disposition=Disposition(d.disposition),
                    hangup_side=HangupSide(d.hangup_side),
                    sip_status=d.sip_status,
                    record_id=d.record_id,
                    linked_id=d.linked_id,
                    caller_loss=d.caller_loss,
                    caller_jitter_ms=d.caller_jitter_ms,
                    caller_mos=d.caller_mos,
                    callee_loss=d.callee_loss,
                    callee_jitter_ms=d.callee_jitter_ms,
                    callee_mos=d.callee_mos,
                    ivr_keys=d.ivr_keys,
                )
                for d in details
            ]
        )

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
    flows, problems = load_flows(config_dir, time_conditions=set(cfg.dialplan.time_conditions))
    for problem in problems:
        if problem.severity == "warning":
            log.warning("ivr_flow_warning", problem=str(problem))
    check_flows(problems)
    return flows


def ivr_applications(
    server: SipServer, plan: Dialplan, flows: dict[str, Flow], config_dir: Path, tone_plan: str
) -> dict[str, ApplicationFactory]:
    """One application factory per IVR flow: each call gets its own session."""

    def time_condition(name: str, now: datetime) -> bool:
        return plan.time_conditions[name].condition.is_open(now)

    def on_event(event: IvrEvent) -> None:
        if isinstance(event, IvrFinished):
            log.info(
                "ivr_finished",
                flow=event.flow,
                outcome=event.outcome.kind,
                data=dict(event.outcome.data),
                keys=event.key_trail,
            )

    def factory(flow: Flow) -> ApplicationFactory:
        def start(control: PbxCallControl) -> None:
            session = IvrSession(
                flow,
                control,
                time_condition=time_condition,
                voicemail_dir=config_dir / "voicemail",
                on_event=on_event,
            )
            session.start()

        return application_factory(start, server.media, tone_plan)

    return {name: factory(flow) for name, flow in flows.items()}


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


async def build_server(
    cfg: SwitchboardConfig, config_dir: Path | None = None
) -> tuple[SipServer, Store]:
    flows = load_ivr(cfg, config_dir) if config_dir is not None else {}
    plan = build_dialplan(cfg)
    store = await Store.open(cfg.store.url)
    server = SipServer(
        settings_from_config(cfg),
        extensions_from_config(cfg),
        StorePersistence(store),
        conferences=conferences_from_config(cfg),
        dialplan=plan,
    )
    if config_dir is not None:
        server.prompt_path = prompt_resolver(config_dir)
        server.applications = ivr_applications(server, plan, flows, config_dir, cfg.media.tone_plan)
    return server, store


PID_FILE = "switchboard.pid"


def reload_config(server: SipServer, config_path: Path) -> bool:
    """Load the config and IVR flows again and swap them in; a config with errors is refused
    (every problem logged with file:line:column) and the running one keeps serving. Calls
    already in an IVR flow finish on the flow they started with."""
    try:
        cfg = load_config(config_path)
        folder = config_file_path(config_path).resolve().parent
        flows = load_ivr(cfg, folder)
        plan = build_dialplan(cfg)
    except ConfigError as err:
        for problem in err.problems:
            log.warning("config_reload_refused", problem=str(problem))
        return False
    server.reconfigure(
        extensions_from_config(cfg),
        conferences_from_config(cfg),
        tuple(cfg.features.model_dump().items()),
        dialplan=plan,
        applications=ivr_applications(server, plan, flows, folder, cfg.media.tone_plan),
    )
    return True


async def run(
    cfg: SwitchboardConfig, config_dir: Path | None = None, config_file: Path | None = None
) -> None:
    """Run until SIGINT/SIGTERM: start, serve, then hang up calls and close cleanly.

    SIGHUP reloads the config from ``config_dir`` (``switchboard config reload`` sends it,
    finding the process through ``switchboard.pid`` in that folder).
    """
    server, store = await build_server(cfg, config_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    pid_file: Path | None = None
    if config_dir is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload_config, server, config_file or config_dir)
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
        await store.close()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
