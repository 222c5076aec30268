"""The one place the YAML config becomes domain settings (SIP server, extensions, rooms, ACD).

Every part is built from what these functions return; nothing else reads the config's
pydantic models to configure a part, so a setting is converted once, here, and tested here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import structlog

from acd import AgentConfig, QueueConfig, RuleStep, Strategy, WrapUpMode, parse_requirements
from acd.host import AcdCodes, AcdSettings
from config import SwitchboardConfig
from config.schema import ExtensionConfig
from crm.business_hours import BusinessCalendar, ClosedDays, OpenHours, parse_duration
from crm.customers import CrmSettings, CustomField
from crm.reports import ReportSettings
from crm.tickets import SlaTarget, TicketSettings
from ivr.mailbox import Mailbox
from pbx import dialplan as dp
from pbx.features import Feature
from pbx.server import DEFAULT_MUSIC_ON_HOLD, Conference, Extension, ServerSettings
from pbx.stack import ListenSpec
from pbx.timecond import TimeCondition
from pbx.tls import TlsPeer, TlsSettings, client_context, server_context
from pbx.trunk_inbound import InboundTrunk
from pbx.trunk_outbound import ExtensionLimits, NumberClasses, OutboundPolicy, OutboundTrunk
from pbx.trunks import Trunk
from recorder.service import RecordingSettings

log = structlog.get_logger("switchboard")

__all__ = [
    "acd_from_config",
    "acd_settings_from_config",
    "build_dialplan",
    "conferences_from_config",
    "extensions_from_config",
    "mailboxes_from_config",
    "report_settings_from_config",
    "settings_from_config",
    "ticket_settings_from_config",
    "tls_settings_from_config",
    "trunks_from_config",
]

# Where the self-signed pair goes, in the config folder (app.certs).
TLS_FOLDER = "tls"

# Feature codes the SIP core carries out itself; the rest belong to services (the ACD).
_PBX_FEATURES = frozenset(f.value for f in Feature)


def pbx_feature_codes(cfg: SwitchboardConfig) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in cfg.features.model_dump().items() if k in _PBX_FEATURES)


def crm_settings_from_config(cfg: SwitchboardConfig) -> CrmSettings:
    """Customers (docs/crm.md): the ``crm:`` section's custom fields and pool."""
    c = cfg.crm
    return CrmSettings(
        custom_fields={
            name: CustomField(name, f.type, tuple(f.choices), f.required)
            for name, f in c.custom_fields.items()
        },
        claim_limit=c.pool.claim_limit,
        return_after_days=c.pool.return_after_days,
    )


def ticket_settings_from_config(cfg: SwitchboardConfig) -> TicketSettings:
    """Tickets (docs/crm.md "Tickets"): code tables, departments, the business calendar
    (the time-condition shapes, converted through pbx/timecond's parsers) and the SLA."""
    t = cfg.tickets
    day = round(t.calendar.day_hours * 3600)
    weekly = []
    for w in t.calendar.weekly:
        r = w.to_range()
        weekly.append(OpenHours(r.days, r.start, r.end))
    holidays = []
    for h in t.calendar.holidays:
        d = h.to_holiday()
        holidays.append(ClosedDays(d.first, d.last, d.yearly))
    return TicketSettings(
        types={code: c.name for code, c in t.types.items()},
        categories={code: c.name for code, c in t.categories.items()},
        departments={name: frozenset(d.members) for name, d in t.departments.items()},
        calendar=BusinessCalendar(t.calendar.timezone, weekly, holidays),
        sla={
            type_: {
                priority: SlaTarget(
                    parse_duration(s.first_response, day), parse_duration(s.resolution, day)
                )
                for priority, s in by_priority.items()
            }
            for type_, by_priority in t.sla.items()
        },
        warn_before=parse_duration(t.warn_before, day),
    )


def report_settings_from_config(cfg: SwitchboardConfig) -> ReportSettings:
    """How reports count (docs/reports.md): the ``reports:`` section, each queue's
    service-level seconds, each agent's skill names (the reports' skill filter)."""
    r = cfg.reports
    return ReportSettings(
        timezone=r.timezone,
        short_abandon_seconds=float(r.short_abandon_seconds),
        first_contact_hours=float(r.first_contact_hours),
        service_levels={name: float(q.service_level) for name, q in cfg.queues.items()},
        agent_skills={name: frozenset(a.skills) for name, a in cfg.agents.items()},
    )


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
        feature_codes=pbx_feature_codes(cfg),
    )


def trunks_from_config(cfg: SwitchboardConfig) -> dict[str, Trunk]:
    """The ``trunks:`` section as domain settings, by name (YAML ``register`` is
    ``registers``)."""
    return {
        name: Trunk(
            name=name,
            host=t.host,
            port=t.port,
            transport=t.transport,
            username=t.username,
            password=t.password,
            registers=t.registers,
            expires=t.expires,
            retry_interval=t.retry_interval,
            max_channels=t.max_channels,
            acl=tuple(t.acl),
            did_from=t.did_from,
            country_code=t.country_code,
            national_prefix=t.national_prefix,
            international_prefix=t.international_prefix,
            dids=tuple(t.dids),
            caller_id=t.caller_id,
            from_user=t.from_user,
            qualify=t.qualify,
            qualify_failures=t.qualify_failures,
        )
        for name, t in cfg.trunks.items()
    }


def extensions_from_config(cfg: SwitchboardConfig) -> dict[str, Extension]:
    return {
        num: Extension(
            number=num,
            name=e.name,
            password=e.password,
            ring_timeout=_ring_timeout(e),
            pickup_group=e.pickup_group,
            dtmf_mode=e.dtmf_mode,
            auth_algorithms=tuple(e.auth_algorithms) if e.auth_algorithms else None,
            voicemail_on_busy=e.voicemail.enabled and e.voicemail.on_busy,
            voicemail_on_no_answer=e.voicemail.enabled and e.voicemail.on_no_answer,
            mwi=e.voicemail.mwi,
            auto_answer=e.auto_answer,
        )
        for num, e in cfg.extensions.items()
    }


def _ring_timeout(e: ExtensionConfig) -> float:
    """How long the phones ring: the mailbox's ``no_answer_seconds`` when unanswered calls
    roll to it, else ``ring_timeout``."""
    vm = e.voicemail
    if vm.enabled and vm.on_no_answer and vm.no_answer_seconds is not None:
        return float(vm.no_answer_seconds)
    return float(e.ring_timeout)


def mailboxes_from_config(cfg: SwitchboardConfig, config_dir: Path) -> dict[str, Mailbox]:
    """Every extension's mailbox (messages can be left in any of them; only enabled ones
    have a PIN, so only those can be listened to)."""
    return {
        num: Mailbox(
            number=num,
            pin=e.voicemail.pin if e.voicemail.enabled else None,
            greeting=config_dir / e.voicemail.greeting if e.voicemail.greeting else None,
            max_seconds=float(e.voicemail.max_message_seconds),
            language=e.voicemail.language,
        )
        for num, e in cfg.extensions.items()
    }


def conferences_from_config(cfg: SwitchboardConfig) -> dict[str, Conference]:
    return {
        num: Conference(num, room.name, room.max_members) for num, room in cfg.conferences.items()
    }


# Queue settings with the same name and meaning in the YAML and in the ACD.
_SAME_QUEUE_SETTINGS = (
    "ring_timeout",
    "retry_delay",
    "auto_pause_after",
    "wrap_up",
    "maxlen",
    "join_empty",
    "leave_when_empty",
    "max_wait",
    "overflow",
    "progressive_step",
    "service_level",
    "announce_position_every",
    "announce_every",
    "exit_key",
    "exit_destination",
)


def acd_from_config(cfg: SwitchboardConfig) -> tuple[list[AgentConfig], list[QueueConfig]]:
    """The ACD's agents and queues from ``agents:`` and ``queues:`` of the config."""
    agents = [
        AgentConfig(
            agent_id,
            a.name,
            tuple(a.extensions),
            dict(a.skills),
            a.wrap_up,
            class_of_service=a.class_of_service,
        )
        for agent_id, a in cfg.agents.items()
    ]
    queues = []
    for name, q in cfg.queues.items():
        same = {k: getattr(q, k) for k in _SAME_QUEUE_SETTINGS}
        queues.append(
            QueueConfig(
                name,
                **same,
                strategy=Strategy(q.strategy),
                members=tuple(q.members),
                skill_rules=tuple(
                    RuleStep(parse_requirements(r.require), r.wait_under) for r in q.skill_rules
                ),
                wrap_up_mode=WrapUpMode(q.wrap_up_mode),
                wrap_up_codes=tuple(code for code, _ in q.wrap_up_code_labels()),
                wrap_up_labels={c: label for c, label in q.wrap_up_code_labels() if label},
                last_agent_days=q.last_agent.days,
                last_agent_wait=q.last_agent.wait,
                grade_priority={str(k): v for k, v in q.grade_priority.items()},
                callback_key=q.callback.key,
                callback_offer_after=q.callback.offer_after,
                callback_attempts=q.callback.attempts,
                callback_retry_delay=q.callback.retry_delay,
                callback_agent_first=q.callback.order == "agent_first",
            )
        )
    return agents, queues


def acd_settings_from_config(cfg: SwitchboardConfig, config_dir: Path) -> AcdSettings:
    """Everything the ACD host takes from the config (at start and on every reload)."""
    agents, queues = acd_from_config(cfg)
    features = cfg.features.model_dump()
    codes = AcdCodes(**{name: features[name] for name in AcdCodes.__dataclass_fields__})
    return AcdSettings(
        agents=agents,
        queues=queues,
        config_dir=config_dir,
        tone_plan=cfg.media.tone_plan,
        pause_reasons={str(k): v for k, v in cfg.acd.pause_reasons.items()},
        supervisors=frozenset(cfg.acd.supervisors),
        queue_music={
            name: [str(config_dir / f) for f in q.music_on_hold] for name, q in cfg.queues.items()
        },
        codes=codes,
    )


def build_dialplan(cfg: SwitchboardConfig) -> dp.Dialplan:
    """The runtime :class:`pbx.dialplan.Dialplan` for a validated config.

    Call it on configs that passed ``config.schema.dialplan_problems`` (the loader does); it raises
    ``ValueError`` for the problems that would make routing impossible.
    """
    plan = cfg.dialplan
    conditions: dict[str, dp.TimeConditionRoute] = {}
    for name, tc in plan.time_conditions.items():
        holidays = [h.to_holiday() for h in tc.holidays]
        for cal in tc.calendars:
            holidays += [h.to_holiday() for h in plan.holidays[cal]]
        condition = TimeCondition(
            tc.timezone, (w.to_range() for w in tc.weekly), holidays, name=name
        )
        conditions[name] = dp.TimeConditionRoute(
            condition, tc.open.to_destination(), tc.closed.to_destination()
        )
    rules = [
        dp.DialRule(r.pattern, r.destination.to_destination(), r.strip, r.prepend, r.name)
        for r in plan.internal
    ]
    outbound = [
        dp.DialRule(
            r.pattern,
            dp.Destination(
                dp.DestinationKind.OUTBOUND,
                r.trunk,
                trunks=tuple(r.trunk_order),
                caller_id=r.caller_id,
                privacy=r.privacy,
            ),
            r.strip,
            r.prepend,
            r.name,
        )
        for r in plan.outbound
    ]
    return dp.Dialplan(
        inbound=[
            dp.InboundRoute(r.destination.to_destination(), r.did, r.caller, r.name)
            for r in plan.inbound
        ],
        regions=dp.RegionTable(plan.regions),
        blacklist=dp.Blacklist(b.to_entry() for b in plan.blacklist),
        internal=rules,
        outbound=outbound,
        time_conditions=conditions,
        extensions=cfg.extensions,
        conferences=cfg.conferences,
        default=plan.default.to_destination(),
        internal_default=plan.internal_default.to_destination(),
    )


def inbound_trunks_from_config(cfg: SwitchboardConfig) -> list[InboundTrunk]:
    """The trunks as the SIP core matches inbound requests to them. A ``host`` that is a
    name is resolved here, once (at start): a carrier is trusted by the addresses it had
    then."""
    return [
        InboundTrunk(
            name=t.name,
            addresses=_addresses(t.host, t.port),
            port=t.port,
            acl=t.acl,
            did_from=t.did_from,
            country_code=t.country_code,
            national_prefix=t.national_prefix,
            international_prefix=t.international_prefix,
            max_channels=t.max_channels,
            credentials=(
                (t.username, t.password)
                if t.username is not None and t.password is not None
                else None
            ),
        )
        for t in trunks_from_config(cfg).values()
    ]


def _addresses(host: str, port: int) -> tuple[str, ...]:
    try:
        ipaddress.ip_address(host)
        return (host,)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)
    except OSError as exc:
        log.warning("trunk_host_unresolved", host=host, error=str(exc))
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def outbound_trunks_from_config(cfg: SwitchboardConfig) -> list[OutboundTrunk]:
    """The trunks as outbound calls use them, in the order of the config."""
    out = []
    for t in trunks_from_config(cfg).values():
        addresses = _addresses(t.host, t.port)
        out.append(
            OutboundTrunk(
                name=t.name,
                host=t.host,
                port=t.port,
                address=addresses[0] if addresses else t.host,
                transport=t.transport.upper(),
                username=t.username,
                password=t.password,
                dids=t.dids,
                caller_id=t.caller_id,
                from_user=t.from_user,
                max_channels=t.max_channels,
                invite_timeout=cfg.trunks[t.name].invite_timeout,
            )
        )
    return out


def tls_settings_from_config(cfg: SwitchboardConfig, config_dir: Path) -> TlsSettings | None:
    """The TLS transport's contexts (RFC 3261 §26.2.1), or None when nothing uses TLS.

    Reads files (and generates the self-signed pair on first start): call it off the event
    loop. Our certificate is ``sip.tls``'s, else the self-signed one in ``config_dir/tls/``
    when a ``sip.listen`` entry is TLS. Each ``transport: tls`` trunk is verified with its own
    context (``verify``, ``ca_file``; the name checked and sent as SNI is its ``host``), by
    every address its host resolves to."""
    listens = any(x.transport == "tls" for x in cfg.sip.listen)
    tls_trunks = {name: t for name, t in cfg.trunks.items() if t.transport == "tls"}
    if not listens and not tls_trunks:
        return None
    certificate, key = cfg.sip.tls.certificate, cfg.sip.tls.key
    if certificate is None and listens:
        from app.certs import ensure_self_signed  # cryptography: only when it is needed

        hosts = tuple(h for h in (cfg.sip.advertise_host,) if h)
        cert_path, key_path = ensure_self_signed(config_dir / TLS_FOLDER, hosts)
        certificate, key = str(cert_path), str(key_path)
    peers: dict[tuple[str, int], TlsPeer] = {}
    by_host: dict[str, TlsPeer] = {}
    for t in tls_trunks.values():
        context = client_context(
            verify=t.verify, ca_file=t.ca_file, certificate=certificate, key=key
        )
        by_host[t.host] = peer = TlsPeer(t.host, context)
        for address in _addresses(t.host, t.port):
            peers[(address, t.port)] = peer
    return TlsSettings(
        server=server_context(certificate, key) if listens and certificate and key else None,
        default_client=client_context(verify=False, certificate=certificate, key=key),
        peers=peers,
        by_host=by_host,
    )


def outbound_policy_from_config(cfg: SwitchboardConfig) -> OutboundPolicy:
    """Classes of service and outbound caps per extension, and the number classes."""
    nc = cfg.dialplan.number_classes
    classes = NumberClasses(
        {
            "emergency": nc.emergency,
            "premium": nc.premium,
            "international": nc.international,
            "national": nc.national,
        }
    )
    limits = {
        num: ExtensionLimits(
            e.class_of_service,
            e.max_outbound_per_minute,
            e.max_outbound_calls,
            caller_id=e.caller_id,
            hide_caller_id=e.hide_caller_id,
        )
        for num, e in cfg.extensions.items()
    }
    system = ExtensionLimits(
        cfg.dialplan.system_class_of_service,
        concurrent=cfg.dialplan.system_max_outbound_calls,
    )
    return OutboundPolicy(classes, limits, system)


def recording_settings_from_config(
    cfg: SwitchboardConfig, config_dir: Path, resolve_prompt: Callable[[str], str | None]
) -> RecordingSettings:
    """The recorder's policy: ``recording:`` plus ``record:`` of queues and extensions."""
    rec = cfg.recording
    announcement = None
    if rec.announcement:
        announcement = resolve_prompt(rec.announcement)
        if announcement is None:
            log.warning("recording_announcement_not_found", prompt=rec.announcement)
    return RecordingSettings(
        folder=(config_dir / rec.folder).resolve(),
        record=rec.record,
        sample_percent=rec.sample_percent,
        format=rec.format,
        retention_days=rec.retention_days,
        announcement=announcement,
        toggle_code=rec.toggle_code,
        pause_code=rec.pause_code,
        queues={name: q.record for name, q in cfg.queues.items() if q.record is not None},
        extensions={n: e.record for n, e in cfg.extensions.items() if e.record is not None},
    )
