"""One party of a call, and what Switchboard offers every party.

Theory of operation
-------------------
A B2BUA call has two *sides*, one per party (RFC 3261 §6: a back-to-back user agent is a UAS
towards the caller and a UAC towards the callee). A :class:`Side` is one of them: the SIP
dialog with that party (RFC 3261 §12), the id of the party's own RTP leg in the media
interface, and what offer/answer settled with that party alone (RFC 3264): codec, DTMF
payload type, our SDP session id and version and the description we last sent. Because media
is anchored on Switchboard, the two sides negotiate independently; a call, a transfer or a
queue re-pairs sides without renegotiating them.

``ALLOW`` (RFC 3261 §20.5) and ``SUPPORTED_CODECS`` are what every side is offered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from media import PCMA, PCMU, Codec
from media.codecs import get_codec

from .dialog import Dialog, Flow
from .message import Request

__all__ = ["ALLOW", "G722", "IVR_KEYS_HEADER", "SUPPORTED_CODECS", "Side"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
G722 = Codec(9, "G722", 8000)  # RFC 3551 §4.5.2: 16 kHz audio, 8000 RTP clock
# Offer order: wideband first when both sides can, G.711 for everyone else.
SUPPORTED_CODECS: tuple[Codec, ...] = (
    (G722, PCMU, PCMA) if get_codec("G722", 8000) is not None else (PCMU, PCMA)
)
# Carries the digits a caller pressed in the IVR to the agent's phone.
IVR_KEYS_HEADER = "X-Switchboard-IVR-Keys"


@dataclass(slots=True)
class Side:
    """One party's signalling and media state."""

    label: str  # "a" (who called) or "b" (who was called), for the call record
    ext: str
    leg_id: str
    flow: Flow
    dialog: Dialog | None = None
    codec: Codec | None = None
    dtmf_pt: int | None = None
    sdp_session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = 0
    last_local_sdp: bytes = b""
    info_queue: list[Request] = field(default_factory=list)
    info_busy: bool = False
    holding: bool = False  # this party put the other one on hold
    moh_player: Any = None  # the music-on-hold player on this side's leg, while held
    # The agent panel's controls of this party (CallControl.hold / mute): it holds the other
    # party from Switchboard's side, and what it says goes nowhere.
    on_hold: bool = False
    muted: bool = False
    uac: bool = False  # we sent the INVITE that made the dialog (we own its Call-ID)
    # Its phone hung up while the call goes on without it (an agent leaving a consult that
    # still rings): its dialog is over, so nothing more is sent in it (no BYE: RFC 3261
    # §15.1.2, the dialog ended with the BYE it sent).
    left: bool = False
    # Our own re-INVITE to this party, while it has no final response (RFC 3261 §14.1).
    reoffer_pending: bool = False
    # A party reached through a trunk (pbx.trunk_dial): the trunk, the trunks that failed
    # before it with their status, and the caller ID it was given — for the call record.
    trunk: str | None = None
    # A carrier's digest account for requests we send this party (its dialog's credentials).
    credentials: tuple[str, str] | None = None
    trunk_attempts: tuple[tuple[str, int], ...] = ()
    caller_id_sent: str | None = None
    # An outside party dialled for this extension ("" = for Switchboard itself), counted
    # against its concurrent outbound cap while the call is up.
    outside_for: str | None = None
