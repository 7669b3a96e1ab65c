"""The table, the tree and the detail pane have accessible names a screen reader announces
(issue 16, "Keyboard"), checked through Qt's accessibility interface as well as the widgets;
Tab goes from the tree to the filter, the table and the detail pane, each stop named."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import free_port
from tests.ui.conftest_desk import desk_fixture  # noqa: F401 - fixture
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
)

pytestmark = pytest.mark.gui


def announced(widget: QWidget) -> str:
    """What an assistive technology reads for ``widget`` (Qt's accessible interface)."""
    interface = QAccessible.queryAccessibleInterface(widget)
    assert interface is not None
    return interface.text(QAccessible.Text.Name)


@pytest.mark.parametrize(
    ("part", "name"),
    [("table", "Events"), ("tree", "Workspace"), ("detail", "Event detail")],
)
def test_panes_have_accessible_names(desk: MainWindow, part: str, name: str) -> None:
    widget = {"table": desk.table.table, "tree": desk.tree, "detail": desk.detail}[part]
    assert widget.accessibleName() == name
    assert widget.accessibleDescription()
    assert announced(widget) == name


def tab_stops(start: QWidget) -> list[QWidget]:
    """The widgets Tab visits from ``start``, in order, once round (as Qt's focusNextChild)."""
    stops, widget = [], start
    while True:
        if widget.focusPolicy() & Qt.FocusPolicy.TabFocus and widget.isVisible() and widget.isEnabled():
            stops.append(widget)
        widget = widget.nextInFocusChain()
        if widget is start:
            return stops


def test_tab_goes_tree_filter_table_detail_and_each_stop_is_named(
    qtbot: QtBot, desk: MainWindow, home: Home
) -> None:
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    desk.workspace_changed()
    stops = tab_stops(desk.tree)
    bar = desk.filter_bar
    landmarks = [desk.tree, bar.text_edit, bar.expression_edit, desk.table.table, desk.detail.tree]
    assert [stops.index(w) for w in landmarks] == sorted(stops.index(w) for w in landmarks)
    for widget in (bar.text_edit, bar.model_combo, bar.op_combo, bar.expression_edit):
        assert announced(widget)  # a name, not only a placeholder
    desk.activateWindow()
    qtbot.waitUntil(lambda: desk.isActiveWindow())
    desk.tree.setFocus()
    qtbot.keyClick(desk.tree, Qt.Key.Key_Tab)  # the keyboard does what the chain says
    assert desk.focusWidget() is stops[1] is bar.text_edit
    desk.act_focus_filter.trigger()  # Ctrl+F
    assert desk.focusWidget() is bar.text_edit
