"""Conference rooms: calls Switchboard answers itself and mixes in one bridge.

Theory of operation
-------------------
A room is a number in the dial plan. The first caller creates it, every caller is answered
by Switchboard (a UAS-only call, RFC 3261 §13.3; RFC 4353 calls this the focus) and its leg
joins the room's mixing bridge once the media is up. A caller over the room's limit gets 486
before anything is allocated. The bridge is created lazily with the first member's answer
(``room-{number}``) and destroyed, with the room, when the last member leaves; rooms live
only as long as they have members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from media import MediaInterface

__all__ = ["ConferenceRoom", "Conferences"]


@dataclass(slots=True)
class ConferenceRoom:
    """A named conference room: one mixing bridge, its members' calls."""

    number: str
    name: str
    max_members: int
    bridge_id: str = ""
    members: set[str] = field(default_factory=set)  # call ids


class Conferences:
    """The rooms that have members, and their bridges."""

    def __init__(self, media: MediaInterface) -> None:
        self.media = media
        self.rooms: dict[str, ConferenceRoom] = {}

    def is_full(self, number: str, max_members: int) -> bool:
        """Whether a new caller to room ``number`` must be turned away (486)."""
        room = self.rooms.get(number)
        limit = room.max_members if room is not None else max_members
        return (len(room.members) if room is not None else 0) >= limit

    def enter(
        self, number: str, name: str, max_members: int, call_id: str
    ) -> ConferenceRoom | None:
        """Reserve a place in room ``number`` for ``call_id``; None when the room is full."""
        room = self.rooms.get(number)
        if room is None:
            room = self.rooms[number] = ConferenceRoom(number, name, max_members)
        if len(room.members) >= room.max_members:
            if not room.members:
                del self.rooms[number]
            return None
        room.members.add(call_id)
        return room

    def join(self, room: ConferenceRoom, leg_id: str) -> None:
        """Put an answered member's leg into the room's bridge (created with the first)."""
        if not room.bridge_id:
            room.bridge_id = f"room-{room.number}"
            self.media.create_bridge(room.bridge_id)
        self.media.join(room.bridge_id, leg_id)

    def leave(self, room: ConferenceRoom, call_id: str, leg_id: str) -> None:
        """A member's call ended (or never got media): the last one out closes the room."""
        room.members.discard(call_id)
        if room.bridge_id and leg_id in self.media:
            self.media.leave(room.bridge_id, leg_id)
        if not room.members:
            if room.bridge_id:
                self.media.destroy_bridge(room.bridge_id)
            self.rooms.pop(room.number, None)
