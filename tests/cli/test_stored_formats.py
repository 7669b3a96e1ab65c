"""The command line on a home written by an older EventDesk (upgraded as it opens) and on files
of a newer one (refused with exit 2, naming the file and the version needed, left unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

from eventdesk.core.capture_schema import CAPTURE_VERSION
from eventdesk.core.workspace import SCHEMA_VERSION
from tests.cli.harness import eventdesk, home_args, ok
from tests.core.test_stored_formats import digest, old_home, set_user_version, user_version


def test_status_and_events_work_on_a_home_written_by_301e23e(tmp_path: Path) -> None:
    home = old_home(tmp_path)
    h = home_args(home)
    status = json.loads(ok(*h, "status", "--json"))
    assert status["models"]["accounts"]["events"] == 4
    assert status["models"]["accounts"]["checkpoint"] == "4-seq"
    route = status["routes"]["to-local"]
    assert (route["position"], route["backlog"], route["quarantined"]) == (2, 2, 0)
    lines = ok(*h, "events", "--json").splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["acct-1", "acct-2", "acct-3", "acct-1"]
    assert user_version(home / "capture.sqlite3") == CAPTURE_VERSION
    assert "to-local" in ok(*h, "list")


def test_an_edit_on_a_home_written_by_301e23e_saves_the_workspace_as_the_current_version(
    tmp_path: Path,
) -> None:
    home = old_home(tmp_path)
    ok(*home_args(home), "route", "disable", "to-local")
    saved = json.loads((home / "workspace.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    assert saved["routes"]["to-local"]["settings"]["enabled"] is False
    assert json.loads((home / "workspace.json.bak").read_text())["schema_version"] == 1
    ok(*home_args(home), "route", "add", "again", "--model", "accounts", "--broker", "local")
    saved = json.loads((home / "workspace.json").read_text())
    assert saved["capture_id"] and saved["workspace_id"]  # the capture, opened, is adopted


def test_a_newer_capture_is_refused_with_exit_2_and_left_unchanged(tmp_path: Path) -> None:
    home = old_home(tmp_path)
    capture = home / "capture.sqlite3"
    set_user_version(capture, CAPTURE_VERSION + 1)
    before = digest(capture)
    for command in (("status",), ("events",), ("quarantine", "list")):
        result = eventdesk(*home_args(home), *command)
        assert result.returncode == 2, result.stderr
        assert f"capture {str(capture)!r}" in result.stderr
        assert f"written by a newer EventDesk (needs capture version {CAPTURE_VERSION + 1}" in result.stderr
        assert digest(capture) == before


def test_a_newer_workspace_is_refused_with_exit_2_and_left_unchanged(tmp_path: Path) -> None:
    home = old_home(tmp_path)
    path = home / "workspace.json"
    data = json.loads(path.read_text()) | {"schema_version": SCHEMA_VERSION + 1, "workspace_id": "w"}
    path.write_text(json.dumps(data))
    before = digest(path)
    for command in (("status",), ("list",), ("route", "disable", "to-local")):
        result = eventdesk(*home_args(home), *command)
        assert result.returncode == 2, result.stderr
        assert f"workspace file {str(path)!r}: field 'schema_version'" in result.stderr
        assert f"written by a newer EventDesk (needs workspace version {SCHEMA_VERSION + 1}" in result.stderr
        assert digest(path) == before
