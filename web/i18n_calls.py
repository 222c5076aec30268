"""The agent panel's call-control words (hold, mute, keypad, transfer, conference, the
offer card's accept/reject) in English and Chinese, merged into :mod:`web.i18n`'s catalogs."""

from __future__ import annotations

__all__ = ["EN_CALLS", "ZH_CALLS"]

EN_CALLS: dict[str, str] = {
    "calls.hold": "Hold",
    "calls.resume": "Resume",
    "calls.mute": "Mute",
    "calls.unmute": "Unmute",
    "calls.on_hold": "On hold",
    "calls.muted": "Muted",
    "calls.keypad": "Keypad",
    "calls.transfer_to": "Transfer to",
    "calls.target_hint": "agent, queue or number",
    "calls.blind": "Transfer",
    "calls.consult": "Consult",
    "calls.conference": "Conference",
    "calls.complete": "Complete transfer",
    "calls.cancel": "Cancel",
    "calls.consulting": "Consulting",
    "calls.conferencing": "Conference with",
    "calls.ringing": "ringing",
    "calls.talking": "on the line",
    "calls.transferred": "Transferred",
    "calls.need_target": "Enter an agent, a queue or a number.",
    "offer.accept": "Accept",
    "offer.reject": "Reject",
    "offer.answer_on_phone": "Answer on your phone.",
    "keys.hold": "Hold / resume",
    "keys.mute": "Mute / unmute",
    "keys.reject": "Reject the ringing offer",
}

ZH_CALLS: dict[str, str] = {
    "calls.hold": "保持",
    "calls.resume": "恢复",
    "calls.mute": "静音",
    "calls.unmute": "取消静音",
    "calls.on_hold": "通话保持中",
    "calls.muted": "已静音",
    "calls.keypad": "拨号盘",
    "calls.transfer_to": "转接到",
    "calls.target_hint": "坐席、队列或号码",
    "calls.blind": "转接",
    "calls.consult": "咨询转接",
    "calls.conference": "三方会议",
    "calls.complete": "完成转接",
    "calls.cancel": "取消",
    "calls.consulting": "咨询中",
    "calls.conferencing": "会议中",
    "calls.ringing": "振铃中",
    "calls.talking": "通话中",
    "calls.transferred": "已转接",
    "calls.need_target": "请输入坐席、队列或号码。",
    "offer.accept": "接听",
    "offer.reject": "拒接",
    "offer.answer_on_phone": "请在话机上接听。",
    "keys.hold": "保持 / 恢复",
    "keys.mute": "静音 / 取消静音",
    "keys.reject": "拒接振铃中的来电",
}
