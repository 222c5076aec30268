"""config.edit: extension edits on the round-trip tree keep the admin's comments and quoting,
and the result is a config the loader accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import SwitchboardConfig, parse_config
from config.defaults import default_config_text
from config.edit import (
    ExtensionExistsError,
    add_extension,
    remove_extension,
    set_extension_password,
)

TEXT = """# The admin's header comment.
sip:
  realm: example  # why this realm
extensions:
  # front desk
  "1001": {name: Desk, password: "desk-pw-1"}
  1002:   # an unquoted key, as people write them
    password: "pw-2"
"""


def _config(text: str) -> SwitchboardConfig:
    return parse_config(text, "switchboard.yaml")


def test_add_keeps_comments_and_quotes_the_number() -> None:
    out = add_extension(TEXT, "0100", "Lobby", "s3cret-pass")
    assert "# The admin's header comment." in out and "# why this realm" in out
    assert "# front desk" in out and "# an unquoted key" in out
    assert '"0100": {name: Lobby, password: "s3cret-pass"}' in out
    cfg = _config(out)
    assert cfg.extensions["0100"].password == "s3cret-pass"
    assert cfg.extensions["0100"].name == "Lobby"


def test_add_refuses_an_existing_number_quoted_or_not() -> None:
    with pytest.raises(ExtensionExistsError):
        add_extension(TEXT, "1001", None, "x" * 10)
    with pytest.raises(ExtensionExistsError):
        add_extension(TEXT, "1002", None, "x" * 10)


def test_remove_and_password_find_unquoted_keys() -> None:
    out = remove_extension(TEXT, "1002")
    assert "1002" not in out and "# front desk" in out
    out = set_extension_password(TEXT, "1002", "new-pass-123")
    assert _config(out).extensions["1002"].password == "new-pass-123"
    with pytest.raises(LookupError):
        remove_extension(TEXT, "1999")
    with pytest.raises(LookupError):
        set_extension_password(TEXT, "1999", "whatever-1")


def test_an_all_digit_password_stays_a_string() -> None:
    out = set_extension_password(TEXT, "1001", "12345678")
    assert _config(out).extensions["1001"].password == "12345678"


def test_the_shipped_config_round_trips_with_an_extension_added(tmp_path: Path) -> None:
    text = default_config_text()
    out = add_extension(text, "1006", "Six", "six-password")
    assert out.count("\n#") >= text.count("\n#")  # no comment lost
    assert "1006" in _config(out).extensions


def test_a_config_without_extensions_gets_the_section() -> None:
    out = add_extension("sip: {realm: x}\n", "2000", None, "pw-2000-abc")
    assert _config(out).extensions["2000"].password == "pw-2000-abc"


def test_an_api_edit_never_overwrites_a_hand_edit_made_meanwhile(tmp_path: Path) -> None:
    from app.http import _apply_edit
    from web.services import OperationError

    path = tmp_path / "switchboard.yaml"
    path.write_text(TEXT, encoding="utf-8")
    path.chmod(0o640)

    def meanwhile(text: str) -> str:  # the admin saves the file while the API edits it
        path.write_text(TEXT + "# saved by hand\n", encoding="utf-8")
        return add_extension(text, "1003", None, "pw-three-3")

    with pytest.raises(OperationError) as refused:
        _apply_edit(path, meanwhile)
    assert refused.value.status == 409
    assert path.read_text(encoding="utf-8").endswith("# saved by hand\n")
    assert [p.name for p in tmp_path.iterdir()] == ["switchboard.yaml"]  # no temp file left

    old, mode = _apply_edit(path, lambda text: add_extension(text, "1003", None, "pw-three-3"))
    assert old.endswith("# saved by hand\n") and mode == 0o640
    assert (path.stat().st_mode & 0o777) == 0o640
    assert "1003" in _config(path.read_text(encoding="utf-8")).extensions

    with pytest.raises(OperationError) as invalid:  # the whole config is checked
        _apply_edit(path, lambda text: text + "sip: {realm: [}\n")
    assert invalid.value.status == 422
