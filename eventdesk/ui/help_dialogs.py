"""The Help menu's dialogs: every keyboard shortcut, and About with the versions in use.

Also where the documentation is: the README of the checkout EventDesk runs from (docs/ beside
it). Both dialogs are plain, non-modal and read only.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import PySide6
from PySide6.QtCore import QUrl, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import eventdesk

DISTRIBUTIONS = ("paho-mqtt", "aiohttp", "ibmcloudant", "psycopg2-binary", "amqtt", "qasync")


def documentation_url() -> QUrl | None:
    """The README of the checkout EventDesk runs from (None when installed without one)."""
    readme = Path(eventdesk.__file__).resolve().parent.parent / "README.md"
    return QUrl.fromLocalFile(str(readme)) if readme.is_file() else None


def versions() -> list[tuple[str, str]]:
    """(name, version) of EventDesk, Python, Qt, PySide6 and the libraries it talks through."""
    rows = [
        ("EventDesk", eventdesk.__version__),
        ("Python", f"{platform.python_version()} ({sys.implementation.name})"),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
    ]
    for dist in DISTRIBUTIONS:
        try:
            rows.append((dist, version(dist)))
        except PackageNotFoundError:
            continue  # an optional one that is not installed
    rows.append(("Platform", platform.platform(terse=True)))
    return rows


def shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """(command, keys) for every action with a shortcut, sorted by command, each once."""
    rows: dict[tuple[str, str], None] = {}
    for action in actions:
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys:
            rows[(action.text().replace("&", "").rstrip("…"), keys)] = None
    return sorted(rows)


def _table(rows: list[tuple[str, str]], headers: tuple[str, str], name: str) -> QTableWidget:
    table = QTableWidget(len(rows), 2)
    table.setObjectName(name)
    table.setAccessibleName(name.replace("_", " "))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
    for row, (left, right) in enumerate(rows):
        table.setItem(row, 0, QTableWidgetItem(left))
        table.setItem(row, 1, QTableWidgetItem(right))
    return table


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard shortcuts: a table of every command that has one."""

    def __init__(self, actions: Iterable[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.rows = shortcut_rows(actions)
        self.table = _table(self.rows, ("Command", "Keys"), "shortcuts_table")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(420, 460)


class AboutDialog(QDialog):
    """Help ▸ About: what EventDesk is and the versions of everything it runs on."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About EventDesk")
        self.rows = versions()
        intro = QLabel(
            f"<b>EventDesk {eventdesk.__version__}</b><br>Follow changes from CouchDB, Cloudant, "
            "PostgreSQL and webhooks, keep them in a capture, and republish them to MQTT."
        )
        intro.setWordWrap(True)
        self.table = _table(self.rows, ("Component", "Version"), "versions_table")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(440, 380)
