"""The live event table's view: Follow latest, Pause, Clear, Go to time, sort by received time,
and the count of what the filter matches (its model: eventdesk/ui/event_table_model.py).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.capture import CapturedEvent
from eventdesk.ui.event_rows import (
    COL_KEY,
    COL_OP,
    COL_RECEIVED,
    COL_REV,
    COL_SUMMARY,
    COLUMNS,
    DEFAULT_WIDTHS,
    EventRole,
    summarize,
)
from eventdesk.ui.event_table_model import EventTableModel
from eventdesk.ui.go_to_time import GoToTimeDialog

__all__ = [
    "COLUMNS",
    "COL_KEY",
    "COL_OP",
    "COL_REV",
    "COL_SUMMARY",
    "EventRole",
    "EventTableModel",
    "EventTableView",
    "summarize",
]


class EventTableView(QWidget):
    """The table with Follow latest, Pause and Clear, and a one-line count of what matches."""

    selectedEvent = Signal(object)
    pausedChanged = Signal(bool)  # the window's Pause action follows the table's button

    def __init__(self, model: EventTableModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model if model is not None else EventTableModel(self)
        self._programmatic = 0

        self.follow_action = QAction("Follow latest", self)
        self.follow_action.setCheckable(True)
        self.follow_action.setChecked(True)
        self.follow_action.setToolTip(
            "Keep the newest event in view (scroll up to stop, to the bottom to resume)"
        )
        self.follow_action.toggled.connect(self._on_follow_toggled)
        self.follow_button = QToolButton(self)
        self.follow_button.setDefaultAction(self.follow_action)
        self.follow_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)

        self.pause_button = QPushButton("Pause", self)
        self.pause_button.setObjectName("table_pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Stop inserting arriving events; resume shows the latest")
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.setToolTip("Empty the table (the capture keeps everything; later events are shown)")
        self.clear_action = QAction("Clear table", self)  # the button's command, for the View menu
        self.clear_action.setObjectName("clear_table")
        self.clear_action.setToolTip(self.clear_button.toolTip())
        self.clear_action.triggered.connect(lambda _checked=False: self.model.clear())
        self.clear_button.clicked.connect(self.clear_action.trigger)
        self.goto_action = QAction("Go to time…", self)
        self.goto_action.setObjectName("go_to_time")
        self.goto_action.setShortcut(QKeySequence("Ctrl+G"))
        self.goto_action.setToolTip("Show the first event received at or after a time (Ctrl+G)")
        self.goto_action.triggered.connect(lambda _checked=False: self.ask_time())
        self.addAction(self.goto_action)  # Ctrl+G also where no menu lists it (a recording's window)
        self.newest_first_action = QAction("Newest first", self)
        self.newest_first_action.setObjectName("newest_first")
        self.newest_first_action.setCheckable(True)
        self.newest_first_action.setToolTip("Sort by received time, newest at the top")
        self.newest_first_action.toggled.connect(self.set_newest_first)
        self.goto_dialog: GoToTimeDialog | None = None
        self.stats_label = QLabel(self)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long count ("counting… 123,456 so far") must not widen the window: it is cut instead
        self.stats_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.stats_label.setMinimumWidth(80)
        self.stats_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.table = QTableView(self)
        self.table.setObjectName("event_table")
        self.table.setAccessibleName("Events")
        self.table.setAccessibleDescription(
            "Every captured event the filter matches, by received time: received, datasource, model,"
            " op, key, revision, summary"
        )
        self.table.setModel(self.model)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setCornerButtonEnabled(False)
        vheader = self.table.verticalHeader()
        vheader.setVisible(False)
        vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform row heights
        vheader.setDefaultSectionSize(self.fontMetrics().height() + 6)
        hheader = self.table.horizontalHeader()
        hheader.setStretchLastSection(True)
        hheader.setHighlightSections(False)
        hheader.setSortIndicatorShown(True)
        hheader.setSectionsClickable(True)
        hheader.setSortIndicator(COL_RECEIVED, Qt.SortOrder.AscendingOrder)
        hheader.sortIndicatorChanged.connect(self._on_sort_indicator)
        for col, width in enumerate(DEFAULT_WIDTHS):
            self.table.setColumnWidth(col, width)
        # older events carry their date: room for "2026-11-01 08:06:52.350" (a saved width wins)
        self.table.setColumnWidth(
            COL_RECEIVED, self.fontMetrics().horizontalAdvance("2026-11-01 00:00:00.000") + 16
        )

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.follow_button)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.clear_button)
        bar.addWidget(self.stats_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table)

        self.table.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.model.rowsInserted.connect(self._on_rows_inserted)
        self.model.statsChanged.connect(self._update_stats)
        self.model.modelReset.connect(self._update_stats)
        self._update_stats()

    # -- public ------------------------------------------------------------------------------------
    @property
    def following(self) -> bool:
        return self.follow_action.isChecked()

    def set_paused(self, paused: bool) -> None:
        self.pause_button.setChecked(paused)

    def selected(self) -> CapturedEvent | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.event_at(rows[0].row()) if rows else None

    def stats_text(self) -> str:
        """``N events`` (no filter) or ``N of M match``; ``counting…`` while the capture is read."""
        m = self.model
        if m.loading:
            text = f"counting… {m.rowCount():,} so far ({m.progress:.0%})"
        elif m.error:
            text = f"{m.rowCount():,} shown; reading the capture failed: {m.error}"
        elif m.event_filter.is_empty:
            text = f"{m.rowCount():,} events"
        else:
            text = f"{m.rowCount():,} of {m.total:,} match"
        if m.paused or m.arrived_while_paused:
            text += f" · {m.arrived_while_paused:,} arrived while paused"
        return text

    def go_to_row(self, row: int) -> None:
        """Show ``row`` at the top and select it (following stops: the user is looking back)."""
        if not 0 <= row < self.model.rowCount():
            return
        self.follow_action.setChecked(False)
        index = self.model.index(row, 0)
        self._programmatic += 1
        try:
            self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtTop)
        finally:
            self._programmatic -= 1
        self.table.selectRow(row)

    def go_to_time(self, received_at: str) -> int | None:
        """Go to the first event received at or after ``received_at`` (ISO 8601 UTC); its row."""
        row = self.model.row_at_time(received_at)
        if row is not None:
            self.go_to_row(row)
        return row

    def ask_time(self) -> None:
        """Open the Go to time dialog (one at a time), starting at the selected event's time."""
        if self.goto_dialog is not None:
            self.goto_dialog.raise_()
            return
        chosen = self.selected()
        start = None
        if chosen is not None:
            with contextlib.suppress(TypeError, ValueError):
                start = datetime.fromisoformat(str(chosen.envelope.get("received_at")))
        dialog = self.goto_dialog = GoToTimeDialog(start, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.go_to_time(dialog.received_at()))
        dialog.finished.connect(lambda _result: setattr(self, "goto_dialog", None))
        dialog.open()

    def set_newest_first(self, newest_first: bool) -> None:
        """Sort by received time, newest first or oldest first (the header's indicator follows)."""
        order = Qt.SortOrder.DescendingOrder if newest_first else Qt.SortOrder.AscendingOrder
        self.table.horizontalHeader().setSortIndicator(COL_RECEIVED, order)

    # -- following ---------------------------------------------------------------------------------
    def _scroll_to_latest(self) -> None:
        self._programmatic += 1
        try:
            if self.model.descending:
                self.table.scrollToTop()
            else:
                self.table.scrollToBottom()
        finally:
            self._programmatic -= 1

    def _on_follow_toggled(self, checked: bool) -> None:
        if checked:
            self._scroll_to_latest()

    def _on_scrolled(self, value: int) -> None:
        if self._programmatic:
            return
        bar = self.table.verticalScrollBar()
        at_latest = value <= bar.minimum() if self.model.descending else value >= bar.maximum()
        if at_latest != self.follow_action.isChecked():
            self.follow_action.setChecked(at_latest)

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if self.following:
            self._scroll_to_latest()
        elif first == 0 and last + 1 < self.model.rowCount():
            # rows inserted above what the user is reading (older history, or newer events when
            # newest first): keep the same rows in view
            self._shift_scroll(last - first + 1)

    def _on_sort_indicator(self, section: int, order: Qt.SortOrder) -> None:
        if section != COL_RECEIVED:  # only received time sorts: put the indicator back
            header = self.table.horizontalHeader()
            header.blockSignals(True)
            newest_first = self.model.descending
            header.setSortIndicator(
                COL_RECEIVED, Qt.SortOrder.DescendingOrder if newest_first else Qt.SortOrder.AscendingOrder
            )
            header.blockSignals(False)
            return
        self.model.sort(section, order)
        self.newest_first_action.setChecked(self.model.descending)
        if self.following:
            self._scroll_to_latest()

    def _shift_scroll(self, rows: int) -> None:
        bar = self.table.verticalScrollBar()
        self._programmatic += 1
        try:
            self.table.updateGeometries()  # the scroll range must include the new rows first
            bar.setValue(max(0, bar.value() + rows))
        finally:
            self._programmatic -= 1

    # -- the rest ----------------------------------------------------------------------------------
    def _on_pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.model.set_paused(paused)
        self.pausedChanged.emit(paused)

    def _on_selection_changed(self, *_: object) -> None:
        self.selectedEvent.emit(self.selected())

    def _update_stats(self) -> None:
        text = self.stats_text()
        self.stats_label.setText(text)
        self.stats_label.setToolTip(text)
