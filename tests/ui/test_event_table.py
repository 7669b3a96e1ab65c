"""The live table model and view: batched inserts, filters, pause, the whole capture read in the background."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from PySide6.QtCore import QDateTime, QModelIndex, Qt
from PySide6.QtGui import QColor

from eventdesk.core import event_index
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
from eventdesk.ui.go_to_time import GoToTimeDialog
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


def _sorted(model: EventTableModel) -> None:
    model.append(fake(30))
    model.sort(0, Qt.SortOrder.DescendingOrder)
    model.append(fake(40, start=31))


def _filtered(model: EventTableModel) -> None:
    model.append(fake(70))
    model.set_filter(EventFilter(text="bangalore"))


def _cleared(model: EventTableModel) -> None:
    model.append(fake(70))
    model.clear()


@pytest.mark.parametrize("reach", [_appended, _sorted, _filtered, _cleared])
def test_model_passes_the_model_tester_in_every_state(
    qtmodeltester: Any, reach: Callable[[EventTableModel], None]
) -> None:
    model = EventTableModel()
    reach(model)
    qtmodeltester.check(model, force_py=True)
    model.append(fake(60, start=1000))  # the tester keeps checking every later change


def test_model_passes_the_qt_model_tester_while_live(qtmodeltester: Any) -> None:
    model = EventTableModel()
    qtmodeltester.check(model, force_py=True)  # the tester keeps watching every later change
    for start in range(1, 200, 25):
        model.append(fake(25, start=start))
    model.set_filter(EventFilter(ops=frozenset({"created"})))
    model.clear()
    model.append(fake(5, start=500))
    assert model.rowCount() == 5


def test_one_insert_per_batch_of_a_thousand() -> None:
    model = EventTableModel()
    inserted = Counter()
    model.rowsInserted.connect(inserted)
    model.append(fake(1000))
    assert inserted.calls == [(0, 999)]
    model.append(fake(1000, start=1001))
    assert inserted.calls == [(0, 999), (1000, 1999)]
    model.append(fake(1000, start=1))  # delivered twice: already in
    assert model.rowCount() == 2000 and len(inserted.calls) == 2


def test_newest_first_puts_arrivals_at_the_top() -> None:
    model = EventTableModel()
    model.append(fake(10))
    inserted = Counter()
    model.rowsInserted.connect(inserted)
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert [model.event_at(r).pos for r in range(3)] == [10, 9, 8]
    model.append(fake(2, start=11))
    assert inserted.calls == [(0, 1)]
    assert [model.event_at(r).pos for r in range(3)] == [12, 11, 10]
    assert model.row_of(1) == 11
    model.sort(3, Qt.SortOrder.AscendingOrder)  # only received time sorts
    assert model.event_at(0).pos == 12


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


def loaded(qtbot: Any, model: EventTableModel, start: Callable[[], None]) -> None:
    """Run ``start`` (which reads the capture) and wait until the whole capture is read."""
    with qtbot.waitSignal(model.historyLoaded, timeout=10_000):
        start()
    assert not model.loading


def test_pause_counts_and_resume_reloads_from_capture(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    model = EventTableModel()
    add_events("accounts", 10)
    loaded(qtbot, model, lambda: model.load_history(capture))
    assert model.rowCount() == 10
    model.set_paused(True)
    arrived = add_events("accounts", 5, start=10)
    model.append(arrived)
    assert model.rowCount() == 10
    assert model.arrived_while_paused == 5
    loaded(qtbot, model, lambda: model.set_paused(False))
    assert model.arrived_while_paused == 0
    assert model.rowCount() == 15
    assert keys(model)[-1] == "k14"
    model.append(arrived)  # the feed may deliver them late: no duplicates
    assert model.rowCount() == 15


def test_the_whole_capture_is_in_the_table_and_pages_are_read_on_demand(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    for start in range(0, 20_000, 5000):
        add_events("accounts", 5000, start=start)
    model = EventTableModel()
    loaded(qtbot, model, lambda: model.load_history(capture))
    assert model.rowCount() == 20_000 and model.total == 20_000
    assert model.event_at(0).envelope["key"] == "k0"
    assert model.event_at(19_999).envelope["key"] == "k19999"
    assert model.event_at(12_345).envelope["key"] == "k12345"


@pytest.mark.parametrize("in_process", [False, True], ids=["worker-process", "in-process"])
def test_filter_counts_exactly_over_the_whole_capture(
    qtbot: Any, capture: Capture, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    monkeypatch.setattr(event_index, "ENVELOPES_CHUNK", 64)  # several steps of the scan
    add_events("accounts", 300)
    add_events("orders", 300)
    model = EventTableModel()
    model.scan_in_process(in_process)
    flt = EventFilter(models=frozenset({"accounts"}), expression="payload.region == 'Bangalore'")
    loaded(qtbot, model, lambda: model.set_filter(flt, capture))
    rows = [model.event_at(r).envelope for r in range(model.rowCount())]
    assert len(rows) == 150 and model.total == 600
    assert all(r["model"] == "accounts" and r["payload"]["region"] == "Bangalore" for r in rows)
    assert rows[-1]["key"] == "k299" and rows[0]["key"] == "k1"
    positions = [model.event_at(r).pos for r in range(model.rowCount())]
    assert positions == sorted(positions)


def test_a_new_filter_cancels_the_running_scan(
    qtbot: Any, capture: Capture, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_index, "ENVELOPES_CHUNK", 10)
    add_events("accounts", 2000)
    model = EventTableModel()
    model.set_filter(EventFilter(text="no such thing"), capture)
    assert model.loading
    loaded(qtbot, model, lambda: model.set_filter(EventFilter(text="k1999"), capture))
    qtbot.wait(50)  # a late step of the first scan would land now
    assert keys(model) == ["k1999"]


def test_clear_keeps_captured_events_out_of_later_reloads(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    add_events("accounts", 20)
    model = EventTableModel()
    loaded(qtbot, model, lambda: model.load_history(capture))
    model.clear()
    assert model.rowCount() == 0
    model.append(add_events("accounts", 3, start=20))
    loaded(qtbot, model, lambda: model.set_filter(EventFilter(), capture))
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
    view = EventTableView(EventTableModel())
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
    assert view.stats_label.text() == "700 events · 7 arrived while paused"
    assert view.pause_button.text() == "Resume"
    view.pause_button.click()
    assert view.stats_label.text() == "700 events"
    view.model.set_filter(EventFilter(text="Bangalore"))
    assert view.stats_label.text() == "350 of 707 match"  # 7 arrived while paused (no capture to show them)
    view.clear_button.click()
    assert view.model.rowCount() == 0


def test_newest_first_view_follows_at_the_top_and_keeps_rows_in_view(qtbot: Any) -> None:
    view = EventTableView(EventTableModel())
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    qtbot.waitExposed(view)
    view.model.append(fake(300))
    view.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.DescendingOrder)  # a click on Received
    assert view.newest_first_action.isChecked() and view.model.event_at(0).pos == 300
    bar = view.table.verticalScrollBar()
    assert view.following and bar.value() == 0
    view.model.append(fake(5, start=301))
    assert bar.value() == 0 and view.model.event_at(view.table.rowAt(0)).pos == 305
    bar.setValue(100)
    assert not view.following
    top_pos = view.model.event_at(view.table.rowAt(0)).pos
    view.model.append(fake(50, start=306))  # above what the user reads: the same rows stay in view
    assert view.model.event_at(view.table.rowAt(0)).pos == top_pos
    view.table.horizontalHeader().setSortIndicator(4, Qt.SortOrder.AscendingOrder)  # Key does not sort
    assert view.model.descending
    assert view.table.horizontalHeader().sortIndicatorSection() == 0


def test_view_keeps_the_rows_in_view_when_history_arrives_above(
    qtbot: Any, capture: Capture, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_index, "ENVELOPES_CHUNK", 100)
    add_events("accounts", 1000)
    view = EventTableView(EventTableModel())
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    qtbot.waitExposed(view)
    seen: list[int] = []

    def read_on_first_rows(*_: object) -> None:  # the user scrolls up while older chunks still come
        if not seen:
            view.table.verticalScrollBar().setValue(20)
            assert not view.following and view.model.loading
            seen.append(view.model.event_at(view.table.rowAt(0)).pos)

    view.model.rowsInserted.connect(read_on_first_rows)
    with qtbot.waitSignal(view.model.historyLoaded, timeout=10_000):
        view.model.set_filter(EventFilter(text="k"), capture)  # the newest chunk first, then older ones
    assert view.model.rowCount() == 1000 and seen
    assert view.model.event_at(view.table.rowAt(0)).pos == seen[0]


def test_view_emits_the_selected_event(qtbot: Any) -> None:
    view = EventTableView()
    qtbot.addWidget(view)
    view.model.append(fake(5))
    with qtbot.waitSignal(view.selectedEvent) as blocker:
        view.table.selectRow(2)
    assert blocker.args == [view.model.event_at(2)]


def test_go_to_time_dialog_finds_the_first_event_at_or_after_the_time(
    qtbot: Any, capture: Capture, add_events: AddEvents
) -> None:
    events = add_events("accounts", 30)
    view = EventTableView()
    qtbot.addWidget(view)
    view.show()
    loaded(qtbot, view.model, lambda: view.model.load_history(capture))
    target = events[17]
    when = datetime.fromisoformat(str(target.envelope["received_at"]))
    view.goto_action.trigger()
    dialog = view.goto_dialog
    assert isinstance(dialog, GoToTimeDialog) and dialog.isVisible()
    view.goto_action.trigger()  # one dialog, not two
    assert view.goto_dialog is dialog
    dialog.when.setDateTime(QDateTime.fromMSecsSinceEpoch(round(when.timestamp() * 1000)))
    assert dialog.received_at() == str(target.envelope["received_at"])[:23] + "Z"
    dialog.accept()
    chosen = view.selected()
    assert chosen is not None
    first_at_that_time = next(e for e in events if e.envelope["received_at"] >= dialog.received_at())
    assert chosen.pos == first_at_that_time.pos and not view.following
    qtbot.waitUntil(lambda: view.goto_dialog is None)


@pytest.mark.parametrize("in_process", [False, True], ids=["worker-process", "in-process"])
def test_text_filter_over_the_capture_finds_what_casefolding_finds(
    qtbot: Any, capture: Capture, add_events: AddEvents, in_process: bool
) -> None:
    """SQLite screens envelopes for the text (ASCII lower case only); whatever Python's casefold
    matches must still be found: non-ASCII letters that fold to ASCII, quotes, a match in a key."""
    notes = ["Straße", "STRASSE", "\u017ftrasse", "plain", "KELVIN 5 \u212a", 'say "hi"', "Ünïcödé"]
    for i, note in enumerate(notes):
        add_events("accounts", 1, start=i, payload={"note": note})
    add_events("accounts", 1, start=50, payload={"note": "none"}).clear()
    model = EventTableModel()
    model.scan_in_process(in_process)  # both ways of scanning answer the same

    def found(text: str) -> list[str]:
        loaded(qtbot, model, lambda: model.set_filter(EventFilter(text=text), capture))
        return [str(model.event_at(r).envelope["payload"]["note"]) for r in range(model.rowCount())]

    for text in ("strasse", "k", '"hi', "ünï", "k50", "nothing-like-it"):
        expected = [n for n in notes if text.casefold() in n.casefold()] or []
        if text == "k":  # also in every key: all of them
            expected = [*notes, "none"]
        if text == "k50":
            expected = ["none"]
        assert found(text) == expected, text
