"""The app on a home written by an older EventDesk (upgraded as it opens) and on a capture of a
newer one (refused, saying which version it needs, and left unchanged on Quit)."""

from __future__ import annotations

import json
from pathlib import Path

from pytestqt.qtbot import QtBot

from eventdesk.core.capture_schema import CAPTURE_VERSION
from eventdesk.core.workspace import SCHEMA_VERSION
from eventdesk.ui.home_opening import open_home
from tests.core.test_stored_formats import assert_old_contents, digest, old_home, set_user_version
from tests.ui.test_read_only import choose


def test_the_app_opens_a_home_written_by_301e23e_and_adopts_its_capture(qtbot: QtBot, tmp_path: Path) -> None:
    root = old_home(tmp_path)
    never = choose("Quit")
    home = open_home(str(root), ask=never)
    assert home is not None and never.asked == []
    try:
        assert_old_contents(home.capture)
        saved = json.loads((root / "workspace.json").read_text())
        assert saved["schema_version"] == SCHEMA_VERSION
        assert saved["capture_id"] == home.capture.capture_id
    finally:
        home.close()


def test_the_app_refuses_a_newer_capture_naming_the_version_and_quit_leaves_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    root = old_home(tmp_path)
    capture = root / "capture.sqlite3"
    set_user_version(capture, CAPTURE_VERSION + 1)
    before = digest(capture)
    quit_ = choose("Quit")
    assert open_home(str(root), ask=quit_) is None
    assert f"written by a newer EventDesk (needs capture version {CAPTURE_VERSION + 1}" in quit_.asked[0]
    assert digest(capture) == before
