"""The live table's model: a virtual view over the whole capture, filtered, with the live tail.

``rowCount`` is the exact number of captured events the filter matches. Which positions those
are is worked out by :func:`eventdesk.core.event_index.scan` on a worker thread, newest first
(a text or JMESPath filter's scan in a worker process, :mod:`eventdesk.core.scan_worker`, so its
Python never holds the GUI's GIL while the table paints)
(the newest rows show at once, the count grows to the exact one; a new filter cancels the
scan); events arriving meanwhile are added at the end without reading anything again. Rows
are read from the capture a page at a time (``view_rows``: one query by position, the shown
columns as stored, each envelope decoded only when its row is painted) when the view first asks
for them and kept in a small LRU, so scrolling anywhere costs one page read.
Without a capture (tests, a viewer fed by hand) the arriving events are all the model holds.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.event_index import Found, PositionList, needs_envelopes, scan
from eventdesk.core.filters import EventFilter
from eventdesk.core.scan_worker import ScanWorker
from eventdesk.ui.event_rows import ANSWERED_ROLES, COL_RECEIVED, COLUMNS, Row, cell_data

log = logging.getLogger(__name__)

PAGE = 200  # rows read at once
STEP_EVERY = 0.25  # seconds of scanning between two updates of the table (the first at once)
CACHE_PAGES = 24  # rows kept: PAGE * CACHE_PAGES (a few screens around each place looked at)


class _Scanner(QObject):
    """Runs one :func:`scan` on a worker thread; what it finds reaches the model as queued
    signals, at most every :data:`STEP_EVERY` (each update repaints the table, and a paint while
    the scan runs shares the GIL with it: fewer, larger updates)."""

    step = Signal(int, object)  # generation, [Found, ...] newest first
    finished = Signal(int, int, str)  # generation, events in the span (-1: all matched), error ("" if none)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = ScanWorker()
        self.in_process = False  # True: every scan on the thread here (the old way; benchmarks compare)

    def run(
        self, generation: int, capture: Capture, flt: EventFilter, before: int, after: int
    ) -> threading.Event:
        cancel = threading.Event()
        # SQLite answers models/ops/quarantine alone, here: in the worker (nice 5) the same count
        # was no smoother and, on a loaded machine, slower. Text and expressions go to the worker.
        run_scan = scan if self.in_process or not needs_envelopes(flt) else self.worker.scan

        def work() -> None:
            error = ""
            total = 0
            try:
                empty = (
                    flt.models is None
                    and flt.ops is None
                    and not flt.quarantined
                    and not needs_envelopes(flt)
                )
                total = -1 if empty else capture.view_span(after=after, before=before)[0]
                pending: list[Found] = []
                sent = 0.0  # the first step goes at once: the newest rows show first
                for found in run_scan(capture, flt, before=before, after=after, cancelled=cancel.is_set):
                    pending.append(found)
                    if time.monotonic() - sent >= STEP_EVERY and not cancel.is_set():
                        self.step.emit(generation, pending)
                        pending, sent = [], time.monotonic()
                if pending and not cancel.is_set():
                    self.step.emit(generation, pending)
            except sqlite3.ProgrammingError:  # the capture was closed under the scan: the app is leaving
                return
            except Exception as exc:  # shown in the table's count; the app goes on
                log.exception("reading the capture for the table failed")
                error = str(exc)
            if not cancel.is_set():
                self.finished.emit(generation, total, error)

        threading.Thread(target=work, name="table-index", daemon=True).start()
        return cancel


class EventTableModel(QAbstractTableModel):
    """Every captured event the filter matches, oldest first (or newest first: :meth:`sort`)."""

    statsChanged = Signal()
    loadingChanged = Signal(bool)
    historyLoaded = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._index = PositionList()
        self._rows: OrderedDict[int, Row] = OrderedDict()  # by position; an LRU when a capture backs them
        self._descending = False
        self._filter = EventFilter()
        self._capture: Capture | None = None
        self._paused = False
        self._missed = 0
        self._floor = 0  # events below this position are the scan's (or were cleared)
        self._cleared_at = 0
        self._total = 0  # events in the capture since the last clear (the "of M")
        self._error = ""
        self._generation = 0
        self._cancel: threading.Event | None = None
        self._progress = 1.0
        self._span = (0, 1)  # the running scan's positions: (after, before)
        self._found = 0  # matches the running scan found so far
        self._scanner = _Scanner(self)
        self._scanner.step.connect(self._on_step)
        self._scanner.finished.connect(self._on_finished)
        self._bold = QFont()
        self._bold.setBold(True)
        self._last_row_at = -2  # data()'s last row (-2: none, never an index's row; forgotten when rows move)
        self._last_row: Row | None = None
        for moved in (self.modelReset, self.rowsInserted, self.layoutChanged, self.rowsRemoved):
            moved.connect(self._forget_last_row)

    # -- state -------------------------------------------------------------------------------------
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
        """The capture is being read for the filter: the count is not final yet."""
        return self._cancel is not None

    @property
    def progress(self) -> float:
        """How much of the capture the running scan has read (0..1; 1 when none runs)."""
        return self._progress

    @property
    def total(self) -> int:
        """Events in the capture (since the last Clear), matching or not."""
        return self._total

    @property
    def error(self) -> str:
        """Why the last scan of the capture failed ("" if it did not)."""
        return self._error

    @property
    def descending(self) -> bool:
        return self._descending

    def position_at(self, row: int) -> int:
        n = len(self._index)
        return self._index[n - 1 - row if self._descending else row]

    def row_of_index(self, i: int) -> int:
        return len(self._index) - 1 - i if self._descending else i

    def event_at(self, row: int) -> CapturedEvent:
        return self._row(row).event

    def row_of(self, pos: int) -> int | None:
        """The row showing the event at capture position ``pos`` (None: the filter hides it)."""
        i = self._index.index_of(pos)
        return None if i is None else self.row_of_index(i)

    def row_at_time(self, received_at: str) -> int | None:
        """The row of the first event received at or after ``received_at`` (ISO 8601 UTC, as
        envelopes carry it), else the newest; None when the table is empty. The capture's order
        is the order of arrival, so a binary search over positions finds it in ~20 reads."""
        n = len(self._index)
        if n == 0:
            return None
        capture = self._capture
        if capture is None:
            i = bisect.bisect_left(
                range(n),
                received_at,
                key=lambda k: str(self._rows[self._index[k]].event.envelope["received_at"]),
            )
        else:
            i = bisect.bisect_left(
                range(n), received_at, key=lambda k: capture.view_received_at(self._index[k]) or ""
            )
        return self.row_of_index(min(i, n - 1))

    # -- Qt model ----------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt override
        return 0 if parent.isValid() else len(self._index)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section]
            if role == Qt.ItemDataRole.ToolTipRole and section == COL_RECEIVED:
                return (
                    "Local time the event was received (tooltip: UTC); click to sort oldest or newest first"
                )
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        # A paint asks ~8 roles of each visible cell: those never answered cost no lookup, and
        # the row of the cell before (the same row, most of the time) is kept at hand.
        if role not in ANSWERED_ROLES:
            return None
        r, row = index.row(), self._last_row
        if r == self._last_row_at and row is not None:
            return cell_data(row, index.column(), role, self._bold)
        if not index.isValid() or not 0 <= r < len(self._index):
            return None
        row = self._row(r)
        self._last_row_at, self._last_row = r, row
        return cell_data(row, index.column(), role, self._bold)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by received time (the capture's order); other columns keep it."""
        descending = order == Qt.SortOrder.DescendingOrder
        if column != COL_RECEIVED or descending == self._descending:
            return
        self.layoutAboutToBeChanged.emit()
        self._descending = descending
        self.layoutChanged.emit()

    # -- rows, read a page at a time ---------------------------------------------------------------
    def _row(self, row: int) -> Row:
        pos = self.position_at(row)
        found = self._rows.get(pos)
        if found is not None:
            self._rows.move_to_end(pos)
            return found
        capture = self._capture
        if capture is None:
            raise LookupError(f"event #{pos} is not held and there is no capture to read it from")
        first = row - row % PAGE
        wanted = [self.position_at(r) for r in range(first, min(first + PAGE, len(self._index)))]
        missing = [p for p in sorted(wanted) if p not in self._rows]
        for stored in capture.view_rows(missing):  # envelopes decoded only for rows painted
            self._rows[stored[0]] = Row.stored(stored)
        self._trim()
        found = self._rows.get(pos)
        if found is None:  # gone from the capture (a fresh capture replaced it): say so, do not crash
            found = self._rows[pos] = Row(CapturedEvent(pos, {"key": "(no longer in the capture)"}))
        return found

    def _forget_last_row(self) -> None:
        self._last_row_at = -2
        self._last_row = None

    def _trim(self) -> None:
        if self._capture is None:
            return
        while len(self._rows) > PAGE * CACHE_PAGES:
            self._rows.popitem(last=False)

    # -- live events -------------------------------------------------------------------------------
    def append(self, events: Sequence[CapturedEvent]) -> None:
        """Add one batch of arriving events: those the filter matches become rows (one insert)."""
        fresh = [e for e in events if e.pos >= self._floor]  # the scan's, or delivered twice: already in
        if not fresh:
            return
        self._total += len(fresh)
        self._floor = fresh[-1].pos + 1
        flt = self._filter
        # events arrive before any route sets them aside: a quarantine view is read again (refresh())
        matched = [] if flt.quarantined else [e for e in fresh if flt.matches(e.envelope)]
        if not matched:
            self.statsChanged.emit()
            return
        if self._paused:
            self._missed += len(matched)
            self.statsChanged.emit()
            return
        n, k = len(self._index), len(matched)
        first = 0 if self._descending else n
        self.beginInsertRows(QModelIndex(), first, first + k - 1)
        self._index.extend([e.pos for e in matched])
        for e in matched:
            self._rows[e.pos] = Row(e)
        self._trim()
        self.endInsertRows()
        self.statsChanged.emit()

    def set_paused(self, paused: bool) -> None:
        """While paused, matching arrivals are only counted; resuming reads the capture again."""
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
        newest = self._index[-1] if len(self._index) else 0
        if self._capture is not None:
            newest = max(newest, self._capture.view_last_pos())
        self._cleared_at = max(self._cleared_at, newest)
        self._floor = max(self._floor, self._cleared_at + 1)
        self.beginResetModel()
        self._index = PositionList()
        self._rows.clear()
        self._missed = 0
        self._total = 0
        self.endResetModel()
        self.statsChanged.emit()

    # -- the capture -------------------------------------------------------------------------------
    def load_history(self, capture: Capture) -> None:
        """Show every event of ``capture`` that matches the current filter."""
        self._capture = capture
        self._reload()

    def set_filter(self, flt: EventFilter, capture: Capture | None = None) -> None:
        """Apply ``flt`` to the whole capture and to every later arrival.

        Raises :class:`~eventdesk.core.filters.FilterError` for a bad expression.
        """
        flt.compile()
        self._filter = flt
        if capture is not None:
            self._capture = capture
        if self._capture is not None:
            self._reload()
            return
        held = [p for p in self._index if flt.matches(self._rows[p].event.envelope)]
        self.beginResetModel()
        self._index = PositionList()
        self._index.extend(held)
        self.endResetModel()
        self.statsChanged.emit()

    def refresh(self) -> None:
        """Read the capture again (e.g. when what is quarantined changed)."""
        if self._capture is not None:
            self._reload()

    def scan_in_process(self, on: bool) -> None:
        """Scan text and expression filters too on a thread here instead of in the worker process
        (the old way: tests and benchmarks compare the two)."""
        self._scanner.in_process = on

    @property
    def scan_worker_pid(self) -> int | None:
        """The filter scan's worker process (None: not running; benchmarks read its memory)."""
        return self._scanner.worker.pid

    def stop(self) -> None:
        """Cancel a running scan (the window is closing)."""
        if self._stop_scan():
            self.loadingChanged.emit(False)
        self._scanner.worker.close()

    def _reload(self) -> None:
        capture = self._capture
        assert capture is not None
        self._stop_scan()
        before = capture.view_last_pos() + 1  # never queues behind the runtime's appends
        self.beginResetModel()
        self._index = PositionList()
        self._missed = 0
        self._error = ""
        self.endResetModel()
        self._floor = max(before, self._cleared_at + 1)
        self._total = 0
        self._found = 0
        self._progress = 0.0
        self._generation += 1
        self._cancel = self._scanner.run(self._generation, capture, self._filter, before, self._cleared_at)
        self._span = (self._cleared_at, before)
        self.loadingChanged.emit(True)
        self.statsChanged.emit()

    def _on_step(self, generation: int, founds: list[Found]) -> None:
        if generation != self._generation:
            return  # a cancelled scan's last step
        after, before = self._span
        self._progress = (before - founds[-1].reached) / max(1, before - after - 1)
        k = sum(len(f.block) for f in founds)
        self._found += k
        if k:
            n = len(self._index)
            first = n if self._descending else 0
            self.beginInsertRows(QModelIndex(), first, first + k - 1)
            for found in founds:  # newest first: each goes in front of the one before
                self._index.prepend(found.block)
            self.endInsertRows()
        self.statsChanged.emit()

    def _on_finished(self, generation: int, total: int, error: str) -> None:
        if generation != self._generation:
            return
        self._cancel = None
        self._progress = 1.0
        self._total += self._found if total < 0 else total  # -1: everything matched
        self._error = error
        self.loadingChanged.emit(False)
        self.statsChanged.emit()
        self.historyLoaded.emit()

    def _stop_scan(self) -> bool:
        cancel, self._cancel = self._cancel, None
        if cancel is None:
            return False
        cancel.set()
        self._scanner.worker.cancel()
        self._generation += 1
        self._progress = 1.0
        return True
