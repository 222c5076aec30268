"""The ``tickets:`` config section and the one place it becomes TicketSettings
(app/settings.py): code tables, departments, the business calendar and SLA durations."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

import config
from app.settings import ticket_settings_from_config
from config import SwitchboardConfig, load_config
from crm.tickets import SlaTarget

H = 3600


def test_defaults() -> None:
    s = ticket_settings_from_config(SwitchboardConfig())
    assert s.types == {"general": "General"} and s.sla == {} and s.warn_before == H
    monday = datetime(2026, 12, 7, 16, tzinfo=ZoneInfo("UTC"))
    assert s.calendar.add(monday, 2 * H) == datetime(2026, 12, 8, 10, tzinfo=ZoneInfo("UTC"))


def test_a_full_section() -> None:
    cfg = SwitchboardConfig.model_validate(
        {
            "tickets": {
                "types": {"complaint": {"name": "Complaint"}},
                "categories": {"billing": {"name": "Billing"}},
                "departments": {"support": {"members": ["alice", "bob"]}},
                "calendar": {
                    "timezone": "Asia/Shanghai",
                    "weekly": [{"days": "mon-fri", "hours": "09:00-18:00"}],
                    "holidays": [{"date": "10-01", "until": "10-07", "name": "National Day"}],
                    "day_hours": 9,
                },
                "sla": {"complaint": {"urgent": {"first_response": "30m", "resolution": "2d"}}},
                "warn_before": "15m",
            }
        }
    )
    s = ticket_settings_from_config(cfg)
    assert s.departments_of("bob") == frozenset({"support"})
    assert s.target("complaint", "urgent") == SlaTarget(1800, 18 * H)
    assert s.target("complaint", "low") is None and s.warn_before == 900
    shanghai = ZoneInfo("Asia/Shanghai")
    assert s.calendar.zone == shanghai
    # National Day week: Wednesday 2026-09-30 17:00 + 2 h is Thursday 10-08 10:00.
    due = s.calendar.add(datetime(2026, 9, 30, 17, tzinfo=shanghai), 2 * H)
    assert due == datetime(2026, 10, 8, 10, tzinfo=shanghai)
    assert s.calendar.holidays[0].first == date(2000, 10, 1)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sla": {"nope": {"normal": {"first_response": "1h", "resolution": "1d"}}}}, "unknown"),
        ({"sla": {"general": {"asap": {"first_response": "1h", "resolution": "1d"}}}}, "asap"),
        ({"warn_before": "soon"}, "bad duration"),
        ({"types": {}}, "at least one type"),
        ({"types": {"Bad Code": {"name": "x"}}}, "pattern"),
        ({"calendar": {"timezone": "Mars/Base"}}, "unknown time zone"),
        ({"calendar": {"weekly": [{"days": "someday"}]}}, "unknown day"),
        ({"calendar": {"day_hours": 0}}, "greater than 0"),
    ],
)
def test_bad_sections(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SwitchboardConfig.model_validate({"tickets": section})


def test_the_shipped_example_loads() -> None:
    cfg = load_config(Path(config.__file__).resolve().parent / "default.yaml")
    s = ticket_settings_from_config(cfg)
    assert set(s.types) == {"general", "complaint", "fault"}
    assert s.target("complaint", "normal") == SlaTarget(4 * H, 24 * H)
