"""Quarantine in the app: counts on the route and in the status bar, a table filter that shows
exactly the quarantined events, and the route menu's retry and drop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from eventdesk.core.capture import QUARANTINE_RETRY
from eventdesk.core.home import Home
from eventdesk.core.scope import EventScope, Selection
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import free_port
from tests.ui.conftest import make_event
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)

pytestmark = pytest.mark.gui


@pytest.fixture
def window(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home
) -> Iterator[MainWindow]:
    """A window on a model with 20 captured events, two of which route ``out`` set aside."""
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1"})  # never started here
    home.add_route("out", "accounts", "mosq", {"topic": "t/{key}", "enabled": False})
    stored = home.capture.append(
        "accounts", [make_event("accounts", f"k{i}", i) for i in range(20)], "20-seq"
    )
    home.capture.set_route_position("out", stored[-1].pos)
    home.capture.quarantine_add("out", stored[4].pos, "topic", "the topic is longer than 65,535 bytes")
    home.capture.quarantine_add("out", stored[9].pos, "payload", "over the broker's Maximum Packet Size")
    w = MainWindow(home)
    w.show()
    qtbot.waitUntil(lambda: not w.table.model.loading, timeout=5000)
    yield w
    run(qtbot, w.shutdown())
    w.close()
    w.deleteLater()


def shown_keys(window: MainWindow) -> list[str]:
    model = window.table.model
    return [model.event_at(row).envelope["key"] for row in range(model.rowCount())]


def test_quarantine_counts_show_on_the_route_and_in_the_status_bar(qtbot: QtBot, window: MainWindow) -> None:
    window.tick()
    tree = window.tree.tree_model
    qtbot.waitUntil(lambda: tree.quarantined.get("out") == 2, timeout=5000)
    assert "quarantined 2" in tree.status_text("route/out")
    qtbot.waitUntil(lambda: window.status.quarantine.text() == "Quarantined: 2", timeout=5000)
    assert [label for _, label, enabled in window.tree.actions_for("route/out") if enabled][1:4] == [
        "Show quarantined events (2)",
        "Retry quarantined events",
        "Drop quarantined events…",
    ]
    shot = Path(window.home.paths.data_dir) / "quarantine.png"
    assert window.grab().save(str(shot))


def test_the_status_bar_button_filters_the_table_to_the_quarantined_events(
    qtbot: QtBot, window: MainWindow
) -> None:
    assert len(shown_keys(window)) == 20
    window.tick()
    qtbot.waitUntil(lambda: window.total_quarantined == 2, timeout=5000)
    window.status.quarantine.click()
    qtbot.waitUntil(lambda: shown_keys(window) == ["k4", "k9"], timeout=5000)
    assert window.filter_bar.current_filter().quarantined
    # What the table shows is what an export of "what the table shows" takes.
    scope = EventScope.from_filter(window.table.model.event_filter)
    assert scope.describe() == "quarantined"
    selection = Selection(window.home.capture, scope)
    assert selection.total() == 2
    assert [pos for pos, _, _ in selection] == [window.table.model.event_at(r).pos for r in range(2)]
    window.filter_bar.set_quarantined(False)
    qtbot.waitUntil(lambda: len(shown_keys(window)) == 20, timeout=5000)


def test_retry_and_drop_from_the_route_menu(qtbot: QtBot, window: MainWindow) -> None:
    capture = window.home.capture
    window.do_action("retry-quarantined", "route", "out")
    qtbot.waitUntil(
        lambda: {e.state for e in capture.quarantine_entries("out")} == {QUARANTINE_RETRY}, timeout=5000
    )

    window.do_action("drop-quarantined", "route", "out")
    qtbot.waitUntil(lambda: window.confirm_box is not None, timeout=5000)
    assert window.confirm_box is not None
    assert "Drop the 2 event(s) route 'out' holds in quarantine?" in window.confirm_box.text()
    window.confirm_box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: capture.quarantine_entries("out") == [], timeout=5000)
    qtbot.waitUntil(lambda: window.tree.tree_model.quarantined.get("out") == 0, timeout=5000)
    assert capture.count("accounts") == 20  # the events themselves stay in the capture
