"""The store (SQLAlchemy 2 async; SQLite or PostgreSQL) and what lives in it."""

from crm.models import Base
from crm.store import (
    SURVEY_RESULTS,
    AgentStateData,
    BindingData,
    CallbackRequestData,
    CallRecordData,
    CustomerData,
    Disposition,
    ExtensionSettingsData,
    HangupCause,
    HangupSide,
    QueueEventData,
    Store,
    SurveyResultData,
    VoicemailData,
)

__all__ = [
    "SURVEY_RESULTS",
    "AgentStateData",
    "Base",
    "BindingData",
    "CallRecordData",
    "CallbackRequestData",
    "CustomerData",
    "Disposition",
    "ExtensionSettingsData",
    "HangupCause",
    "HangupSide",
    "QueueEventData",
    "Store",
    "SurveyResultData",
    "VoicemailData",
]
