"""The web panel's words in English and Chinese.

Every string a page shows goes through :func:`translate` with a key of this catalog. The
language is the user's choice (``?lang=zh``, kept in the ``sb_lang`` cookie), else the
browser's ``Accept-Language``, else English. A key missing from a language falls back to
English (a unit test keeps the catalogs complete).
"""

from __future__ import annotations

from collections.abc import Callable

from web.i18n_calls import EN_CALLS, ZH_CALLS
from web.i18n_crm import EN_CRM, ZH_CRM
from web.i18n_kbqa import EN_KBQA, ZH_KBQA
from web.i18n_phone import EN_PHONE, ZH_PHONE
from web.i18n_records import EN_REC, ZH_REC

__all__ = [
    "CATALOGS",
    "DEFAULT",
    "LANGUAGES",
    "LANG_COOKIE",
    "choose_language",
    "reason_translator",
    "translator",
]

LANG_COOKIE = "sb_lang"
DEFAULT = "en"

EN: dict[str, str] = {
    "app.title": "Switchboard",
    "nav.agent": "Agent panel",
    "nav.wallboard": "Wallboard",
    "nav.logout": "Log out",
    "nav.language": "中文",
    "login.title": "Log in",
    "login.name": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.wrong": "Wrong user name or password.",
    "login.throttled": "Too many failed logins: try again later.",
    "login.failed": "Login failed.",
    "logout.title": "Logging out…",
    "conn.up": "Connected",
    "conn.down": "Disconnected: reconnecting…",
    "agent.title": "Agent panel",
    "agent.none": "Your user is not linked to an agent.",
    "agent.state": "State",
    "agent.reason": "Reason",
    "agent.time_in_state": "Time in state",
    "agent.queues": "Queues served",
    "agent.extensions": "Extensions",
    "agent.login": "Log in to queues",
    "agent.logout": "Log out of queues",
    "agent.pause": "Pause",
    "agent.unpause": "Ready",
    "agent.pause_reason": "Pause reason",
    "agent.action_failed": "Not done",
    "offer.title": "Incoming call",
    "offer.caller": "Caller",
    "offer.queue": "Queue",
    "offer.waited": "Waiting",
    "offer.ivr_keys": "IVR keys",
    "offer.none": "none",
    "call.title": "Current call",
    "call.none": "No call",
    "call.caller": "Caller",
    "call.callee": "Called",
    "call.queue": "Queue",
    "call.duration": "Duration",
    "call.hangup": "Hang up",
    "call.recording": "Recording",
    "call.recording_pause": "Pause recording",
    "call.recording_resume": "Resume recording",
    "call.recording_paused": "paused",
    "call.recording_on": "recording",
    "call.recording_off": "not recording",
    "today.title": "Today",
    "today.handled": "Handled",
    "today.missed": "Missed",
    "today.pause": "Pause time",
    "today.aht": "Average handle time",
    "wall.title": "Wallboard",
    "wall.fullscreen": "Full screen",
    "wall.queues": "Queues",
    "wall.agents": "Agents",
    "wall.waiting": "Waiting",
    "wall.longest": "Longest wait",
    "wall.service_level": "Service level",
    "wall.answered": "Answered",
    "wall.abandoned": "Abandoned",
    "wall.asa": "ASA",
    "wall.aht": "AHT",
    "wall.agent": "Agent",
    "wall.state": "State",
    "wall.reason": "Reason",
    "wall.time_in_state": "Time in state",
    "wall.current_call": "Current call",
    "wall.no_queues": "No queues.",
    "wall.no_agents": "No agents.",
    "wall.actions": "Actions",
    "wall.listen": "Listen",
    "wall.whisper": "Whisper",
    "wall.barge": "Barge",
    "wall.intercept": "Intercept",
    "wall.force_pause": "Pause",
    "wall.force_logout": "Log out",
    "wall.my_extension": "My phone (extension)",
    "wall.my_extension_hint": "Listen, whisper, barge and intercept ring this phone first.",
    "wall.need_extension": "Enter your extension first.",
    "wall.ringing_you": "Your phone rings: answer to join",
    "wall.switched": "Mode switched",
    "wall.done": "Done",
    "wall.action_failed": "Not done",
    "wrapup.title": "Wrap-up",
    "wrapup.code": "Wrap-up code",
    "wrapup.no_code": "(none)",
    "wrapup.notes": "Notes",
    "wrapup.done": "Finish wrap-up",
    "keys.title": "Keyboard shortcuts",
    "keys.available": "Available (log in or ready)",
    "keys.pause": "Pause (with the chosen reason)",
    "keys.hangup": "Hang up",
    "keys.wrapup": "Finish wrap-up",
    "keys.note": "Not while typing in a field.",
    "state.LOGGED_OUT": "Logged out",
    "state.AVAILABLE": "Available",
    "state.RINGING": "Ringing",
    "state.ON_CALL": "On a call",
    "state.WRAP_UP": "Wrap-up",
    "state.NOT_READY": "Paused",
    "reason.busy": "Busy",
    "reason.break": "Break",
    "reason.lunch": "Lunch",
    "reason.training": "Training",
    "reason.after_no_answer": "Missed calls",
    "reason.inbound": "Inbound",
    "reason.outbound": "Outbound",
    "reason.internal": "Internal",
    "error.forbidden": "Your role may not see this page.",
}
EN.update(EN_REC)

ZH: dict[str, str] = {
    "app.title": "Switchboard 交换台",
    "nav.agent": "坐席面板",
    "nav.wallboard": "监控大屏",
    "nav.logout": "退出",
    "nav.language": "English",
    "login.title": "登录",
    "login.name": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.wrong": "用户名或密码错误。",
    "login.throttled": "登录失败次数过多，请稍后再试。",
    "login.failed": "登录失败。",
    "logout.title": "正在退出…",
    "conn.up": "已连接",
    "conn.down": "连接断开：正在重连…",
    "agent.title": "坐席面板",
    "agent.none": "您的用户未关联坐席。",
    "agent.state": "状态",
    "agent.reason": "原因",
    "agent.time_in_state": "当前状态时长",
    "agent.queues": "服务的队列",
    "agent.extensions": "分机",
    "agent.login": "签入队列",
    "agent.logout": "签出队列",
    "agent.pause": "小休",
    "agent.unpause": "就绪",
    "agent.pause_reason": "小休原因",
    "agent.action_failed": "操作未完成",
    "offer.title": "来电",
    "offer.caller": "主叫",
    "offer.queue": "队列",
    "offer.waited": "已等待",
    "offer.ivr_keys": "IVR 按键",
    "offer.none": "无",
    "call.title": "当前通话",
    "call.none": "无通话",
    "call.caller": "主叫",
    "call.callee": "被叫",
    "call.queue": "队列",
    "call.duration": "时长",
    "call.hangup": "挂断",
    "call.recording": "录音",
    "call.recording_pause": "暂停录音",
    "call.recording_resume": "恢复录音",
    "call.recording_paused": "已暂停",
    "call.recording_on": "录音中",
    "call.recording_off": "未录音",
    "today.title": "今日",
    "today.handled": "已接听",
    "today.missed": "未接",
    "today.pause": "小休时长",
    "today.aht": "平均处理时长",
    "wall.title": "监控大屏",
    "wall.fullscreen": "全屏",
    "wall.queues": "队列",
    "wall.agents": "坐席",
    "wall.waiting": "排队中",
    "wall.longest": "最长等待",
    "wall.service_level": "服务水平",
    "wall.answered": "已接听",
    "wall.abandoned": "放弃",
    "wall.asa": "平均应答时间",
    "wall.aht": "平均处理时间",
    "wall.agent": "坐席",
    "wall.state": "状态",
    "wall.reason": "原因",
    "wall.time_in_state": "状态时长",
    "wall.current_call": "当前通话",
    "wall.no_queues": "没有队列。",
    "wall.no_agents": "没有坐席。",
    "wall.actions": "操作",
    "wall.listen": "监听",
    "wall.whisper": "耳语",
    "wall.barge": "强插",
    "wall.intercept": "强拆",
    "wall.force_pause": "强制小休",
    "wall.force_logout": "强制签出",
    "wall.my_extension": "我的话机（分机号）",
    "wall.my_extension_hint": "监听、耳语、强插和强拆会先呼叫这部话机。",
    "wall.need_extension": "请先填写您的分机号。",
    "wall.ringing_you": "您的话机正在振铃：接听后加入",
    "wall.switched": "已切换模式",
    "wall.done": "已完成",
    "wall.action_failed": "操作未完成",
    "wrapup.title": "话后处理",
    "wrapup.code": "话后代码",
    "wrapup.no_code": "（无）",
    "wrapup.notes": "备注",
    "wrapup.done": "结束话后处理",
    "keys.title": "快捷键",
    "keys.available": "就绪（签入或结束小休）",
    "keys.pause": "小休（按所选原因）",
    "keys.hangup": "挂断",
    "keys.wrapup": "结束话后处理",
    "keys.note": "在输入框中输入时不生效。",
    "state.LOGGED_OUT": "已签出",
    "state.AVAILABLE": "空闲",
    "state.RINGING": "振铃中",
    "state.ON_CALL": "通话中",
    "state.WRAP_UP": "话后处理",
    "state.NOT_READY": "小休",
    "reason.busy": "忙碌",
    "reason.break": "休息",
    "reason.lunch": "午餐",
    "reason.training": "培训",
    "reason.after_no_answer": "未接来电",
    "reason.inbound": "呼入",
    "reason.outbound": "呼出",
    "reason.internal": "内部",
    "error.forbidden": "您的角色无权查看此页面。",
}
ZH.update(ZH_REC)

EN.update(EN_CRM)
ZH.update(ZH_CRM)
EN.update(EN_KBQA)  # the KB editor and QA scoring (web/i18n_kbqa.py)
ZH.update(ZH_KBQA)
EN.update(EN_PHONE)
ZH.update(ZH_PHONE)

EN.update(EN_CALLS)  # the agent panel's call controls (web/i18n_calls.py)
ZH.update(ZH_CALLS)
CATALOGS: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}
LANGUAGES = tuple(CATALOGS)


def _known(lang: str | None) -> str | None:
    if not lang:
        return None
    base = lang.strip().lower().split("-", 1)[0].split("_", 1)[0]
    return base if base in CATALOGS else None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page's language: ``?lang=``, else the cookie, else the first language of
    ``Accept-Language`` we have (by its q-value), else English."""
    for choice in (query, cookie):
        known = _known(choice)
        if known:
            return known
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        known = _known(tag)
        if known and q > 0:
            ranked.append((-q, i, known))
    return min(ranked)[2] if ranked else DEFAULT


def translator(lang: str) -> Callable[[str], str]:
    """``t(key)`` in ``lang``: English when the language lacks the key, the key itself when
    English does too (a visible sign of a missing entry)."""
    catalog = CATALOGS.get(lang, EN)

    def t(key: str) -> str:
        return catalog.get(key) or EN.get(key) or key

    return t


def reason_translator(lang: str) -> Callable[[str | None], str]:
    """A pause reason or call kind in ``lang``: the catalog's word for the built-in ones,
    the configured name itself for the others (pause reasons are the admin's names)."""
    catalog = CATALOGS.get(lang, EN)

    def reason(name: str | None) -> str:
        if not name:
            return ""
        key = f"reason.{name}"
        return catalog.get(key) or EN.get(key) or name

    return reason
