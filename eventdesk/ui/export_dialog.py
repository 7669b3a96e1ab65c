"""The export dialog: which events, which format, which file; progress with rate and time left; Cancel.

The export runs in a worker thread on its own read-only connection to the capture, so neither the
event loop nor live capture waits for it; progress comes back through the asyncio loop
(``call_soon_threadsafe``), never by touching a widget from the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import OPS
from eventdesk.core.errors import EventDeskError, JobCancelledError
from eventdesk.core.export import EXTENSIONS, ExportProgress, ExportResult, export_events, pyarrow_available
from eventdesk.core.filters import EventFilter, FilterError
from eventdesk.core.scope import EventScope, format_utc
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.dialog_guidance import describe_with_labels

SCOPE_ALL, SCOPE_MATCHING, SCOPE_SHOWN, SCOPE_SELECTED = range(4)
FORMAT_LABELS = (
    ("jsonl", "JSON Lines (.jsonl)"),
    ("json", "JSON array (.json)"),
    ("csv", "CSV (.csv)"),
    ("parquet", "Parquet (.parquet)"),
)
ANY_OP = "any op"
# The export's fields as its errors name them -> the labels the dialog shows.
FIELD_LABELS = {"out": "File", "filter": "Filter", "format": "Format", "models": "Models", "op": "Op"}
_ERROR_STYLE = "color: #d32f2f;"


def time_left(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    if seconds < 1:
        return "less than a second left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


def progress_text(p: ExportProgress) -> str:
    if p.phase == "columns":
        return f"Collecting CSV columns: {p.scanned:,} of {p.total:,} events read · {time_left(p.eta)}"
    return f"{p.exported:,} events exported · {p.rate:,.0f} events/s · {time_left(p.eta)}"


class ExportDialog(QDialog):
    """``ExportDialog(capture, models=…, table_filter=…, selected=…)``; emits ``exported(ExportResult)``."""

    exported = Signal(object)

    def __init__(
        self,
        capture: Capture,
        *,
        models: Iterable[str] = (),
        table_filter: EventFilter | None = None,
        selected: Iterable[int] = (),
        default_dir: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("export_dialog")
        self.setWindowTitle("Export events")
        self.capture = capture
        self.table_filter = table_filter or EventFilter()
        self.selected = frozenset(selected)
        self.export_result: ExportResult | None = None
        self.tasks = TaskSlots(on_error=lambda _slot, exc: self._show_error(str(exc)))
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._busy = False

        # -- which events
        scope_box = QGroupBox("Events")
        self.scope_group = QButtonGroup(self)
        self.scope_all = QRadioButton("Everything captured")
        self.scope_matching = QRadioButton("Matching these conditions:")
        shown = "no filter" if self.table_filter.is_empty else _describe_filter(self.table_filter)
        self.scope_shown = QRadioButton(f"What the table shows now ({shown})")
        self.scope_selected = QRadioButton(f"The selected rows ({len(self.selected):,})")
        self.scope_selected.setEnabled(bool(self.selected))
        for i, button in enumerate(
            (self.scope_all, self.scope_matching, self.scope_shown, self.scope_selected)
        ):
            self.scope_group.addButton(button, i)
        (self.scope_selected if self.selected else self.scope_all).setChecked(True)

        self.models_list = QListWidget()
        self.models_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.models_list.setMaximumHeight(90)
        self.models_list.setToolTip("Tick the models to export; none ticked means every model")
        for name in sorted(set(models)):
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.models_list.addItem(item)
        self.op_combo = QComboBox()
        self.op_combo.addItem(ANY_OP, None)
        for op in OPS:
            self.op_combo.addItem(op, op)
        now = QDateTime.currentDateTime()
        self.since_check = QCheckBox("From")
        self.since_edit = QDateTimeEdit(now.addSecs(-3600))
        self.until_check = QCheckBox("Until")
        self.until_edit = QDateTimeEdit(now)
        for edit in (self.since_edit, self.until_edit):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setEnabled(False)
        self.since_check.toggled.connect(self.since_edit.setEnabled)
        self.until_check.toggled.connect(self.until_edit.setEnabled)
        self.expression_edit = QLineEdit()
        self.expression_edit.setPlaceholderText("JMESPath, e.g. payload.region == 'Pune'")
        self.expression_edit.textChanged.connect(self._check_expression)
        self.expression_error = QLabel()
        self.expression_error.setStyleSheet(_ERROR_STYLE)
        self.expression_error.setVisible(False)

        self.conditions = QWidget()
        form = QFormLayout(self.conditions)
        form.setContentsMargins(24, 0, 0, 0)
        form.addRow("Models", self.models_list)
        form.addRow("Op", self.op_combo)
        times = QHBoxLayout()
        times.addWidget(self.since_check)
        times.addWidget(self.since_edit, 1)
        times.addWidget(self.until_check)
        times.addWidget(self.until_edit, 1)
        form.addRow("Received", times)
        form.addRow("Filter", self.expression_edit)
        form.addRow("", self.expression_error)
        self.conditions.setEnabled(False)
        self.scope_matching.toggled.connect(self.conditions.setEnabled)

        scope_layout = QVBoxLayout(scope_box)
        scope_layout.addWidget(self.scope_all)
        scope_layout.addWidget(self.scope_matching)
        scope_layout.addWidget(self.conditions)
        scope_layout.addWidget(self.scope_shown)
        scope_layout.addWidget(self.scope_selected)

        # -- format and file
        self.format_combo = QComboBox()
        for fmt, label in FORMAT_LABELS:
            self.format_combo.addItem(label, fmt)
        if not pyarrow_available():
            index = self.format_combo.findData("parquet")
            item = self.format_combo.model().item(index)  # type: ignore[attr-defined]
            item.setEnabled(False)
            item.setToolTip("Needs pyarrow: pip install 'eventdesk[parquet]'")
        self.bom_check = QCheckBox("Start with a UTF-8 BOM (for spreadsheet programs)")
        self.bom_check.setVisible(False)
        self.guard_check = QCheckBox("Keep spreadsheet programs from running cells as formulas")
        self.guard_check.setToolTip(
            "Text cells starting with = + - @ tab or CR get a leading ' (shown as text); "
            "the payload column keeps the exact value"
        )
        self.guard_check.setVisible(False)
        self.path_edit = QLineEdit(str((default_dir or Path.home()) / "eventdesk-export.jsonl"))
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        file_row = QHBoxLayout()
        file_row.addWidget(self.path_edit, 1)
        file_row.addWidget(self.browse_button)
        out_box = QGroupBox("Output")
        out_form = QFormLayout(out_box)
        out_form.addRow("Format", self.format_combo)
        out_form.addRow("", self.bom_check)
        out_form.addRow("", self.guard_check)
        out_form.addRow("File", file_row)

        # -- progress and buttons
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        self.status_label = QLabel("Ready. The file appears only when the export is complete.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self._cancel_clicked)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(scope_box)
        layout.addWidget(out_box)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.resize(620, self.sizeHint().height())

    # -- state -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """An export was started and its outcome has not been shown yet."""
        return self._busy

    @property
    def fmt(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, fmt: str) -> None:
        self.format_combo.setCurrentIndex(self.format_combo.findData(fmt))

    def scope(self) -> EventScope:
        """The scope the user chose (raises EventDeskError naming the field)."""
        which = self.scope_group.checkedId()
        if which == SCOPE_SHOWN:
            return EventScope.from_filter(self.table_filter).check("export")
        if which == SCOPE_SELECTED:
            return EventScope(positions=self.selected)
        if which == SCOPE_ALL:
            return EventScope()
        models = [
            self.models_list.item(i).text()
            for i in range(self.models_list.count())
            if self.models_list.item(i).checkState() == Qt.CheckState.Checked
        ]
        op = self.op_combo.currentData()
        since = format_utc(self.since_edit.dateTime().toPython()) if self.since_check.isChecked() else None  # type: ignore[arg-type]
        until = format_utc(self.until_edit.dateTime().toPython()) if self.until_check.isChecked() else None  # type: ignore[arg-type]
        return EventScope(
            models=frozenset(models) if models else None,
            ops=None if op is None else frozenset({op}),
            since=since,
            until=until,
            expression=self.expression_edit.text().strip(),
        ).check("export")

    # -- actions -----------------------------------------------------------------------------------
    def browse(self) -> None:
        """A save-file chooser opened with open() (never exec()); the choice lands in the path field."""
        chooser = QFileDialog(self, "Export to", self.path_edit.text())
        chooser.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        chooser.setNameFilters([label.replace(" (", " (*") for _fmt, label in FORMAT_LABELS])
        chooser.setDefaultSuffix(EXTENSIONS[self.fmt].lstrip("."))
        chooser.fileSelected.connect(self.path_edit.setText)
        chooser.finished.connect(chooser.deleteLater)
        self.file_chooser = chooser
        chooser.open()

    def describe(self, exc: EventDeskError) -> str:
        """``exc`` with its field named by this dialog's label ("File", not "field 'out'")."""
        return describe_with_labels(exc, None, FIELD_LABELS) or exc.describe()

    def start(self) -> None:
        if self.running:
            return
        try:
            scope = self.scope()
        except EventDeskError as exc:
            self._show_error(self.describe(exc))
            return
        out = Path(self.path_edit.text().strip()).expanduser()
        fmt, bom, guard = self.fmt, self.bom_check.isChecked(), self.guard_check.isChecked()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[ExportResult] = loop.create_future()
        cancel = self._cancel = threading.Event()
        path = self.capture.path

        def report(p: ExportProgress) -> None:
            loop.call_soon_threadsafe(self._on_progress, p)

        def settle(result: ExportResult | None, error: BaseException | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            try:
                capture = Capture(path, readonly=True)
                try:
                    result = export_events(
                        capture,
                        out,
                        fmt,
                        scope,
                        csv_bom=bom,
                        csv_guard_formulas=guard,
                        progress=report,
                        cancel=cancel,
                    )
                finally:
                    capture.close()
            except BaseException as exc:  # handed to the loop, where it is shown
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        self._set_running(True)
        self.progress_bar.setValue(0)
        self.status_label.setStyleSheet("")
        self.status_label.setText("Starting…")
        self._thread = threading.Thread(target=work, name="eventdesk-export", daemon=True)
        self._thread.start()
        self.tasks.start("export", self._finish(done))

    def cancel(self) -> None:
        """Stop a running export; it leaves no file behind."""
        if self._cancel is not None:
            self._cancel.set()

    async def _finish(self, done: asyncio.Future[ExportResult]) -> None:
        try:
            result = await done
        except JobCancelledError:
            self._set_running(False)
            self.progress_bar.setValue(0)
            self.status_label.setStyleSheet("")
            self.status_label.setText("Cancelled. No file was written.")
            return
        except EventDeskError as exc:
            self._set_running(False)
            self._show_error(self.describe(exc))
            return
        except OSError as exc:
            self._set_running(False)
            self._show_error(f"export: {FIELD_LABELS['out']}: {exc.strerror or exc}")
            return
        self._set_running(False)
        self.export_result = result
        self.progress_bar.setValue(1000)
        self.status_label.setStyleSheet("")
        self.status_label.setText(
            f"Exported {result.exported:,} events to {result.path} in {result.elapsed:.1f} s."
        )
        self.exported.emit(result)
        if not self._closing:
            self.accept()

    def _on_progress(self, p: ExportProgress) -> None:
        if not self.running:  # a late report after the outcome was shown
            return
        self.progress_bar.setValue(int(p.fraction * 1000))
        self.status_label.setText(progress_text(p))

    def _cancel_clicked(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.reject()

    def _set_running(self, running: bool) -> None:
        self._busy = running
        self.export_button.setEnabled(not running)
        self.cancel_button.setText("Cancel" if running else "Close")
        for widget in (
            self.format_combo,
            self.path_edit,
            self.browse_button,
            self.bom_check,
            self.guard_check,
        ):
            widget.setEnabled(not running)
        for button in self.scope_group.buttons():
            button.setEnabled(not running and (button is not self.scope_selected or bool(self.selected)))
        self.conditions.setEnabled(not running and self.scope_matching.isChecked())

    def _show_error(self, message: str) -> None:
        self.status_label.setStyleSheet(_ERROR_STYLE)
        self.status_label.setText(message)

    def _format_changed(self) -> None:
        fmt = self.fmt
        self.bom_check.setVisible(fmt == "csv")
        self.guard_check.setVisible(fmt == "csv")
        text = self.path_edit.text().strip()
        if text:
            path = Path(text)
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ""):
                self.path_edit.setText(str(path.with_suffix(EXTENSIONS[fmt])))

    def _check_expression(self, text: str) -> None:
        try:
            EventFilter(expression=text.strip()).compile()
        except FilterError as exc:
            self.expression_error.setText(f"JMESPath {exc.describe()}")
            self.expression_error.setVisible(True)
            return
        self.expression_error.setVisible(False)

    def done(self, result: int) -> None:
        """Closing while an export runs cancels it (and waits the moment it takes to stop)."""
        self._closing = True
        self.cancel()
        if self._thread is not None:
            self._thread.join(5)
        self.tasks.cancel("export")
        super().done(result)


def _describe_filter(flt: EventFilter) -> str:
    parts = []
    if flt.models is not None:
        parts.append("model " + ", ".join(sorted(flt.models)))
    if flt.ops is not None:
        parts.append("op " + ", ".join(sorted(flt.ops)))
    if flt.text:
        parts.append(f"text {flt.text!r}")
    if flt.expression:
        parts.append(flt.expression)
    return "; ".join(parts)
