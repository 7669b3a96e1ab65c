"""One runner per home, honest status after a crash, a lost or broken capture refused (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.harness import RunProcess, eventdesk, home_args, ok, put_doc, setup_pipeline
from tests.cli.test_run import wait_running
from tests.peers.servers import CouchServer, MqttBroker


@pytest.fixture
def home(tmp_path: Path, couch: CouchServer, mqtt_broker: MqttBroker, unique_topic: str) -> Path:
    """A home with the pipeline couch -> accounts -> route out -> mosq, never run."""
    path = tmp_path / "home"
    setup_pipeline(path, couch.url, couch.create_database(), mqtt_broker, topic=unique_topic)
    return path


def assert_capture_refused(h: tuple[str, ...], capture: Path, *phrases: str) -> None:
    """``run``, ``status`` and ``events`` refuse the capture (exit 2), naming it and saying ``phrases``."""
    for command in ("run", "status", "events"):
        refused = eventdesk(*h, command, timeout=30)
        assert refused.returncode == 2, (command, refused.stderr)
        assert f"capture '{capture}'" in refused.stderr
        for phrase in phrases:
            assert phrase in refused.stderr, (command, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_a_second_run_and_edits_are_refused_while_a_runner_holds_the_home(home: Path) -> None:
    h = home_args(home)
    run = RunProcess(h)
    try:
        wait_running(run)
        second = eventdesk(*h, "run", timeout=30)
        assert second.returncode == 7, second.stderr
        assert f"`eventdesk run` (PID {run.proc.pid}, since " in second.stderr
        assert "publish every event twice" in second.stderr
        assert "Traceback" not in second.stderr
        edit = eventdesk(*h, "route", "disable", "out")
        assert edit.returncode == 7
        assert f"PID {run.proc.pid}" in edit.stderr and "does not reload the workspace" in edit.stderr
        assert json.loads(ok(*h, "list", "--json"))["routes"]["out"]["settings"]["enabled"] is True
        assert json.loads(ok(*h, "status", "--json"))["models"]["accounts"]["state"] == "running"
    finally:
        assert run.stop() == 0, run.output()
    ok(*h, "route", "disable", "out")  # the home is free again


def test_status_shows_a_killed_runners_objects_as_stopped(home: Path) -> None:
    h = home_args(home)
    run = RunProcess(h)
    try:
        wait_running(run)
        live = json.loads(ok(*h, "status", "--json"))
        assert live["models"]["accounts"]["state"] == "running"
        assert live["routes"]["out"]["state"] == "running"
    finally:
        run.kill()
    pid = run.proc.pid
    dead = json.loads(ok(*h, "status", "--json"))
    for obj in (dead["models"]["accounts"], dead["routes"]["out"], dead["brokers"]["mosq"]):
        assert obj["state"] == "stopped", dead
        assert obj["detail"].startswith(f"runner PID {pid} is not running; last seen "), obj
    text = ok(*h, "status")
    assert f"  accounts: stopped (runner PID {pid} is not running; last seen " in text
    assert f"  out: stopped (runner PID {pid} is not running; last seen " in text


def test_a_deleted_capture_is_refused_and_a_fresh_one_republishes_nothing(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber,  # type: ignore[no-untyped-def]
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    h = home_args(home)
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}", since="0")
    sub = subscriber(unique_topic + "/#")
    put_doc(couch, db, "k1", {"v": 1})
    run = RunProcess(h)
    try:
        wait_running(run)
        sub.wait_for(1, 15)
    finally:
        assert run.stop() == 0, run.output()
    capture = home / "capture.sqlite3"
    for path in home.glob("capture.sqlite3*"):
        path.unlink()
    assert_capture_refused(h, capture, "is missing", "eventdesk run --fresh-capture")
    assert not capture.exists()  # not silently recreated
    fresh = RunProcess(h, run_args=("--fresh-capture",))
    try:
        fresh.wait_line(f"started a fresh capture at {capture}", 30)
        wait_running(fresh)
        put_doc(couch, db, "k2", {"v": 2})
        sub.wait_until(lambda messages: any(m.topic.endswith("/k2") for m in messages), 15)
    finally:
        assert fresh.stop() == 0, fresh.output()
    assert [m.topic.rsplit("/", 1)[1] for m in sub.messages] == ["k1", "k2"]  # k1 not again
    again = RunProcess(h)  # the fresh capture is the workspace's own now
    try:
        wait_running(again)
    finally:
        assert again.stop() == 0, again.output()


def test_a_corrupt_capture_gives_a_clear_message_and_no_traceback(home: Path) -> None:
    h = home_args(home)
    capture = home / "capture.sqlite3"
    capture.write_bytes(b"not a database, whatever it was" * 100)
    assert_capture_refused(h, capture, "not a readable capture database", "--fresh-capture", ".recover")
    fresh = RunProcess(h, run_args=("--fresh-capture",))
    try:
        line = fresh.lines[fresh.wait_line("started a fresh capture", 30)]
        wait_running(fresh)
    finally:
        assert fresh.stop() == 0, fresh.output()
    kept = Path(line.rsplit("kept as ", 1)[1])
    assert kept.read_bytes() == b"not a database, whatever it was" * 100  # moved aside, not lost


def test_the_home_and_its_files_are_private(home: Path) -> None:
    h = home_args(home)
    run = RunProcess(h)
    try:
        wait_running(run)
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in home.iterdir()}
    finally:
        assert run.stop() == 0, run.output()
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert {"capture.sqlite3", "capture.sqlite3-wal", "workspace.json", "eventdesk.lock"} <= set(modes)
    assert modes == dict.fromkeys(modes, "0o600")
