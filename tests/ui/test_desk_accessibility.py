"""The table, the tree and the detail pane have accessible names a screen reader announces
(issue 16, "Keyboard"), checked through Qt's accessibility interface as well as the widgets."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import QWidget

from eventdesk.ui.main_window import MainWindow
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
