"""Feature codes and call-forwarding routing (pbx.features)."""

from __future__ import annotations

import pytest

from pbx.features import ExtensionSettings, Feature, FeatureCodes, FeatureRequest, route

CODES = FeatureCodes(
    {
        "forward_all_on": "*72",
        "forward_all_off": "*73",
        "forward_busy_on": "*90",
        "forward_busy_off": "*91",
        "forward_no_answer_on": "*92",
        "forward_no_answer_off": "*93",
        "dnd_on": "*78",
        "dnd_off": "*79",
        "pickup": "*8",
        "directed_pickup": "**",
    }
)


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("*721003", FeatureRequest(Feature.FORWARD_ALL_ON, "1003")),
        ("*72", FeatureRequest(Feature.FORWARD_ALL_ON, "")),
        ("*73", FeatureRequest(Feature.FORWARD_ALL_OFF)),
        ("*901004", FeatureRequest(Feature.FORWARD_BUSY_ON, "1004")),
        ("*78", FeatureRequest(Feature.DND_ON)),
        ("*79", FeatureRequest(Feature.DND_OFF)),
        ("*8", FeatureRequest(Feature.PICKUP)),
        ("**1002", FeatureRequest(Feature.DIRECTED_PICKUP, "1002")),
        ("1002", None),
        ("*99", None),
        ("*7", None),
        ("*73x", None),
        ("", None),
    ],
)
def test_parse(dialled: str, expected: FeatureRequest | None) -> None:
    assert CODES.parse(dialled) == expected


def test_apply_and_forward_for() -> None:
    s = ExtensionSettings()
    s = s.apply(FeatureRequest(Feature.FORWARD_BUSY_ON, "1003"))
    s = s.apply(FeatureRequest(Feature.FORWARD_NO_ANSWER_ON, "1004"))
    s = s.apply(FeatureRequest(Feature.DND_ON))
    assert (s.forward_for("busy"), s.forward_for("no_answer"), s.dnd) == ("1003", "1004", True)
    s = s.apply(FeatureRequest(Feature.FORWARD_BUSY_OFF)).apply(FeatureRequest(Feature.DND_OFF))
    assert (s.forward_busy, s.dnd) == (None, False)
    assert s.apply(FeatureRequest(Feature.PICKUP)) == s


def test_route_follows_unconditional_forwarding_and_detects_loops() -> None:
    settings = {
        "1001": ExtensionSettings(forward_all="1002"),
        "1002": ExtensionSettings(forward_all="1003"),
        "1003": ExtensionSettings(dnd=True),
    }
    r = route("1001", settings)
    assert (r.target, r.hops, r.busy, r.loop) == ("1003", ("1001", "1002"), True, False)
    assert route("1004", settings).target == "1004"
    settings["1003"] = ExtensionSettings(forward_all="1001")
    assert route("1001", settings).loop


def test_mailbox_codes_are_recognised() -> None:
    codes = FeatureCodes({"voicemail_own": "*97", "voicemail_any": "*98", "pickup": "*8"})
    assert codes.parse("*97") == FeatureRequest(Feature.VOICEMAIL_OWN)
    assert codes.parse("*98") == FeatureRequest(Feature.VOICEMAIL_ANY)
    assert codes.parse("*981002") == FeatureRequest(Feature.VOICEMAIL_ANY, "1002")
    assert codes.parse("*971") is None
    settings = ExtensionSettings(dnd=True)
    assert settings.apply(FeatureRequest(Feature.VOICEMAIL_OWN)) == settings
