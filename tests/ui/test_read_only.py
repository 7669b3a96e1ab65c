"""The app on a home that `eventdesk run` holds opens read only and follows it; an unusable
capture is refused with the choice of a fresh one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.ui.home_opening import FRESH_CAPTURE_BUTTON, open_home
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.workspace_tree import STATE_ROLE
from tests.cli.harness import RunProcess, home_args, put_doc, setup_pipeline
from tests.cli.test_run import wait_running
from tests.peers.servers import CouchServer, MqttBroker
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)

SCREENSHOT_ENV = "EVENTDESK_READ_ONLY_SCREENSHOT"  # a PNG path: save the read-only window there


@pytest.fixture
def runner(
    tmp_path: Path, couch: CouchServer, mqtt_broker: MqttBroker, unique_topic: str
) -> Iterator[tuple[Path, str, RunProcess]]:
    """`eventdesk run` holding a home: (home, database, process)."""
    home = tmp_path / "home"
    db = couch.create_database()
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}")
    process = RunProcess(home_args(home))
    try:
        wait_running(process)
        yield home, db, process
    finally:
        assert process.stop() == 0, process.output()


@pytest.mark.usefixtures("isolated_qsettings")
def test_the_app_on_a_home_a_runner_holds_opens_read_only_and_follows_it(
    qtbot: QtBot,
    qloop: asyncio.AbstractEventLoop,
    couch: CouchServer,
    runner: tuple[Path, str, RunProcess],
) -> None:
    home_dir, db, process = runner
    put_doc(couch, db, "before", {"v": 1})
    workspace_before = (home_dir / "workspace.json").read_bytes()
    home = open_home(str(home_dir))
    assert home is not None and home.read_only is not None and home.lock is None
    window = MainWindow(home)
    window.show()
    try:
        [banner] = [b for b in window.notifications.banners if b.key == "read-only"]
        assert f"`eventdesk run` (PID {process.proc.pid}, since " in banner.message.text()
        assert window.windowTitle() == "EventDesk (read only)"
        for action in (
            window.act_add_datasource,
            window.act_add_model,
            window.act_add_broker,
            window.act_add_route,
            window.act_start_all,
            window.act_stop_all,
        ):
            assert not action.isEnabled(), action.objectName()
        window.do_action("stop", "model", "accounts")
        window.do_action("edit", "route", "out")
        assert not window.tasks.running("model/accounts") and not window.dialogs

        def keys() -> list[str]:
            model = window.table.model
            return [str(model.event_at(row).envelope["key"]) for row in range(model.rowCount())]

        qtbot.waitUntil(lambda: "before" in keys(), timeout=15000)  # what the runner captures
        put_doc(couch, db, "after", {"v": 2})
        qtbot.waitUntil(lambda: keys()[-1:] == ["after"], timeout=15000)
        state = window.tree.tree_model.item_of("model/accounts")
        assert state is not None
        qtbot.waitUntil(lambda: state.data(STATE_ROLE) == "running", timeout=5000)  # the runner's states
        if target := os.environ.get(SCREENSHOT_ENV):
            window.grab().save(target)
        assert (home_dir / "workspace.json").read_bytes() == workspace_before  # nothing saved
        assert process.proc.poll() is None  # the runner went on, untouched
        assert process.stop() == 0, process.output()
        qtbot.waitUntil(lambda: "has stopped" in banner.message.text(), timeout=5000)
    finally:
        run(qtbot, window.shutdown())
        window.close()
        window.deleteLater()
        home.close()


def choose(button_text: str):  # type: ignore[no-untyped-def]
    """An ``ask`` for :func:`open_home` that clicks the button with ``button_text``."""

    def ask(box: QMessageBox) -> None:
        asked.append(box.text())
        [button] = [b for b in box.buttons() if b.text() == button_text]
        button.click()

    asked: list[str] = []
    ask.asked = asked  # type: ignore[attr-defined]
    return ask


def test_the_app_offers_a_fresh_capture_for_a_missing_one(qtbot: QtBot, tmp_path: Path) -> None:
    root = str(tmp_path / "home")
    home = Home.open(root, lock="run")
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "couch", {"database": "accounts"})
    assert home.capture.capture_id is not None
    home.close()
    for path in (tmp_path / "home").glob("capture.sqlite3*"):
        path.unlink()
    quit_ = choose("Quit")
    assert open_home(root, ask=quit_) is None
    assert "is missing" in quit_.asked[0] and "--fresh-capture" in quit_.asked[0]
    assert not (tmp_path / "home" / "capture.sqlite3").exists()
    fresh = choose(FRESH_CAPTURE_BUTTON)
    opened = open_home(root, ask=fresh)
    assert opened is not None
    try:
        assert opened.capture_notice is not None and opened.capture_notice.startswith(
            "started a fresh capture"
        )
        assert opened.workspace.capture_id == opened.capture.capture_id
    finally:
        opened.close()
