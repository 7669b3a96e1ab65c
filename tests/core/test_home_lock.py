"""One writer per home: the lock, read-only opening, private files, the capture's identity."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.errors import CaptureUnusableError, DiskFullError, HomeInUseError
from eventdesk.core.home import Home
from eventdesk.core.home_lock import Holder, HomeLock, holder
from eventdesk.core.paths import resolve_paths


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def event(key: str) -> Event:
    return Event(datasource="couch", model="accounts", op="created", key=key, rev="1-a", seq=key, payload={})


def add_pipeline(home: Home) -> None:
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "couch", {"database": "accounts"})
    home.add_broker("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1883"})
    home.add_route("out", "accounts", "mosq", {"topic": "t/{key}"})


HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from eventdesk.core.home_lock import HomeLock
lock = HomeLock.acquire(Path(sys.argv[1]), "run")
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def held_by_child(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock at ``path`` (as ``run``) for the block, killed after."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        try:
            yield child
        finally:
            child.kill()


def test_a_second_writer_is_refused_naming_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "eventdesk.lock"
    with held_by_child(path) as child:
        with pytest.raises(HomeInUseError) as refused:
            HomeLock.acquire(path, "run", home=str(tmp_path))
        assert refused.value.pid == child.pid
        assert f"PID {child.pid}" in str(refused.value)
        assert "`eventdesk run`" in str(refused.value)
        assert refused.value.exit_code == 7
        current = holder(path)
        assert current is not None and current.pid == child.pid and current.what == "run"


def test_a_killed_holder_frees_the_home(tmp_path: Path) -> None:
    path = tmp_path / "eventdesk.lock"
    with held_by_child(path) as child:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert holder(path) is None
    lock = HomeLock.acquire(path, "run")
    try:
        current = holder(path)
        assert current is not None and current.pid == os.getpid()
    finally:
        lock.release()
    assert holder(path) is None


def test_an_edit_while_a_runner_holds_the_home_says_to_restart_it(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "home").ensure()
    with held_by_child(paths.lock_file), pytest.raises(HomeInUseError, match="does not reload the workspace"):
        Home.open(str(tmp_path / "home"), lock="edit")


def test_a_held_home_opens_read_only_for_the_app(tmp_path: Path) -> None:
    root = str(tmp_path / "home")
    writer = Home.open(root, lock="run")
    add_pipeline(writer)
    writer.capture.append("accounts", [event("a")], 1)
    try:
        viewer = Home.open(root, lock="app", read_only_if_held=True)
        assert viewer.lock is None and viewer.read_only is not None
        assert f"PID {os.getpid()}" in str(viewer.read_only)
        assert viewer.capture.count("accounts") == 1  # reads what the runner captures
        with pytest.raises(HomeInUseError):
            viewer.add_broker("other", "mqtt", {"url": "mqtt://127.0.0.1:1884"})
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            viewer.capture.set_route_position("out", 0)
        viewer.close()
    finally:
        writer.close()
    again = Home.open(root, lock="app", read_only_if_held=True)
    assert again.read_only is None and again.lock is not None
    again.close()


def test_a_new_home_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        home = Home.open(str(tmp_path / "home"), lock="run")
        add_pipeline(home)
        home.capture.append("accounts", [event("a")], 1)
        paths = home.paths
        files = [p for p in paths.private_files() if p.exists()]
        assert paths.capture_file in files and paths.workspace_file in files and paths.lock_file in files
        assert paths.capture_file.with_name("capture.sqlite3-wal") in files
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert mode(paths.data_dir) == 0o700
        home.close()
    finally:
        os.umask(old)


def test_an_existing_home_is_made_private_on_open(tmp_path: Path) -> None:
    root = tmp_path / "home"
    home = Home.open(str(root))
    add_pipeline(home)
    home.add_route("out2", "accounts", "mosq", {"topic": "u/{key}"})  # leaves a .bak
    home.close()
    paths = resolve_paths(root)
    root.chmod(0o755)
    for p in paths.private_files():
        if p.exists():
            p.chmod(0o644)
    Home.open(str(root)).close()
    assert mode(root) == 0o700
    assert mode(paths.capture_file) == 0o600
    assert mode(paths.workspace_file) == 0o600
    assert mode(paths.workspace_file.with_name("workspace.json.bak")) == 0o600


def test_the_workspace_records_its_capture_and_an_old_one_adopts_it(tmp_path: Path) -> None:
    root = str(tmp_path / "home")
    home = Home.open(root)  # no lock: an older EventDesk, or a reading command
    add_pipeline(home)
    capture_id = home.capture.capture_id
    assert capture_id and home.workspace.capture_id is None
    home.close()
    home = Home.open(root, lock="run")
    assert home.capture.capture_id == capture_id
    assert home.workspace.capture_id == capture_id
    home.close()
    assert Home.open(root).workspace.capture_id == capture_id  # saved


def home_with_capture_removed(tmp_path: Path) -> tuple[str, Path]:
    """A home whose workspace recorded its capture, then lost it: (home, capture path)."""
    root = str(tmp_path / "home")
    home = Home.open(root, lock="run")
    add_pipeline(home)
    home.capture.append("accounts", [event("a")], 1)
    home.close()
    capture = resolve_paths(root).capture_file
    capture.unlink()
    return root, capture


def test_a_missing_capture_is_refused_not_recreated(tmp_path: Path) -> None:
    root, capture = home_with_capture_removed(tmp_path)
    home = Home.open(root, lock="run")
    with pytest.raises(CaptureUnusableError, match=r"is missing.*--fresh-capture") as refused:
        home.capture  # noqa: B018 - opening it is the test
    assert str(capture) in str(refused.value)
    assert not capture.exists()
    home.close()


def test_a_capture_of_another_workspace_is_refused(tmp_path: Path) -> None:
    root, capture = home_with_capture_removed(tmp_path)
    Capture(capture).close()  # another, new capture in its place
    home = Home.open(root, lock="run")
    with pytest.raises(CaptureUnusableError, match="belongs to another workspace"):
        home.capture  # noqa: B018 - opening it is the test
    home.close()


def test_a_fresh_capture_keeps_the_old_one_and_republishes_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "home")
    home = Home.open(root, lock="run")
    add_pipeline(home)
    home.add_model("accounts", "couch", {"database": "accounts", "since": "0"}, replace=True)
    home.capture.append("accounts", [event("a"), event("b")], 2)
    old_id = home.capture.capture_id
    home.close()
    home = Home.open(root, lock="run", fresh_capture=True)
    cap = home.capture
    assert cap.capture_id != old_id and home.workspace.capture_id == cap.capture_id
    assert cap.count() == 0
    assert cap.checkpoint("accounts") == "now"  # not its history again (`since` 0): routes would publish it
    assert cap.route_position("out") == 0
    assert home.capture_notice is not None and "kept as" in home.capture_notice
    [kept] = [
        p for p in Path(root).iterdir() if ".aside-" in p.name and not p.name.endswith(("-wal", "-shm"))
    ]
    home.close()
    old = Capture(kept, readonly=True)
    assert old.count() == 2 and old.capture_id == old_id
    old.close()
    assert Home.open(root, lock="run").capture.count() == 0  # the new one is the workspace's now


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 200, b"SQLite format 3\0" + b"\xff" * 4080]
)
def test_a_corrupt_capture_gives_a_clear_message_and_the_way_out(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "capture.sqlite3"
    path.write_bytes(content)
    with pytest.raises(CaptureUnusableError) as refused:
        Capture(path)
    message = str(refused.value)
    assert str(path) in message
    assert "--fresh-capture" in message and ".recover" in message and "mv " in message
    assert refused.value.exit_code == 2


def test_a_full_disk_at_the_lock_or_the_workspace_says_disk_full(tmp_path: Path) -> None:
    from tests.small_filesystem import fill, small_filesystem

    with small_filesystem(tmp_path / "fs", "1m") as fs:
        home = Home.open(str(fs / "home"))
        fill(fs, leave=0)
        with pytest.raises(DiskFullError, match=f"disk full at {fs / 'home' / 'eventdesk.lock'}"):
            HomeLock.acquire(home.paths.lock_file, "run")
        with pytest.raises(DiskFullError, match=f"disk full at {fs / 'home' / 'workspace.json'}"):
            home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
        home.close()


@given(
    st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace")), st.from_type(dict).map(str))
)
def test_any_lock_file_content_reads_as_a_holder(text: str) -> None:
    current = Holder.parse(text)  # what another process (or anything) left there never raises
    assert current.describe()


@given(st.integers(min_value=1, max_value=2**22), st.sampled_from(["run", "app", "edit"]))
def test_a_holders_record_reads_back(pid: int, what: str) -> None:
    current = Holder.parse(json.dumps({"pid": pid, "what": what, "since": "2026-12-06T03:00:00.000Z"}))
    assert current == Holder(pid, what, "2026-12-06T03:00:00.000Z")
    assert f"PID {pid}, since 2026-12-06T03:00:00.000Z" in current.describe()


@pytest.mark.parametrize("bad", [5, "", ["x"]])
def test_a_bad_capture_id_in_the_workspace_file_is_named(tmp_path: Path, bad: object) -> None:
    from eventdesk.core.errors import ConfigError
    from eventdesk.core.workspace import load_workspace

    path = tmp_path / "workspace.json"
    path.write_text(json.dumps({"schema_version": 1, "capture_id": bad}))
    with pytest.raises(ConfigError, match="field 'capture_id'"):
        load_workspace(path)
