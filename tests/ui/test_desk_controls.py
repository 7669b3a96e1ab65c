"""One pause state, Start all / Stop all only when they act, Send sample events only with a
webhook model, the demo from the menu, one export dialog, and a failed test from the tree's
menu that says why (issue 16). Everything real: the demo's webhook and built-in broker, a
CouchDB URL where nothing listens."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog
from pytestqt.qtbot import QtBot

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.export_dialog import ExportDialog
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import free_port
from tests.ui.conftest_desk import action, desk_fixture, open_demo_from_menu  # noqa: F401
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
)

pytestmark = pytest.mark.gui


def test_toolbar_pause_and_table_pause_are_one_state(qtbot: QtBot, desk: MainWindow) -> None:
    table_button = desk.table.pause_button
    toolbar = desk.act_pause
    toolbar.trigger()  # pause with the toolbar ...
    assert desk.table.model.paused and table_button.isChecked() and table_button.text() == "Resume"
    assert toolbar.isChecked() and toolbar.text() == "Resume"
    qtbot.mouseClick(table_button, Qt.MouseButton.LeftButton)  # ... resume with the table
    assert not desk.table.model.paused and not toolbar.isChecked() and toolbar.text() == "Pause"
    qtbot.mouseClick(table_button, Qt.MouseButton.LeftButton)  # pause with the table ...
    assert desk.table.model.paused and toolbar.isChecked()
    toolbar.trigger()  # ... resume with the toolbar (one press, not two)
    assert not desk.table.model.paused and not table_button.isChecked() and table_button.text() == "Pause"
    assert not toolbar.isChecked()


def test_start_and_stop_all_only_when_they_act(qtbot: QtBot, desk: MainWindow, home: Home) -> None:
    assert not desk.act_start_all.isEnabled() and not desk.act_stop_all.isEnabled()  # no model
    open_demo_from_menu(qtbot, desk)
    qtbot.waitUntil(lambda: not desk.act_start_all.isEnabled())  # everything runs
    assert desk.act_stop_all.isEnabled()
    desk.act_stop_all.trigger()
    qtbot.waitUntil(
        lambda: desk.runtime.state_of(f"model/{demo.MODEL}").state is State.STOPPED, timeout=10000
    )
    qtbot.waitUntil(lambda: not desk.act_stop_all.isEnabled(), timeout=10000)
    assert desk.act_start_all.isEnabled()
    # a second model, stopped, while the first runs: both are enabled
    home.add_model("orders", demo.DATASOURCE, {"path": "/hooks/orders"})
    desk.workspace_changed()
    desk.act_start_all.trigger()
    qtbot.waitUntil(lambda: desk.runtime.is_running("model", "orders"), timeout=10000)
    qtbot.waitUntil(lambda: not desk.act_start_all.isEnabled())
    desk.stop_model("orders")
    qtbot.waitUntil(lambda: desk.act_start_all.isEnabled(), timeout=10000)
    assert desk.act_stop_all.isEnabled()


def test_send_samples_only_with_a_webhook_model_and_demo_from_the_menu(
    qtbot: QtBot, desk: MainWindow, home: Home
) -> None:
    samples = desk.demo.act_send_samples
    button = desk.toolbar.widgetForAction(samples)
    assert not samples.isVisible() and not button.isVisible()
    home.add_datasource("couch", "couchdb", {"url": f"http://127.0.0.1:{free_port()}"})
    home.add_model("accounts-db", "couch", {"database": "accounts"})
    desk.workspace_changed()
    assert not samples.isVisible()  # a model, but no webhook one
    assert action(desk, "open_demo").isEnabled() and not desk.showing_empty_state
    open_demo_from_menu(qtbot, desk)  # the demo from the menu, with the workspace not empty
    assert samples.isVisible() and samples.isEnabled() and button.isVisible()
    samples.trigger()
    qtbot.waitUntil(lambda: desk.table.model.rowCount() >= desk.demo.sample_count, timeout=15000)


def ctrl_e_on_the_window(qtbot: QtBot, desk: MainWindow) -> None:
    """Press Ctrl+E as a user would, in the main window (its shortcut's context)."""
    desk.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is desk)
    qtbot.keyClick(desk.table.table, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)


def test_export_is_one_dialog(qtbot: QtBot, desk: MainWindow) -> None:
    def export_dialogs() -> list[QDialog]:
        return [d for d in desk.dialogs if isinstance(d, ExportDialog) and d.isVisible()]

    pressed: list[bool] = []
    desk.act_export.triggered.connect(lambda _checked=False: pressed.append(True))
    button = desk.toolbar.widgetForAction(desk.act_export)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # the toolbar's Export
    qtbot.waitUntil(lambda: len(export_dialogs()) == 1)
    (first,) = export_dialogs()
    ctrl_e_on_the_window(qtbot, desk)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # and the button again
    next(
        a for a in desk.menus.menus["File"].actions() if a.objectName() == "export"
    ).trigger()  # File ▸ Export…
    qtbot.wait(50)
    assert len(pressed) == 4  # each of them asked for the export dialog ...
    assert export_dialogs() == [first] and desk.export_events() is first  # ... and got the open one
    first.reject()
    qtbot.waitUntil(lambda: not export_dialogs())
    ctrl_e_on_the_window(qtbot, desk)  # a new one
    qtbot.waitUntil(lambda: len(export_dialogs()) == 1)
    assert export_dialogs()[0] is not first
    export_dialogs()[0].reject()


def test_a_failed_test_from_the_tree_says_why_in_view(qtbot: QtBot, desk: MainWindow, home: Home) -> None:
    port = free_port()  # nothing listens there
    home.add_datasource("couch", "couchdb", {"url": f"http://127.0.0.1:{port}"})
    desk.workspace_changed()
    menu = desk.tree.menu_for("datasource/couch")
    qtbot.addWidget(menu)
    next(a for a in menu.actions() if a.objectName() == "test").trigger()
    key = "test/datasource/couch"

    def banner_text() -> str:
        banners = [b for b in desk.notifications.banners if b.key == key]
        return banners[0].message.text() if banners and banners[0].level == "error" else ""

    qtbot.waitUntil(lambda: bool(banner_text()), timeout=20000)
    text = banner_text()
    # the reason in the banner's line, its field by label, not only behind "Details"
    assert text.startswith(
        f"datasource couch: test failed: URL: connection to http://127.0.0.1:{port} failed"
    )
    assert "refused" in text and "field '" not in text
