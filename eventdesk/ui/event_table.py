"""The live event table: a bounded window of captured events, filled in batches, and its view.

The model keeps at most ``max_rows`` events in memory; older history stays in the capture and is
read back in chunks (newest first) when the filter changes, on resume and at start.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.filters import EventFilter

COLUMNS = ("Received", "Datasource", "Model", "Op", "Key", "Rev", "Summary")
COL_RECEIVED, COL_DATASOURCE, COL_MODEL, COL_OP, COL_KEY, COL_REV, COL_SUMMARY = range(len(COLUMNS))
DEFAULT_WIDTHS = (95, 110, 90, 70, 150, 110)

SUMMARY_CHARS = 200
DEFAULT_MAX_ROWS = 5000
DEFAULT_SCAN_LIMIT = 100_000
DEFAULT_SCAN_CHUNK = 500  # one chunk per event-loop turn: ~5-10 ms of reading and matching

EventRole = Qt.ItemDataRole.UserRole + 1
"""``data(index, EventRole)`` is the row's :class:`CapturedEvent`."""

OP_COLORS = {"created": "#2e7d32", "updated": "#1565c0", "deleted": "#c62828", "truncated": "#6a1b9a"}
_OP_FOREGROUND = {op: QColor(c) for op, c in OP_COLORS.items()}
_OP_BACKGROUND = {
    op: QColor(QColor(c).red(), QColor(c).green(), QColor(c).blue(), 38) for op, c in OP_COLORS.items()
}

# Distinct on light and dark backgrounds. Models get them in the order they are first asked for,
# so the first ten models of a session never share a colour.
MODEL_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#5c6bc0",
)
_model_colors: dict[str, QColor] = {}


def model_color(name: str) -> QColor:
    """The colour of a model, shared by the table and the rate chart."""
    color = _model_colors.get(name)
    if color is None:
        color = _model_colors[name] = QColor(MODEL_PALETTE[len(_model_colors) % len(MODEL_PALETTE)])
    return color


# -- one-line summaries ----------------------------------------------------------------------------
def _tokens(value: Any, limit: int, depth: int = 0) -> Iterator[str]:
    if depth > 32:
        yield "…"
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            if i:
                yield ", "
            yield orjson.dumps(str(k)[:limit]).decode()
            yield ": "
            yield from _tokens(v, limit, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ", "
            yield from _tokens(v, limit, depth + 1)
        yield "]"
    elif isinstance(value, str):
        yield orjson.dumps(value[: limit + 1]).decode()
    else:
        try:
            yield orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):
            yield str(value)[: limit + 1]


def summarize(payload: Any, limit: int = SUMMARY_CHARS) -> str:
    """A one-line JSON rendering of ``payload`` cut at ``limit`` characters; never walks more than it shows."""
    if payload is None:
        return ""
    parts: list[str] = []
    size = 0
    for token in _tokens(payload, limit):
        parts.append(token)
        size += len(token)
        if size > limit:
            break
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_received(iso: str) -> str:
    """Local time of day (with the date when not today) from an envelope's UTC ``received_at``."""
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except (TypeError, ValueError):
        return str(iso)
    clock = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    if when.date() == datetime.now().astimezone().date():
        return clock
    return when.strftime("%Y-%m-%d ") + clock


class _Row:
    __slots__ = ("event", "received", "summary")

    def __init__(self, event: CapturedEvent) -> None:
        self.event = event
        self.received: str | None = None
        self.summary: str | None = None


@dataclass
class _Scan:
    before: int
    scanned: int = 0


class EventTableModel(QAbstractTableModel):
    """A bounded, filtered window over the capture, newest events at the bottom.

    ``append`` inserts one batch with one ``beginInsertRows`` and trims the oldest rows with one
    ``beginRemoveRows``. History is read from the capture in chunks of ``scan_chunk`` (newest first,
    one chunk per event-loop turn) until the window is full or ``scan_limit`` events were scanned.
    """

    statsChanged = Signal()
    loadingChanged = Signal(bool)
    historyLoaded = Signal()

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        scan_chunk: int = DEFAULT_SCAN_CHUNK,
    ) -> None:
        super().__init__(parent)
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._rows: list[_Row] = []
        self._max_rows = max_rows
        self._scan_limit = scan_limit
        self._scan_chunk = scan_chunk
        self._filter = EventFilter()
        self._capture: Capture | None = None
        self._paused = False
        self._missed = 0
        self._floor = 0  # events at or below this position are history already loaded, or cleared
        self._cleared_at = 0
        self._scan: _Scan | None = None
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(0)
        self._scan_timer.timeout.connect(self._scan_step)
        self._bold = QFont()
        self._bold.setBold(True)

    # -- state -------------------------------------------------------------------------------------
    @property
    def max_rows(self) -> int:
        return self._max_rows

    @property
    def event_filter(self) -> EventFilter:
        return self._filter

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def arrived_while_paused(self) -> int:
        """Matching events that arrived while paused (not shown until resume)."""
        return self._missed

    @property
    def loading(self) -> bool:
        """A history scan is under way."""
        return self._scan is not None

    def event_at(self, row: int) -> CapturedEvent:
        return self._rows[row].event

    def row_of(self, pos: int) -> int | None:
        """The row showing the event at capture position ``pos``, if it is in the window."""
        for i in range(len(self._rows) - 1, -1, -1):
            if self._rows[i].event.pos == pos:
                return i
        return None

    # -- Qt model ----------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt override
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section]
            if role == Qt.ItemDataRole.ToolTipRole and section == COL_RECEIVED:
                return "Local time the event was received (tooltip: UTC)"
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        env = row.event.envelope
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_RECEIVED:
                return str(env.get("received_at", ""))
            if col in (COL_KEY, COL_REV, COL_SUMMARY):
                return self._display(row, col)
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_OP:
                return _OP_FOREGROUND.get(str(env.get("op")))
            if col == COL_MODEL:
                return model_color(str(env.get("model", "")))
            return None
        if role == Qt.ItemDataRole.BackgroundRole and col == COL_OP:
            return _OP_BACKGROUND.get(str(env.get("op")))
        if role == Qt.ItemDataRole.FontRole and col == COL_OP:
            return self._bold
        if role == EventRole:
            return row.event
        return None

    def _display(self, row: _Row, col: int) -> str:
        env = row.event.envelope
        if col == COL_RECEIVED:
            if row.received is None:
                row.received = format_received(str(env.get("received_at", "")))
            return row.received
        if col == COL_SUMMARY:
            if row.summary is None:
                row.summary = summarize(env.get("payload"))
            return row.summary
        name = COLUMNS[col].lower()
        value = env.get(name)
        return "" if value is None else str(value)

    # -- live events -------------------------------------------------------------------------------
    def append(self, events: Sequence[CapturedEvent]) -> None:
        """Add one batch of arriving events that match the filter (one insert, at most one trim)."""
        flt = self._filter
        if flt.quarantined:  # events arrive before any route sets them aside: see refresh()
            return
        fresh = [e for e in events if e.pos > self._floor and flt.matches(e.envelope)]
        if not fresh:
            return
        if self._paused:
            self._missed += len(fresh)
            self.statsChanged.emit()
            return
        if len(fresh) > self._max_rows:
            fresh = fresh[-self._max_rows :]
        overflow = len(self._rows) + len(fresh) - self._max_rows
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self._rows[:overflow]
            self.endRemoveRows()
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
        self._rows.extend(_Row(e) for e in fresh)
        self.endInsertRows()
        self.statsChanged.emit()

    def set_paused(self, paused: bool) -> None:
        """While paused, matching arrivals are only counted; resuming reloads the latest from capture."""
        if paused == self._paused:
            return
        self._paused = paused
        self._missed = 0
        if not paused and self._capture is not None:
            self._reload()
        self.statsChanged.emit()

    def clear(self) -> None:
        """Empty the view; events captured so far stay out of it (also after a filter change)."""
        self._stop_scan()
        newest = max((r.event.pos for r in self._rows), default=0)
        if self._capture is not None:
            newest = max(newest, self._capture.last_pos())
        self._cleared_at = max(self._cleared_at, newest)
        self._floor = max(self._floor, self._cleared_at)
        self.beginResetModel()
        self._rows = []
        self._missed = 0
        self.endResetModel()
        self.statsChanged.emit()

    # -- history -----------------------------------------------------------------------------------
    def load_history(self, capture: Capture) -> None:
        """Show the newest events of ``capture`` that match the current filter."""
        self._capture = capture
        self._reload()

    def set_filter(self, flt: EventFilter, capture: Capture | None = None) -> None:
        """Apply ``flt`` to the window and to every later arrival; refill from ``capture`` if known.

        Raises :class:`~eventdesk.core.filters.FilterError` for a bad expression.
        """
        flt.compile()
        self._filter = flt
        if capture is not None:
            self._capture = capture
        if self._capture is not None:
            self._reload()
            return
        kept = [r for r in self._rows if flt.matches(r.event.envelope)]
        self.beginResetModel()
        self._rows = kept
        self.endResetModel()
        self.statsChanged.emit()

    def refresh(self) -> None:
        """Read the window again from the capture (e.g. when what is quarantined changed)."""
        if self._capture is not None:
            self._reload()

    def _reload(self) -> None:
        capture = self._capture
        assert capture is not None
        self._stop_scan()
        newest = capture.last_pos()
        self.beginResetModel()
        self._rows = []
        self._missed = 0
        self.endResetModel()
        self._floor = max(newest, self._cleared_at)
        self._scan = _Scan(before=newest + 1)
        self.loadingChanged.emit(True)
        self.statsChanged.emit()
        self._scan_step()

    def _scan_step(self) -> None:
        scan, capture = self._scan, self._capture
        if scan is None or capture is None:
            return
        room = self._max_rows - len(self._rows)
        want = min(self._scan_chunk, self._scan_limit - scan.scanned)
        if room <= 0 or want <= 0 or scan.before <= self._cleared_at + 1:
            self._finish_scan()
            return
        flt = self._filter
        events = capture.latest(want, models=flt.models, before=scan.before, quarantined=flt.quarantined)
        if events:
            scan.before = events[0].pos
            scan.scanned += len(events)
            matched = [e for e in events if e.pos > self._cleared_at and flt.matches(e.envelope)][-room:]
            if matched:
                self.beginInsertRows(QModelIndex(), 0, len(matched) - 1)
                self._rows[:0] = [_Row(e) for e in matched]
                self.endInsertRows()
                self.statsChanged.emit()
        if len(events) < want:
            self._finish_scan()
        else:
            self._scan_timer.start()

    def _finish_scan(self) -> None:
        self._stop_scan()
        self.loadingChanged.emit(False)
        self.statsChanged.emit()
        self.historyLoaded.emit()

    def _stop_scan(self) -> None:
        self._scan_timer.stop()
        self._scan = None


class EventTableView(QWidget):
    """The table with Follow latest, Pause and Clear, and a one-line count of what is shown."""

    selectedEvent = Signal(object)
    pausedChanged = Signal(bool)  # the window's Pause action follows the table's button

    def __init__(self, model: EventTableModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model if model is not None else EventTableModel(self)
        self._programmatic = 0
        self._removing = False

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
        self.clear_button.setToolTip("Empty the table (the capture keeps everything)")
        self.clear_button.clicked.connect(self.model.clear)
        self.stats_label = QLabel(self)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableView(self)
        self.table.setObjectName("event_table")
        self.table.setAccessibleName("Events")
        self.table.setAccessibleDescription(
            "Captured events, newest last: received, datasource, model, op, key, revision, summary"
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
        for col, width in enumerate(DEFAULT_WIDTHS):
            self.table.setColumnWidth(col, width)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.follow_button)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.clear_button)
        bar.addStretch(1)
        bar.addWidget(self.stats_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table)

        self.table.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.model.rowsInserted.connect(self._on_rows_inserted)
        self.model.rowsAboutToBeRemoved.connect(self._on_rows_about_to_be_removed)
        self.model.rowsRemoved.connect(self._on_rows_removed)
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
        m = self.model
        text = f"{m.rowCount():,} shown"
        if m.paused or m.arrived_while_paused:
            text += f" · {m.arrived_while_paused:,} arrived while paused"
        if m.loading:
            text += " · loading…"
        return text

    # -- following ---------------------------------------------------------------------------------
    def _scroll_to_bottom(self) -> None:
        self._programmatic += 1
        try:
            self.table.scrollToBottom()
        finally:
            self._programmatic -= 1

    def _on_follow_toggled(self, checked: bool) -> None:
        if checked:
            self._scroll_to_bottom()

    def _on_scrolled(self, value: int) -> None:
        if self._programmatic:
            return
        at_bottom = value >= self.table.verticalScrollBar().maximum()
        if at_bottom != self.follow_action.isChecked():
            self.follow_action.setChecked(at_bottom)

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if self.following:
            self._scroll_to_bottom()
        elif first == 0 and last + 1 < self.model.rowCount():
            # history prepended above what the user is reading: keep the same rows in view
            self._shift_scroll(last - first + 1)

    def _on_rows_about_to_be_removed(self, parent: QModelIndex, first: int, last: int) -> None:
        self._removing = True

    def _on_rows_removed(self, parent: QModelIndex, first: int, last: int) -> None:
        self._removing = False
        if not self.following and first == 0:
            self._shift_scroll(-(last - first + 1))

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
        if self._removing:  # the selected row left the window: keep showing it
            return
        self.selectedEvent.emit(self.selected())

    def _update_stats(self) -> None:
        self.stats_label.setText(self.stats_text())
