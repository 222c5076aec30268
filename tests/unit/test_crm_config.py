"""The ``crm:`` config section: its schema and its translation into CrmSettings (app/)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import crm_settings_from_config
from config import CrmConfig, SwitchboardConfig
from crm import CustomField


def test_defaults() -> None:
    settings = crm_settings_from_config(SwitchboardConfig())
    assert settings.custom_fields == {}
    assert settings.claim_limit == 50 and settings.return_after_days == 30


def test_custom_fields_and_pool() -> None:
    cfg = SwitchboardConfig.model_validate(
        {
            "crm": {
                "custom_fields": {
                    "contract": {"type": "choice", "choices": ["basic", "gold"], "required": True},
                    "seats": {"type": "number"},
                },
                "pool": {"claim_limit": 5, "return_after_days": 7},
            }
        }
    )
    settings = crm_settings_from_config(cfg)
    assert settings.custom_fields == {
        "contract": CustomField("contract", "choice", ("basic", "gold"), True),
        "seats": CustomField("seats", "number"),
    }
    assert settings.claim_limit == 5 and settings.return_after_days == 7


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"custom_fields": {"c": {"type": "choice"}}}, "needs choices"),
        ({"custom_fields": {"c": {"type": "text", "choices": ["a"]}}}, "only for type: choice"),
        ({"custom_fields": {"Bad Name": {}}}, "pattern"),
        ({"custom_fields": {"c": {"type": "colour"}}}, "literal"),
        ({"pool": {"return_after_days": 0}}, "greater than or equal to 1"),
        ({"pool": {"claim_limit": -1}}, "greater than or equal to 0"),
    ],
)
def test_bad_sections(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CrmConfig.model_validate(section)
