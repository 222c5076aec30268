"""The store (SQLAlchemy 2 async; SQLite or PostgreSQL) and what lives in it."""

from crm.models import Base
from crm.store import (
    SURVEY_RESULTS,
    BindingData,
    CallbackRequestData,
    CallRecordData,
    CustomerData,
    Disposition,
    ExtensionSettingsData,
    HangupCause,
    HangupSide,
    Store,
    SurveyResultData,
    VoicemailData,
)

__all__ = [
    "SURVEY_RESULTS",
    "Base",
    "BindingData",
    "CallRecordData",
    "CallbackRequestData",
    "CustomerData",
    "Disposition",
    "ExtensionSettingsData",
    "HangupCause",
    "HangupSide",
    "Store",
    "SurveyResultData",
    "VoicemailData",
]
