"""The table is a window on the whole capture (issue 16): over 1,000,000 captured events it opens
with the exact count, scrolls to the oldest, filters with an exact count, takes the live tail while
scrolled deep without moving, jumps to a time and sorts newest first. The capture is a real one
(tests/ui/big_capture.py); every expected count is asked of SQLite directly, not assumed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.filters import EventFilter
from eventdesk.ui.event_table import COL_KEY, EventTableView
from tests.ui.big_capture import BIG, big_capture_path, received_at  # noqa: F401 - fixture

pytestmark = pytest.mark.gui


def truth(path: Path, where: str = "1") -> int:
    """How many events match ``where``, asked of SQLite on a connection of the test's own."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM events WHERE {where}").fetchone()[0])  # noqa: S608 - test's own
    finally:
        db.close()


@pytest.fixture
def big_view(qtbot: QtBot, big_capture_path: Path) -> Iterator[tuple[EventTableView, Capture]]:  # noqa: F811
    capture = Capture(big_capture_path)
    view = EventTableView()
    qtbot.addWidget(view)
    view.resize(1000, 500)
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.model.historyLoaded, timeout=30_000):
        view.model.load_history(capture)
    yield view, capture
    view.model.stop()
    capture.close()


def wait_loaded(qtbot: QtBot, view: EventTableView, flt: EventFilter, capture: Capture) -> None:
    with qtbot.waitSignal(view.model.historyLoaded, timeout=60_000):
        view.model.set_filter(flt, capture)


def test_a_million_events_open_scroll_to_the_oldest_and_filter_exactly(
    qtbot: QtBot,
    big_view: tuple[EventTableView, Capture],
    big_capture_path: Path,  # noqa: F811
) -> None:
    view, capture = big_view
    model = view.model
    everything = truth(big_capture_path)
    assert everything >= BIG
    assert model.rowCount() == everything and view.stats_label.text() == f"{everything:,} events"
    assert view.following  # opened at the newest
    assert model.event_at(view.table.rowAt(view.table.viewport().height() - 1)).pos == capture.last_pos()

    view.table.scrollToTop()  # the oldest event, read from the capture on demand
    assert view.table.rowAt(0) == 0 and not view.following
    assert model.data(model.index(0, COL_KEY)) == "doc-000000"
    assert model.event_at(0).pos == 1

    wait_loaded(qtbot, view, EventFilter(ops=frozenset({"updated"})), capture)  # SQLite alone
    updated = truth(big_capture_path, "op = 'updated'")
    assert model.rowCount() == updated and view.stats_label.text() == f"{updated:,} of {everything:,} match"
    assert all(model.event_at(r).envelope["op"] == "updated" for r in (0, updated // 2, updated - 1))

    needle = EventFilter(models=frozenset({"accounts"}), text="NEEDLE")  # every envelope of a model read
    wait_loaded(qtbot, view, needle, capture)
    rare = truth(
        big_capture_path, "model = 'accounts' AND instr(CAST(envelope AS TEXT), '\"note\":\"needle\"')"
    )
    assert rare == 50 and model.rowCount() == rare
    assert view.stats_label.text() == f"{rare:,} of {everything:,} match"
    assert {model.event_at(r).envelope["payload"]["note"] for r in range(rare)} == {"needle"}


def test_a_new_filter_while_counting_cancels_and_shows_counting(
    qtbot: QtBot, big_view: tuple[EventTableView, Capture]
) -> None:
    view, capture = big_view
    view.model.set_filter(EventFilter(expression="payload.n == `-1`"), capture)  # a long scan
    assert view.model.loading and view.stats_label.text().startswith("counting… ")
    wait_loaded(qtbot, view, EventFilter(text="doc-000007"), capture)  # cancels it
    assert view.model.rowCount() == 10  # n % 100000 == 7: ten events
    assert view.model.progress == 1.0


def test_live_tail_arrives_while_scrolled_deep_and_jump_to_time(
    qtbot: QtBot,
    big_view: tuple[EventTableView, Capture],
    big_capture_path: Path,  # noqa: F811
) -> None:
    view, capture = big_view
    model = view.model
    view.go_to_row(400_000)
    top = view.table.rowAt(0)
    assert not view.following and model.event_at(top).pos == 400_001
    before = model.rowCount()
    events = [
        Event(
            datasource="couch",
            model="orders",
            op="created",
            key=f"live-{i}",
            rev=f"1-{i}",
            seq=f"live-{i}",
            payload={"i": i},
        )
        for i in range(3)
    ]
    try:
        model.append(capture.append("orders", events, "live-2"))
        assert model.rowCount() == before + 3
        assert view.table.rowAt(0) == top and model.event_at(view.table.rowAt(0)).pos == 400_001  # held still
        assert model.event_at(model.rowCount() - 1).envelope["key"] == "live-2"

        row = view.go_to_time(received_at(654_321))
        assert row == 654_321 and model.event_at(row).pos == 654_322
        assert view.table.rowAt(0) == row and view.selected() == model.event_at(row)

        view.newest_first_action.setChecked(True)  # sort by received time, newest first
        assert view.table.horizontalHeader().sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
        assert model.event_at(0).envelope["key"] == "live-2"
        assert model.event_at(model.rowCount() - 1).pos == 1
        assert view.go_to_time(received_at(10)) == model.rowCount() - 11
    finally:
        with sqlite3.connect(big_capture_path) as db:  # leave the shared capture as it was
            db.execute("DELETE FROM events WHERE key LIKE 'live-%'")
