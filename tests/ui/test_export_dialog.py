"""The export dialog driven to completion and to cancel; File ▸ Open recording; the main window hooks."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from pytestqt.qtbot import QtBot

from eventdesk.core.capture import Capture
from eventdesk.core.export import export_events
from eventdesk.core.filters import EventFilter
from eventdesk.core.home import Home
from eventdesk.ui.event_detail import TAB_DIFF
from eventdesk.ui.export_dialog import ExportDialog
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.recording_view import RecordingOpener, RecordingWindow
from tests.ui.conftest import MakeEvents, make_event
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)

pytestmark = pytest.mark.gui


@pytest.fixture
def dialog_for(qtbot: QtBot, qloop: asyncio.AbstractEventLoop) -> Iterator[list[ExportDialog]]:
    made: list[ExportDialog] = []
    yield made
    for dialog in made:
        dialog.reject()
        assert not dialog.running


def make_dialog(made: list[ExportDialog], qtbot: QtBot, capture: Capture, **kw: object) -> ExportDialog:
    dialog = ExportDialog(capture, **kw)  # type: ignore[arg-type]
    qtbot.addWidget(dialog)
    made.append(dialog)
    dialog.show()
    return dialog


def test_export_runs_to_completion_with_progress(
    qtbot: QtBot, dialog_for: list[ExportDialog], capture: Capture, add_events: MakeEvents, tmp_path: Path
) -> None:
    add_events("accounts", 30)
    add_events("orders", 10)
    dialog = make_dialog(dialog_for, qtbot, capture, models=["accounts", "orders"])
    dialog.scope_matching.setChecked(True)
    dialog.models_list.item(1).setCheckState(Qt.CheckState.Checked)  # orders
    dialog.expression_edit.setText("payload.n > `4`")
    dialog.set_format("json")
    out = tmp_path / "orders.json"
    dialog.path_edit.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=10_000) as done:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    result = done.args[0]
    assert result.exported == 5 and result.path == out
    assert [e["key"] for e in json.loads(out.read_text())] == [f"k{i}" for i in range(5, 10)]
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum()
    assert "Exported 5 events" in dialog.status_label.text()
    assert not dialog.isVisible()  # accepted


def test_csv_with_the_formula_guard_checked(
    qtbot: QtBot, dialog_for: list[ExportDialog], capture: Capture, tmp_path: Path
) -> None:
    capture.import_events([make_event("accounts", "k1", 1, payload={"cmd": "=1+2", "note": "fine"})])
    dialog = make_dialog(dialog_for, qtbot, capture)
    dialog.set_format("csv")
    assert dialog.guard_check.isVisible() and not dialog.guard_check.isChecked()  # exact values by default
    dialog.guard_check.setChecked(True)
    out = tmp_path / "guarded.csv"
    dialog.path_edit.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=10_000):
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    with out.open(encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["payload.cmd"], row["payload.note"]) == ("'=1+2", "fine")
    dialog.set_format("json")
    assert not dialog.guard_check.isVisible()


def test_cancel_leaves_no_file(
    qtbot: QtBot, dialog_for: list[ExportDialog], capture: Capture, tmp_path: Path
) -> None:
    capture.import_events([make_event("accounts", f"k{i}", i) for i in range(40_000)])
    dialog = make_dialog(dialog_for, qtbot, capture)
    dialog.set_format("csv")  # two passes: long enough to cancel midway
    assert dialog.bom_check.isVisible() and dialog.guard_check.isVisible()
    dialog.guard_check.setChecked(True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dialog.path_edit.setText(str(out_dir / "all.csv"))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert dialog.running and dialog.cancel_button.text() == "Cancel"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Cancelled" in dialog.status_label.text(), timeout=10_000)
    assert not dialog.running and dialog.isVisible()
    assert dialog.export_button.isEnabled() and dialog.cancel_button.text() == "Close"
    assert list(out_dir.iterdir()) == []


def test_table_scope_selected_rows_and_errors(
    qtbot: QtBot, dialog_for: list[ExportDialog], capture: Capture, add_events: MakeEvents, tmp_path: Path
) -> None:
    events = add_events("accounts", 10)
    flt = EventFilter(expression="payload.region == 'Pune'")
    dialog = make_dialog(
        dialog_for, qtbot, capture, table_filter=flt, selected=[events[2].pos, events[7].pos]
    )
    assert dialog.scope_selected.isChecked() and "(2)" in dialog.scope_selected.text()
    out = tmp_path / "sel.jsonl"
    dialog.path_edit.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=10_000):
        dialog.export_button.click()
    assert [orjson.loads(line)["key"] for line in out.read_bytes().splitlines()] == ["k2", "k7"]

    dialog = make_dialog(dialog_for, qtbot, capture, table_filter=flt)
    assert not dialog.scope_selected.isEnabled()
    dialog.scope_shown.setChecked(True)
    dialog.path_edit.setText(str(tmp_path / "shown.jsonl"))
    with qtbot.waitSignal(dialog.exported, timeout=10_000):
        dialog.export_button.click()
    shown = [orjson.loads(line)["key"] for line in (tmp_path / "shown.jsonl").read_bytes().splitlines()]
    assert shown == [f"k{i}" for i in range(0, 10, 2)]

    dialog.show()
    dialog.scope_matching.setChecked(True)
    dialog.expression_edit.setText("payload.[")
    assert dialog.expression_error.isVisible()
    dialog.export_button.click()
    assert "export: Filter: invalid JMESPath" in dialog.status_label.text()
    dialog.expression_edit.setText("foo(bar)")
    assert dialog.expression_error.isVisible()
    assert "unknown function foo()" in dialog.expression_error.text()
    dialog.export_button.click()
    assert (
        "export: Filter: invalid JMESPath" in dialog.status_label.text()
        and "foo()" in dialog.status_label.text()
    )
    dialog.expression_edit.setText("")
    dialog.path_edit.setText(str(tmp_path / "missing" / "x.jsonl"))
    dialog.export_button.click()
    qtbot.waitUntil(lambda: "File: " in dialog.status_label.text(), timeout=10_000)


def test_open_recording_shows_it_in_its_own_window(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, capture: Capture, add_events: MakeEvents, tmp_path: Path
) -> None:
    add_events("accounts", 12)
    capture.append(
        "accounts", [make_event("accounts", "k3", 13, payload={"n": 300})], None
    )  # k3's 2nd revision
    export = tmp_path / "session.jsonl"
    export_events(capture, export)
    from PySide6.QtWidgets import QWidget

    host = QWidget()
    qtbot.addWidget(host)
    opener = RecordingOpener(tmp_path / "recordings", host)
    with qtbot.waitSignal(opener.opened, timeout=10_000) as opened:
        opener.open_path(str(export))
    window: RecordingWindow = opened.args[0]
    qtbot.waitUntil(lambda: window.table.model.rowCount() == 13)
    window.detail.tabs.setCurrentIndex(TAB_DIFF)
    window.table.table.selectRow(12)
    qtbot.waitUntil(lambda: "300" in window.detail.diff_shown())  # diffed against its previous revision
    assert '"n": 3' in window.detail.diff_shown()
    window.filter_bar.set_expression("payload.n > `10`")
    qtbot.waitUntil(lambda: window.table.model.rowCount() == 2)
    assert "Read-only recording" in window.banner.text()
    run(qtbot, opener.shutdown())
    assert not opener.windows


def test_main_window_export_action_uses_the_table_selection(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home, tmp_path: Path
) -> None:
    home.capture.import_events([make_event("accounts", f"k{i}", i) for i in range(6)])
    window = MainWindow(home)
    window.show()
    try:
        assert window.act_export.isEnabled()
        qtbot.waitUntil(lambda: window.table.model.rowCount() == 6)
        selection = window.table.table.selectionModel()
        for row in (1, 4):
            selection.select(
                window.table.model.index(row, 0),
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
            )
        window.act_export.trigger()
        dialog = window.dialogs[-1]
        assert isinstance(dialog, ExportDialog)
        assert dialog.scope_selected.isChecked() and dialog.selected == {
            window.table.model.event_at(1).pos,
            window.table.model.event_at(4).pos,
        }
        dialog.path_edit.setText(str(tmp_path / "two.jsonl"))
        with qtbot.waitSignal(dialog.exported, timeout=10_000):
            dialog.export_button.click()
        assert len((tmp_path / "two.jsonl").read_bytes().splitlines()) == 2
        assert window.act_open_recording.shortcut().toString() == "Ctrl+O"
    finally:
        run(qtbot, window.shutdown())
        window.close()
        window.deleteLater()


def test_export_to_a_fifo_shows_the_error_and_leaves_it(
    qtbot: QtBot, dialog_for: list[ExportDialog], capture: Capture, add_events: MakeEvents, tmp_path: Path
) -> None:
    add_events("accounts", 5)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    dialog = make_dialog(dialog_for, qtbot, capture, models=["accounts"])
    dialog.path_edit.setText(str(fifo))
    dialog.export_button.click()
    qtbot.waitUntil(lambda: "File: " in dialog.status_label.text(), timeout=10_000)
    assert "is a FIFO" in dialog.status_label.text() and str(fifo) in dialog.status_label.text()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".pipe", "pipe"))) == [
        "pipe.jsonl"
    ]
