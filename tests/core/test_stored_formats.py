"""Stored formats are versioned: a capture or workspace written by an older EventDesk opens after
an upgrade with everything intact; a newer one is refused, naming the file and the version it
needs, and left unchanged.

The older files are ``tests/fixtures/home-301e23e`` (see tests/fixtures/README.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventdesk.core import capture_schema
from eventdesk.core.capture import Capture
from eventdesk.core.capture_schema import CAPTURE_VERSION
from eventdesk.core.errors import CaptureUnusableError, ConfigError
from eventdesk.core.home import Home
from eventdesk.core.workspace import SCHEMA_VERSION, Workspace, load_workspace, save_workspace

OLD_HOME = Path(__file__).parents[1] / "fixtures" / "home-301e23e"


def old_home(tmp_path: Path) -> Path:
    """A copy of the home written by EventDesk 301e23e (the fixture itself stays untouched)."""
    home = tmp_path / "old-home"
    shutil.copytree(OLD_HOME, home)
    return home


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def set_user_version(path: Path, version: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        db.close()


def assert_old_contents(cap: Capture) -> None:
    """What make_home_301e23e.py stored: 4 events, a checkpoint, a route position."""
    assert cap.count() == 4
    assert [(e.pos, e.envelope["key"], e.envelope["op"]) for e in cap.latest(10)] == [
        (1, "acct-1", "upsert"),
        (2, "acct-2", "upsert"),
        (3, "acct-3", "upsert"),
        (4, "acct-1", "delete"),
    ]
    assert cap.get(2) is not None and cap.get(2).envelope["payload"] == {
        "_id": "acct-2",
        "n": 2,
        "name": "Zoë",
    }
    assert cap.checkpoints() == {"accounts": "4-seq"}
    assert cap.route_position("to-local") == 2


# -- the capture --------------------------------------------------------------------------------


def test_a_new_capture_carries_the_current_version_in_user_version(tmp_path: Path) -> None:
    Capture(tmp_path / "c.sqlite3").close()
    assert user_version(tmp_path / "c.sqlite3") == CAPTURE_VERSION >= 2


def test_a_capture_written_by_301e23e_opens_after_upgrade_with_events_checkpoints_and_positions(
    tmp_path: Path,
) -> None:
    path = old_home(tmp_path) / "capture.sqlite3"
    assert user_version(path) == 0
    cap = Capture(path)
    assert_old_contents(cap)
    assert cap.capture_id is not None and len(cap.capture_id) == 32
    cap.quarantine_add("to-local", 3, "topic", "too long")  # what version 2 added works
    assert cap.quarantine_counts() == {"to-local": 1}
    cap.append("accounts", [], "5-seq")
    cap.close()
    assert user_version(path) == CAPTURE_VERSION
    again = Capture(path)  # the upgraded file opens as it is, keeping its identity
    assert again.capture_id == cap.capture_id
    assert again.checkpoint("accounts") == "5-seq"
    again.close()


def test_a_capture_of_this_session_before_versions_keeps_its_id_and_quarantine(tmp_path: Path) -> None:
    """Files of the development versions between 301e23e and versioning: the version 2 tables with
    user_version 0."""
    path = tmp_path / "c.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in capture_schema.SCHEMA:
        db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('capture_version', '1'), ('capture_id', 'dev-id')")
    db.execute("INSERT INTO quarantine VALUES ('r', 1, 'topic', 'why', 'held', 1, 't', 't')")
    db.execute("PRAGMA user_version = 0")
    db.close()
    cap = Capture(path)
    assert cap.capture_id == "dev-id"
    assert cap.quarantine_counts() == {"r": 1}
    cap.close()
    assert user_version(path) == CAPTURE_VERSION


def test_an_old_capture_opened_read_only_is_read_without_being_changed(tmp_path: Path) -> None:
    path = old_home(tmp_path) / "capture.sqlite3"
    before = digest(path)
    cap = Capture(path, readonly=True)
    assert_old_contents(cap)
    assert cap.quarantine_counts() == {}  # no quarantine table yet: nothing quarantined
    assert cap.quarantine_entries() == []
    cap.close()
    assert digest(path) == before
    assert user_version(path) == 0


@pytest.mark.parametrize("readonly", [False, True])
def test_a_capture_of_a_newer_version_is_refused_unchanged_naming_the_version_it_needs(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "c.sqlite3"
    Capture(path).close()
    set_user_version(path, CAPTURE_VERSION + 1)
    before = digest(path)
    with pytest.raises(CaptureUnusableError) as caught:
        Capture(path, readonly=readonly)
    message = str(caught.value)
    assert f"capture {str(path)!r}" in message
    assert f"written by a newer EventDesk (needs capture version {CAPTURE_VERSION + 1}" in message
    assert caught.value.exit_code == 2
    assert digest(path) == before
    if not readonly:  # (a read-only connection cannot remove the empty WAL files it made)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite3"]  # none left behind


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.integers(CAPTURE_VERSION + 1, 2**31 - 1) | st.integers(-(2**31), -1),
    readonly=st.booleans(),
)
def test_a_capture_of_any_version_but_ours_or_older_is_refused_and_left_unchanged(
    tmp_path_factory: pytest.TempPathFactory, version: int, readonly: bool
) -> None:
    path = old_home(tmp_path_factory.mktemp("v")) / "capture.sqlite3"
    set_user_version(path, version)
    before = digest(path)
    with pytest.raises(CaptureUnusableError) as caught:
        Capture(path, readonly=readonly)
    assert caught.value.obj == f"capture {str(path)!r}"
    if version < 0:
        assert (
            f"not a capture of any EventDesk version (its user_version is {version})" in caught.value.detail
        )
    else:
        assert f"written by a newer EventDesk (needs capture version {version};" in caught.value.detail
    assert digest(path) == before


def test_an_upgrade_that_fails_leaves_the_capture_at_its_last_complete_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = old_home(tmp_path) / "capture.sqlite3"
    broken = capture_schema.Upgrade(
        CAPTURE_VERSION + 1,
        "a step that fails halfway",
        ("CREATE TABLE extra (x)", "SELECT no_such_function()"),
    )
    monkeypatch.setattr(capture_schema, "CAPTURE_VERSION", CAPTURE_VERSION + 1)
    monkeypatch.setattr(capture_schema, "UPGRADES", (*capture_schema.UPGRADES, broken))
    with pytest.raises(sqlite3.OperationalError, match="no_such_function"):
        Capture(path)
    monkeypatch.undo()
    assert user_version(path) == CAPTURE_VERSION  # the steps before it are kept, each its own transaction
    cap = Capture(path)
    assert_old_contents(cap)
    cap.close()
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert "extra" not in tables and "quarantine" in tables


def test_an_old_capture_opened_by_several_at_once_is_upgraded_once_for_all(tmp_path: Path) -> None:
    path = old_home(tmp_path) / "capture.sqlite3"
    start = threading.Barrier(4)

    def open_it() -> str | None:
        start.wait()
        cap = Capture(path)
        try:
            return cap.capture_id
        finally:
            cap.close()

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: open_it(), range(4)))
    assert len(set(ids)) == 1 and ids[0] is not None
    assert user_version(path) == CAPTURE_VERSION
    cap = Capture(path, readonly=True)
    assert_old_contents(cap)
    cap.close()


def test_the_upgrades_lead_step_by_step_to_the_current_version() -> None:
    versions = [step.to for step in capture_schema.UPGRADES]
    assert versions == list(range(2, CAPTURE_VERSION + 1))


# -- the workspace ------------------------------------------------------------------------------


def test_a_workspace_written_by_301e23e_loads_after_upgrade_and_saves_as_the_current_version(
    tmp_path: Path,
) -> None:
    path = old_home(tmp_path) / "workspace.json"
    ws = load_workspace(path)
    assert not ws.invalid
    assert ws.datasource("couch").settings["url"] == "http://127.0.0.1:5984"
    assert ws.model("accounts").settings["database"] == "accounts"
    assert ws.broker("local").settings["url"] == "mqtt://127.0.0.1:1883"
    assert ws.route("to-local").settings["topic"] == "/v1/{model}/{key}"
    assert ws.capture_id is None
    data = ws.to_json()
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["workspace_id"] == ws.workspace_id
    save_workspace(ws, path)
    assert json.loads(path.with_name("workspace.json.bak").read_text())["schema_version"] == 1
    assert load_workspace(path).to_json() == data


def test_a_workspace_of_version_1_keeps_the_ids_it_already_has() -> None:
    ws = Workspace.from_json({"schema_version": 1, "workspace_id": "ws-1", "capture_id": "cap-1"})
    assert (ws.workspace_id, ws.capture_id) == ("ws-1", "cap-1")


def test_a_current_workspace_without_its_id_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Workspace.from_json({"schema_version": SCHEMA_VERSION}, "workspace file 'w.json'")
    assert caught.value.field == "workspace_id"
    assert caught.value.obj == "workspace file 'w.json'"


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99])
def test_a_workspace_of_a_newer_version_is_refused_unchanged_naming_the_version_it_needs(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps({"schema_version": version, "workspace_id": "w", "new_things": {}}))
    before = digest(path)
    with pytest.raises(ConfigError) as caught:
        load_workspace(path)
    assert caught.value.obj == f"workspace file {str(path)!r}"
    assert caught.value.field == "schema_version"
    assert f"written by a newer EventDesk (needs workspace version {version}" in caught.value.detail
    assert caught.value.exit_code == 2
    assert digest(path) == before


@settings(max_examples=50, deadline=None)
@given(version=st.integers(SCHEMA_VERSION + 1), extra=st.dictionaries(st.text(), st.integers(), max_size=3))
def test_a_workspace_of_any_newer_version_is_refused_naming_it(version: int, extra: dict[str, int]) -> None:
    with pytest.raises(ConfigError) as caught:
        Workspace.from_json(extra | {"schema_version": version}, "w")
    assert caught.value.field == "schema_version"
    assert f"written by a newer EventDesk (needs workspace version {version};" in caught.value.detail


@pytest.mark.parametrize("version", [0, -1, "1", None, 1.0, True, [1], {"v": 1}])
def test_a_workspace_of_an_unknown_version_is_refused_naming_the_key(version: object) -> None:
    with pytest.raises(ConfigError) as caught:
        Workspace.from_json({"schema_version": version}, "w")
    assert caught.value.field == "schema_version"
    assert "unsupported" in caught.value.detail


def test_an_old_home_opens_with_its_capture_adopted_when_the_lock_is_held(tmp_path: Path) -> None:
    home = Home.open(str(old_home(tmp_path)), lock="edit")
    assert_old_contents(home.capture)
    saved = json.loads(home.paths.workspace_file.read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    assert saved["capture_id"] == home.capture.capture_id
    home.close()
