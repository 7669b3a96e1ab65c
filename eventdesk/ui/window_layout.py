"""The main window's layout kept between runs: its geometry and toolbar state, the splitters'
sizes and the tree's and table's column widths, in the app's QSettings."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QHeaderView, QMainWindow, QSplitter

SETTINGS_GROUP = "main_window"


def app_settings() -> QSettings:
    """The app's QSettings in the default format (tests point it at a temporary path)."""
    return QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope, "EventDesk", "EventDesk")


def save_layout(window: QMainWindow, splits: dict[str, QSplitter], headers: dict[str, QHeaderView]) -> None:
    s = app_settings()
    s.beginGroup(SETTINGS_GROUP)
    s.setValue("geometry", window.saveGeometry())
    s.setValue("state", window.saveState())
    for name, split in splits.items():
        s.setValue(name, split.saveState())
    for name, header in headers.items():
        s.setValue(name, header.saveState())
    s.endGroup()
    s.sync()


def restore_layout(
    window: QMainWindow, splits: dict[str, QSplitter], headers: dict[str, QHeaderView]
) -> None:
    """Restore what :func:`save_layout` kept; a missing or empty value leaves its default."""
    s = app_settings()
    s.beginGroup(SETTINGS_GROUP)

    def value(name: str) -> QByteArray | None:
        v = s.value(name)
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    if (v := value("geometry")) is not None:
        window.restoreGeometry(v)
    if (v := value("state")) is not None:
        window.restoreState(v)
    for name, split in splits.items():
        if (v := value(name)) is not None:
            split.restoreState(v)
    for name, header in headers.items():
        if (v := value(name)) is not None:
            header.restoreState(v)
    s.endGroup()
