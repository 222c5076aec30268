"""The store (SQLAlchemy 2 async; SQLite or PostgreSQL) and what lives in it."""

from crm.models import Base
from crm.store import (
    BindingData,
    CallRecordData,
    Disposition,
    ExtensionSettingsData,
    HangupCause,
    HangupSide,
    Store,
)

__all__ = [
    "Base",
    "BindingData",
    "CallRecordData",
    "Disposition",
    "ExtensionSettingsData",
    "HangupCause",
    "HangupSide",
    "Store",
]
