"""File ▸ Open recording: import an export (or open a stored recording) and browse it in its own window.

A :class:`RecordingWindow` is the live view's table, filter bar and detail (with the diff against
the previous revision) over a read-only recording, so it never mixes with live capture. The
:class:`RecordingOpener` owns the file chooser, the import (in a worker thread) and the windows.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QSplitter, QToolBar, QVBoxLayout, QWidget

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.errors import EventDeskError
from eventdesk.core.filters import EventFilter, FilterError
from eventdesk.core.recording import ImportResult, import_recording, open_recording_file, recording_info
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.event_detail import EventDetail
from eventdesk.ui.event_table import EventTableView
from eventdesk.ui.export_dialog import ExportDialog
from eventdesk.ui.filter_bar import FilterBar

FILE_FILTERS = (
    "Recordings and exports (*.sqlite3 *.jsonl *.ndjson *.json *.parquet)",
    "All files (*)",
)


class RecordingWindow(QMainWindow):
    """One recording, browsable, filterable, diffable and exportable; closes its capture on close."""

    closed = Signal()

    def __init__(self, capture: Capture, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setObjectName("recording_window")
        self.capture = capture
        self.setWindowTitle(f"Recording {title} — EventDesk")
        self.resize(1100, 700)
        self.tasks = TaskSlots()
        self.export_dialog: ExportDialog | None = None

        self.filter_bar = FilterBar()
        self.filter_bar.set_models(capture.models())
        self.table = EventTableView()
        self.table.follow_action.setChecked(False)
        self.table.pause_button.setVisible(False)  # nothing arrives in a recording
        self.table.clear_button.setVisible(False)
        self.detail = EventDetail()
        self.banner = QLabel(
            f"Read-only recording: {capture.path.name} · {capture.count():,} events. "
            "Live capture is not affected."
        )
        self.banner.setStyleSheet("padding: 4px; background: palette(alternate-base);")

        centre = QWidget()
        column = QVBoxLayout(centre)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.filter_bar)
        column.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(centre)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 1)
        split.setSizes([700, 380])
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)
        self.setCentralWidget(body)

        self.act_export = QAction("Export…", self)
        self.act_export.setShortcut(QKeySequence("Ctrl+E"))
        self.act_export.triggered.connect(lambda _checked=False: self.export())
        toolbar = QToolBar("Recording", self)
        toolbar.setMovable(False)
        toolbar.addAction(self.act_export)
        self.addToolBar(toolbar)

        self.filter_bar.filterChanged.connect(self._on_filter)
        self.table.selectedEvent.connect(self._on_selected)
        self.detail.filterRequested.connect(self.filter_bar.set_expression)
        self.table.table.setSelectionMode(self.table.table.SelectionMode.ExtendedSelection)
        self.table.model.load_history(capture)

    def _on_filter(self, flt: EventFilter) -> None:
        try:
            self.table.model.set_filter(flt, self.capture)
        except FilterError:
            return  # the bar shows the error

    def _on_selected(self, event: CapturedEvent | None) -> None:
        if event is None:
            self.detail.show_event(None)
            return
        self.tasks.start("detail", self._show_detail(event))

    async def _show_detail(self, event: CapturedEvent) -> None:
        env = event.envelope
        previous = await asyncio.to_thread(
            self.capture.previous_revision, str(env["model"]), str(env["key"]), event.pos
        )
        self.detail.show_event(event, previous)

    def export(self) -> None:
        dialog = ExportDialog(
            self.capture,
            models=self.capture.models(),
            table_filter=self.table.model.event_filter,
            selected=selected_positions(self.table),
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.export_dialog = dialog
        dialog.show()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.export_dialog is not None:
            self.export_dialog.reject()
        self.tasks.cancel("detail")
        self.table.model.stop()
        self.capture.close()
        self.closed.emit()
        super().closeEvent(event)


def selected_positions(view: EventTableView) -> list[int]:
    """The capture positions of the rows selected in ``view``."""
    rows = view.table.selectionModel().selectedRows()
    return [view.model.position_at(index.row()) for index in rows]  # no envelope read: the index has them


class RecordingOpener(QObject):
    """Chooses a file, imports it off the loop when it is an export, and opens its window."""

    opened = Signal(object)  # RecordingWindow
    imported = Signal(object)  # ImportResult
    failed = Signal(str)

    def __init__(self, recordings_dir: Path, parent: QWidget) -> None:
        super().__init__(parent)
        self.recordings_dir = recordings_dir
        self.parent_widget = parent
        self.windows: list[RecordingWindow] = []
        self.tasks = TaskSlots(on_error=lambda _slot, exc: self.failed.emit(str(exc)))
        self.chooser: QFileDialog | None = None
        self._cancel = threading.Event()

    def choose(self) -> None:
        """Show the file chooser (open(), never exec()); the chosen file is opened or imported."""
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        chooser = QFileDialog(self.parent_widget, "Open recording", str(self.recordings_dir))
        chooser.setFileMode(QFileDialog.FileMode.ExistingFile)
        chooser.setNameFilters(list(FILE_FILTERS))
        chooser.fileSelected.connect(self.open_path)
        chooser.finished.connect(chooser.deleteLater)
        self.chooser = chooser
        chooser.open()

    def open_path(self, path: str) -> None:
        self.tasks.start(f"open/{path}", self._open(Path(path)))

    async def _open(self, path: Path) -> None:
        try:
            if path.suffix.lower() == ".sqlite3":
                capture = await asyncio.to_thread(open_recording_file, path)
                title = recording_info(path).name
            else:
                result: ImportResult = await asyncio.to_thread(
                    import_recording, self.recordings_dir, path, cancel=self._cancel
                )
                self.imported.emit(result)
                capture = Capture(result.recording.path, readonly=True)
                title = result.recording.name
        except EventDeskError as exc:
            self.failed.emit(exc.describe())
            return
        window = RecordingWindow(capture, title, parent=self.parent_widget)
        self.windows.append(window)
        window.closed.connect(lambda: self.windows.remove(window) if window in self.windows else None)
        window.show()
        self.opened.emit(window)

    async def shutdown(self) -> None:
        self._cancel.set()
        await self.tasks.cancel_all()
        for window in list(self.windows):
            window.close()
