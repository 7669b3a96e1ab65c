"""The "Left on the server…" dialog of a datasource (its menu in the workspace tree): what
EventDesk made on the datasource's server -- replication slots and publications, durable
consumers -- with what each holds, whether a session reads it, and the model following it, as
``eventdesk datasource leftovers`` lists them; Drop… drops one that nobody follows, after asking.

The server is asked in an owned task (core/server_leftovers.py: the blocking parts off the GUI
thread) behind a busy indicator; the dialog can be closed while it asks (the task is cancelled)
and shows a failure in its own words, naming the datasource and field.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core import server_leftovers
from eventdesk.core.contracts import LeftOnServer
from eventdesk.core.home import Home
from eventdesk.ui.async_tasks import TaskSlots, ask_yes
from eventdesk.ui.object_dialog import describe_error

COLUMNS = ("Object", "Kind of object", "Held", "Active", "Followed by")


class LeftoversDialog(QDialog):
    """``LeftoversDialog(home, datasource)``: lists on :meth:`showEvent`, again on Refresh."""

    def __init__(self, home: Home, datasource: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.datasource = datasource
        self.entries: list[LeftOnServer] = []
        self.tasks = TaskSlots(on_error=lambda _slot, exc: self._failed(exc))
        self.confirm_box: QMessageBox | None = None
        self.setWindowTitle(f"Left on the server — datasource {datasource}")
        self.resize(860, 380)

        layout = QVBoxLayout(self)
        intro = QLabel(
            f"What EventDesk made on the server of datasource {datasource!r} for its models. One that no model "
            "follows (a model removed without dropping it, a table edited, a workspace deleted) "
            "keeps holding the server's disk until it is dropped."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        status_row = QHBoxLayout()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setTextVisible(False)
        self.status = QLabel()
        self.status.setObjectName("leftovers_status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_row.addWidget(self.busy)
        status_row.addWidget(self.status, 1)
        layout.addLayout(status_row)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.refresh_button = buttons.addButton("Refresh", QDialogButtonBox.ButtonRole.ActionRole)
        self.drop_button = buttons.addButton("Drop…", QDialogButtonBox.ButtonRole.ActionRole)
        self.drop_button.setToolTip("Drop the selected object on the server (only one no model follows)")
        self.close_button: QPushButton = buttons.button(QDialogButtonBox.StandardButton.Close)
        self.refresh_button.clicked.connect(self.refresh)
        self.drop_button.clicked.connect(lambda: self.tasks.start("drop", self._drop_selected()))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.finished.connect(self._stop)
        self._set_busy(False)

    def _stop(self, _result: int = 0) -> None:
        """Closed: whatever it still asks the server is cancelled."""
        self.tasks.cancel("list")
        self.tasks.cancel("drop")

    # -- reading -------------------------------------------------------------------------------
    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        if not self.entries and not self.tasks.running("list"):
            self.refresh()

    def refresh(self) -> None:
        self._set_busy(True, "Asking the server…")
        self.tasks.start("list", self._list())

    @property
    def loading(self) -> bool:
        return self.tasks.running("list") or self.tasks.running("drop")

    async def _list(self) -> bool:
        """Ask the server and show what it says; False (the failure shown) if it could not."""
        try:
            entries = await server_leftovers.list_left(self.home.workspace, self.datasource)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            return False
        self._show(entries)
        unfollowed = sum(1 for e in entries if e.droppable)
        self._set_busy(
            False,
            f"{len(entries)} found, {unfollowed} followed by no model"
            if entries
            else "EventDesk left nothing here",
        )
        return True

    def _show(self, entries: list[LeftOnServer]) -> None:
        self.entries = entries
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            active = "?" if entry.active is None else ("yes" if entry.active else "no")
            cells = (entry.name, entry.what, server_leftovers.held_text(entry), active)
            for col, text in enumerate((*cells, server_leftovers.follower_text(entry))):
                item = QTableWidgetItem(text)
                if col == 2 and entry.held is not None:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == 4 and entry.droppable:
                    item.setForeground(Qt.GlobalColor.darkRed)  # holds the server's disk for nothing
                elif entry.other_workspace:
                    item.setForeground(Qt.GlobalColor.darkGray)  # not this workspace's to drop
                self.table.setItem(row, col, item)
        self._selection_changed()

    def _failed(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.status.setStyleSheet("color: #c62828;")
        self.status.setText(f"✘ {describe_error(exc)}")

    def _set_busy(self, busy: bool, text: str | None = None) -> None:
        self.busy.setVisible(busy)
        self.refresh_button.setEnabled(not busy)
        if text is not None:
            self.status.setStyleSheet("")
            self.status.setText(text)
        self._selection_changed(busy)

    # -- dropping ------------------------------------------------------------------------------
    def selected(self) -> LeftOnServer | None:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return self.entries[rows.pop()] if len(rows) == 1 and self.entries else None

    def _selection_changed(self, busy: bool | None = None) -> None:
        entry = self.selected()
        busy = self.loading if busy is None else busy
        self.drop_button.setEnabled(not busy and entry is not None and entry.droppable)

    async def _drop_selected(self) -> None:
        entry = self.selected()
        if entry is None or not entry.droppable:
            return
        if not await self._confirm(
            f"Drop {entry.name} on the server?\n\n"
            f"It is a {entry.what} that no model of this workspace follows; it holds "
            f"{server_leftovers.held_text(entry)}. Dropping it frees that on the server. A model "
            "that would follow it again starts anew."
        ):
            return
        self._set_busy(True, f"Dropping {entry.name}…")
        try:
            summary = await server_leftovers.drop_left(self.home.workspace, self.datasource, entry.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            return
        if await self._list():  # what is left now; the outcome stays in view
            self.status.setStyleSheet("color: #2e7d32;")
            self.status.setText(f"✔ {summary}")
        else:
            self.status.setText(f"✔ {summary}, but then {self.status.text()}")

    async def _confirm(self, text: str) -> bool:
        def shown(box: QMessageBox | None) -> None:
            self.confirm_box = box

        return await ask_yes(self, "Drop on the server", text, shown, QMessageBox.Icon.Warning)
