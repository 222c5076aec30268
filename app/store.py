"""The store behind the SIP core: :class:`pbx.persistence.Persistence` on :class:`crm.Store`.

This is the one module that knows both the SIP core's records and the store's rows.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from crm import Store
from crm.store import BindingData, CallRecordData, ExtensionSettingsData
from pbx.features import ExtensionSettings
from pbx.persistence import CallDetail, StoredBinding

__all__ = ["StorePersistence"]


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
