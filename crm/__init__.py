"""The store (SQLAlchemy 2 async; SQLite or PostgreSQL) and what lives in it."""

from crm.models import Base
from crm.recordings import RecordingData, RecordingState
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
from crm.users import (
    ROLES,
    AuditEntry,
    QueueDayStats,
    SessionData,
    TokenData,
    UserData,
    UserExistsError,
    role_rank,
)

__all__ = [
    "ROLES",
    "SURVEY_RESULTS",
    "AgentStateData",
    "AuditEntry",
    "Base",
    "BindingData",
    "CallRecordData",
    "CallbackRequestData",
    "CustomerData",
    "Disposition",
    "ExtensionSettingsData",
    "HangupCause",
    "HangupSide",
    "QueueDayStats",
    "QueueEventData",
    "RecordingData",
    "RecordingState",
    "SessionData",
    "Store",
    "SurveyResultData",
    "TokenData",
    "UserData",
    "UserExistsError",
    "VoicemailData",
    "role_rank",
]
