"""The live table model and view: batched inserts, a bounded window, filters, pause, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QColor

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.filters import EventFilter, FilterError
from eventdesk.ui.event_table import (
    COL_KEY,
    COL_OP,
    COL_SUMMARY,
    EventRole,
    EventTableModel,
    EventTableView,
    summarize,
)
from eventdesk.ui.live_feed import LiveFeed

pytestmark = pytest.mark.gui

AddEvents = Callable[..., list[CapturedEvent]]


def fake(n: int, start: int = 1, model: str = "accounts", op: str = "created") -> list[CapturedEvent]:
    """Events that never touch a capture (for live-only tests)."""
    return [
        CapturedEvent(
            pos,
            {
                "id": f"id{pos}",
                "received_at": "2026-11-29T10:00:00.123Z",
                "datasource": "ds",
                "model": model,
                "op": op,
                "key": f"k{pos}",
                "rev": f"1-{pos}",
                "seq": str(pos),
                "payload": {"n": pos, "region": "Bangalore" if pos % 2 else "Pune"},
                "source": {},
            },
        )
        for pos in range(start, start + n)
    ]


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, parent: QModelIndex, first: int, last: int) -> None:
        self.calls.append((first, last))


def keys(model: EventTableModel) -> list[str]:
    return [model.event_at(r).envelope["key"] for r in range(model.rowCount())]


def _appended(model: EventTableModel) -> None:
    model.append(fake(30))


def _trimmed(model: EventTableModel) -> None:
    model.append(fake(30))
    model.append(fake(40, start=31))


def _filtered(model: EventTableModel) -> None:
    model.append(fake(70))
    model.set_filter(EventFilter(text="bangalore"))


def _cleared(model: EventTableModel) -> None:
    model.append(fake(70))
    model.clear()


@pytest.mark.parametrize("reach", [_appended, _trimmed, _filtered, _cleared])
def test_model_passes_the_model_tester_in_every_state(
    qtmodeltester: Any, reach: Callable[[EventTableModel], None]
) -> None:
    model = EventTableModel(max_rows=50)
    reach(model)
    qtmodeltester.check(model, force_py=True)
    model.append(fake(60, start=1000))  # the tester keeps checking every later change


def test_model_passes_the_qt_model_tester_while_live(qtmodeltester: Any) -> None:
    model = EventTableModel(max_rows=20)
    qtmodeltester.check(model, force_py=True)  # the tester keeps watching every later change
    for start in range(1, 200, 25):
        model.append(fake(25, start=start))
    model.set_filter(EventFilter(ops=frozenset({"created"})))
    model.clear()
    model.append(fake(5, start=500))
    assert model.rowCount() == 5


def test_one_insert_per_batch_of_a_thousand() -> None:
    model = EventTableModel(max_rows=5000)
    inserted, removed = Counter(), Counter()
    model.rowsInserted.connect(inserted)
    model.rowsRemoved.connect(removed)
    model.append(fake(1000))
    assert inserted.calls == [(0, 999)]
    assert removed.calls == []
    model.append(fake(1000, start=1001))
    assert inserted.calls == [(0, 999), (1000, 1999)]


def test_window_stays_bounded_with_one_trim_per_batch() -> None:
    model = EventTableModel(max_rows=1000)
    removed = Counter()
    model.rowsRemoved.connect(removed)
    model.append(fake(900))
    model.append(fake(300, start=901))
    assert model.rowCount() == 1000
    assert removed.calls == [(0, 199)]
    assert model.event_at(0).pos == 201 and model.event_at(999).pos == 1200
    model.append(fake(2500, start=1201))  # a batch bigger than the window
    assert model.rowCount() == 1000
    assert model.event_at(999).pos == 3700
    assert removed.calls[-1] == (0, 999)


def test_filter_applies_to_arriving_events() -> None:
    model = EventTableModel()
    model.set_filter(EventFilter(expression="payload.region == 'Bangalore'"))
    model.append(fake(10))
    assert [model.event_at(r).pos for r in range(model.rowCount())] == [1, 3, 5, 7, 9]


def test_set_filter_rejects_a_bad_expression_and_keeps_the_old_one() -> None:
    model = EventTableModel()
    good = EventFilter(text="x")
    model.set_filter(good)
    with pytest.raises(FilterError):
        model.set_filter(EventFilter(expression="a =="))
    assert model.event_filter == good


def test_display_colours_and_lazy_summary() -> None:
    model = EventTableModel()
    big = fake(1)[0]
    big.envelope["payload"] = {"blob": "x" * 100_000, "more": list(range(10_000))}
    model.append([big, *fake(1, start=2, op="deleted")])
    summary = model.data(model.index(0, COL_SUMMARY))
    assert summary.startswith('{"blob": "xxx') and len(summary) <= 200 and summary.endswith("…")
    assert model.data(model.index(0, COL_KEY)) == "k1"
    created = model.data(model.index(0, COL_OP), Qt.ItemDataRole.ForegroundRole)
    deleted = model.data(model.index(1, COL_OP), Qt.ItemDataRole.ForegroundRole)
    assert isinstance(created, QColor) and created.green() > created.red()
    assert deleted.red() > deleted.green()
    assert model.data(model.index(1, 0), EventRole) is model.event_at(1)


def test_summary_is_one_line_and_bounded() -> None:
    assert summarize({"a": "line1\nline2"}) == '{"a": "line1\\nline2"}'
    assert summarize(None) == ""
    assert summarize([1, 2, 3]) == "[1, 2, 3]"
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    assert len(summarize(deep)) <= 200


def test_pause_counts_and_resume_reloads_from_capture(capture: Capture, add_events: AddEvents) -> None:
    model = EventTableModel(max_rows=100)
    add_events("accounts", 10)
    model.load_history(capture)
    assert model.rowCount() == 10
    model.set_paused(True)
    arrived = add_events("accounts", 5, start=10)
    model.append(arrived)
    assert model.rowCount() == 10
    assert model.arrived_while_paused == 5
    model.set_paused(False)
    assert model.arrived_while_paused == 0
    assert model.rowCount() == 15
    assert keys(model)[-1] == "k14"
    model.append(arrived)  # the feed may deliver them late: no duplicates
    assert model.rowCount() == 15


def test_history_loads_only_the_window_from_a_big_capture(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    for start in range(0, 20_000, 5000):
        add_events("accounts", 5000, start=start)
    model = EventTableModel(max_rows=500, scan_chunk=200)
    inserted = Counter()
    model.rowsInserted.connect(inserted)
    with qtbot.waitSignal(model.historyLoaded, timeout=10_000):
        model.load_history(capture)
    assert model.rowCount() == 500
    assert keys(model)[0] == "k19500" and keys(model)[-1] == "k19999"
    assert len(inserted.calls) == 3  # one insert per chunk read (200, 200, 100)


def test_filter_refills_from_capture_newest_first(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    add_events("accounts", 300)
    add_events("orders", 300)
    model = EventTableModel(max_rows=50, scan_chunk=64)
    with qtbot.waitSignal(model.historyLoaded, timeout=10_000):
        model.set_filter(
            EventFilter(models=frozenset({"accounts"}), expression="payload.region == 'Bangalore'"), capture
        )
    rows = [model.event_at(r).envelope for r in range(model.rowCount())]
    assert len(rows) == 50
    assert all(r["model"] == "accounts" and r["payload"]["region"] == "Bangalore" for r in rows)
    assert rows[-1]["key"] == "k299" and rows[0]["key"] == "k201"
    positions = [model.event_at(r).pos for r in range(model.rowCount())]
    assert positions == sorted(positions)


def test_history_scan_is_bounded(qtbot: Any, capture: Capture, add_events: AddEvents) -> None:
    add_events("accounts", 2000)
    model = EventTableModel(max_rows=100, scan_limit=500, scan_chunk=100)
    with qtbot.waitSignal(model.historyLoaded, timeout=10_000):
        model.set_filter(EventFilter(text="no such thing"), capture)
    assert model.rowCount() == 0
    assert not model.loading


def test_clear_keeps_captured_events_out_of_later_reloads(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    add_events("accounts", 20)
    model = EventTableModel()
    model.load_history(capture)
    model.clear()
    assert model.rowCount() == 0
    model.append(add_events("accounts", 3, start=20))
    with qtbot.waitSignal(model.historyLoaded, timeout=10_000):
        model.set_filter(EventFilter(), capture)
    assert keys(model) == ["k20", "k21", "k22"]


class Batches:
    """The one method of Runtime that LiveFeed uses, so the test can push batches by hand."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[str, list[CapturedEvent]], None]] = []

    def on_batch(self, listener: Callable[[str, list[CapturedEvent]], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def push(self, model: str, events: list[CapturedEvent]) -> None:
        for listener in self.listeners:
            listener(model, events)


def test_live_feed_coalesces_batches_into_one_signal(qtbot: Any) -> None:
    source = Batches()
    feed = LiveFeed(source)
    got: list[list[CapturedEvent]] = []
    feed.batch.connect(got.append)
    with qtbot.waitSignal(feed.batch, timeout=2000):
        for start in range(1, 1000, 100):
            source.push("accounts", fake(100, start=start))
    assert len(got) == 1 and len(got[0]) == 1000
    feed.stop()
    source.push("accounts", fake(5, start=2000))
    assert feed.pending == 0


def test_view_follows_pauses_and_reports(qtbot: Any) -> None:
    view = EventTableView(EventTableModel(max_rows=2000))
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    qtbot.waitExposed(view)
    bar = view.table.verticalScrollBar()
    view.model.append(fake(500))
    assert view.following and bar.value() == bar.maximum() > 0

    bar.setValue(10)  # the user scrolls up: following stops, new rows do not move the view
    assert not view.following
    view.model.append(fake(100, start=501))
    assert bar.value() == 10

    bar.setValue(bar.maximum())  # back at the bottom: following again
    assert view.following
    view.model.append(fake(100, start=601))
    assert bar.value() == bar.maximum()

    view.pause_button.click()
    view.model.append(fake(7, start=701))
    assert view.stats_label.text() == "700 shown · 7 arrived while paused"
    assert view.pause_button.text() == "Resume"
    view.pause_button.click()
    assert view.stats_label.text() == "700 shown"
    view.clear_button.click()
    assert view.model.rowCount() == 0


def test_view_keeps_the_rows_in_view_when_trimming(qtbot: Any) -> None:
    view = EventTableView(EventTableModel(max_rows=300))
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    qtbot.waitExposed(view)
    view.model.append(fake(300))
    bar = view.table.verticalScrollBar()
    bar.setValue(150)
    top = view.table.indexAt(view.table.viewport().rect().topLeft()).row()
    top_pos = view.model.event_at(top).pos
    view.model.append(fake(50, start=301))
    top_after = view.table.indexAt(view.table.viewport().rect().topLeft()).row()
    assert view.model.event_at(top_after).pos == top_pos


def test_view_keeps_the_rows_in_view_when_history_arrives_above(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    add_events("accounts", 1000)
    view = EventTableView(EventTableModel(max_rows=1000, scan_chunk=100))
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    qtbot.waitExposed(view)
    view.model.load_history(capture)  # the first chunk now, the rest on later event-loop turns
    assert view.model.loading
    view.table.verticalScrollBar().setValue(20)
    assert not view.following
    top_pos = view.model.event_at(view.table.rowAt(0)).pos
    with qtbot.waitSignal(view.model.historyLoaded, timeout=10_000):
        pass
    assert view.model.rowCount() == 1000
    assert view.model.event_at(view.table.rowAt(0)).pos == top_pos


def test_view_emits_the_selected_event(qtbot: Any) -> None:
    view = EventTableView()
    qtbot.addWidget(view)
    view.model.append(fake(5))
    with qtbot.waitSignal(view.selectedEvent) as blocker:
        view.table.selectRow(2)
    assert blocker.args == [view.model.event_at(2)]
