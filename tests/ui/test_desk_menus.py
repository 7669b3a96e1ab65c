"""The menu bar: every command in a menu, the Run ▸ Model submenu, View toggles, and Help's
shortcuts, documentation and About (issue 16, "Commands where people look for them")."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

import eventdesk
from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import free_port
from tests.ui.conftest_desk import action, desk_fixture, menu_entries, open_demo_from_menu  # noqa: F401
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
)

pytestmark = pytest.mark.gui


def test_the_menus_hold_every_command(desk: MainWindow) -> None:
    titles = [a.text() for a in desk.menuBar().actions()]
    assert titles == ["&File", "&Edit", "&View", "&Run", "&Help"]
    assert menu_entries(desk, "File") == [
        "new_workspace",
        "open_workspace",
        "open_demo",
        "open_recording",
        "export",
        "quit",
    ]
    keys = {
        "new_workspace": "Ctrl+N",
        "open_workspace": "Ctrl+Shift+O",
        "open_recording": "Ctrl+O",
        "export": "Ctrl+E",
        "quit": "Ctrl+Q",
        "start_all": "Ctrl+R",
        "stop_all": "Ctrl+Shift+R",
        "pause": "Ctrl+P",
        "focus_filter": "Ctrl+F",
        "shortcuts": "F1",
    }
    assert {name: action(desk, name).shortcut().toString() for name in keys} == keys
    assert menu_entries(desk, "Edit") == ["add_datasource", "add_model", "add_broker", "add_route"]
    view = menu_entries(desk, "View")
    assert view[:3] == ["show_tree", "show_rates", "show_detail"] and "pause" in view
    run_menu = desk.menus.menus["Run"].actions()
    assert [a.objectName() for a in run_menu[:2]] == ["start_all", "stop_all"]
    assert run_menu[2].menu() is desk.menus.models_menu
    assert "send_samples" in menu_entries(desk, "Run")
    assert menu_entries(desk, "Help") == ["shortcuts", "documentation", "about"]
    # the menus' entries are the toolbar's actions: one enabled/checked state
    assert desk.menus.menus["Run"].actions()[0] is desk.act_start_all


def in_menus(menu: QMenu) -> set[QAction]:
    found = set(menu.actions())
    for entry in menu.actions():
        if entry.menu() is not None:
            found |= in_menus(entry.menu())
    return found


def test_every_toolbar_and_table_command_is_in_a_menu(desk: MainWindow) -> None:
    menus: set[QAction] = set()
    for menu in desk.menus.menus.values():
        menus |= in_menus(menu)
    table = desk.table
    commands = [a for a in desk.toolbar.actions() if not a.isSeparator()] + [
        table.follow_action,
        table.newest_first_action,
        table.goto_action,
        table.clear_action,
    ]
    assert [a.objectName() or a.text() for a in commands if a not in menus] == []
    assert table.goto_action.shortcut().toString() == "Ctrl+G"


def test_view_toggles_hide_and_show_the_panes(desk: MainWindow, home: Home) -> None:
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    desk.workspace_changed()
    assert desk.detail.isVisible() and desk.rate_chart.isVisible()
    action(desk, "show_detail").trigger()
    assert not desk.detail.isVisible()
    action(desk, "show_rates").trigger()
    assert not desk.rate_chart.isVisible()
    action(desk, "show_detail").trigger()
    assert desk.detail.isVisible()
    toolbar = desk.menus.act_show_toolbar
    toolbar.trigger()
    assert not desk.toolbar.isVisible()


def test_run_model_submenu_starts_and_stops_one_model(qtbot: QtBot, desk: MainWindow) -> None:
    assert not desk.menus.models_menu.isEnabled()  # no model yet
    open_demo_from_menu(qtbot, desk)
    desk.menus.rebuild_models_menu()
    sub = desk.menus.models_menu.findChild(QMenu, f"menu_model_{demo.MODEL}")
    assert sub is not None and "running" in sub.title()
    start, stop = (desk.findChild(QAction, f"{verb}_model_{demo.MODEL}") for verb in ("start", "stop"))
    assert start is not None and stop is not None
    assert not start.isEnabled() and stop.isEnabled()
    stop.trigger()
    qtbot.waitUntil(
        lambda: desk.runtime.state_of(f"model/{demo.MODEL}").state is State.STOPPED, timeout=10000
    )
    desk.menus.rebuild_models_menu()
    start = desk.findChild(QAction, f"start_model_{demo.MODEL}")
    assert start is not None and start.isEnabled()
    start.trigger()
    qtbot.waitUntil(
        lambda: desk.runtime.state_of(f"model/{demo.MODEL}").state is State.RUNNING, timeout=10000
    )


def test_shortcuts_dialog_lists_every_shortcut(desk: MainWindow) -> None:
    dialog = desk.menus.show_shortcuts()
    with_keys = {
        (a.text().replace("&", "").rstrip("…"), a.shortcut().toString())
        for a in desk.findChildren(QAction)
        if not a.shortcut().isEmpty()
    }
    shown = {
        (dialog.table.item(r, 0).text(), dialog.table.item(r, 1).text())
        for r in range(dialog.table.rowCount())
    }
    assert with_keys and shown == with_keys
    for expected in [
        ("Quit", "Ctrl+Q"),
        ("Export", "Ctrl+E"),
        ("Start all", "Ctrl+R"),
        ("Keyboard shortcuts", "F1"),
    ]:
        assert expected in shown
    assert desk.menus.show_shortcuts() is dialog  # asked again: the same dialog


def test_about_names_the_versions(desk: MainWindow) -> None:
    dialog = desk.menus.show_about()
    rows = dict(dialog.rows)
    assert rows["EventDesk"] == eventdesk.__version__
    assert (
        rows["PySide6"]
        and rows["Qt"]
        and rows["Python"].startswith(".".join(map(str, __import__("sys").version_info[:2])))
    )
    assert rows["paho-mqtt"].startswith("2.")
    assert dialog.table.rowCount() == len(dialog.rows)


class _Opened(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_documentation_opens_the_readme_of_the_checkout(desk: MainWindow) -> None:
    opened = _Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")  # Qt's hook: no desktop viewer started
    try:
        assert desk.menus.open_documentation()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    readme = Path(eventdesk.__file__).resolve().parent.parent / "README.md"
    assert [u.toLocalFile() for u in opened.urls] == [str(readme)]


def test_quit_closes_the_window(qtbot: QtBot, desk: MainWindow) -> None:
    assert desk.isVisible()
    action(desk, "quit").trigger()
    qtbot.waitUntil(lambda: not desk.isVisible())
    assert QApplication.instance() is not None
