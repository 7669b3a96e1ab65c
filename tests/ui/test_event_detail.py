"""The detail pane: header, lazy tree, text, diff against the previous revision, big payloads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, QTimer
from PySide6.QtGui import QGuiApplication

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.envelope import Event
from eventdesk.ui.event_detail import (
    COMPUTING_DIFF,
    FIRST_REVISION,
    TAB_DIFF,
    TAB_TEXT,
    EventDetail,
    pretty_json,
    unified_payload_diff,
)
from eventdesk.ui.json_tree import JsonTreeModel
from tests.ui.conftest_main import qloop_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.gui

AddEvents = Callable[..., list[CapturedEvent]]


@pytest.fixture
def detail(qtbot: Any) -> EventDetail:
    widget = EventDetail()
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    widget.show()
    return widget


def revisions(capture: Capture) -> tuple[CapturedEvent, CapturedEvent]:
    first = Event(
        "ds", "accounts", "created", "acc-1", "1-a", "1", {"status": "new", "region": "Pune", "n": [1, 2]}
    )
    second = Event(
        "ds", "accounts", "updated", "acc-1", "2-b", "2", {"status": "active", "region": "Pune", "n": [1, 2]}
    )
    capture.append("accounts", [first, second], "2")
    latest = capture.latest(1)[0]
    previous = capture.previous_revision("accounts", "acc-1", latest.pos)
    assert previous is not None
    return previous, latest


def test_update_shows_header_tree_text_and_diff(detail: EventDetail, capture: Capture) -> None:
    previous, current = revisions(capture)
    detail.show_event(current, previous)
    header = detail.header.text()
    for part in ("accounts", "updated", "acc-1", "2-b", current.envelope["received_at"]):
        assert part in header
    model = detail.tree_model
    assert [model.data(model.index(r, 0)) for r in range(model.rowCount())] == ["status", "region", "n"]
    assert model.data(model.index(0, 1)) == '"active"'

    detail.tabs.setCurrentIndex(TAB_TEXT)
    assert '"status": "active"' in detail.text_shown()

    detail.tabs.setCurrentIndex(TAB_DIFF)
    lines = detail.diff_shown().splitlines()
    assert '-  "status": "new"' in lines
    assert '+  "status": "active"' in lines
    assert not any("region" in line and line[:1] in "+-" for line in lines)


def test_first_revision_has_no_diff(detail: EventDetail, add_events: AddEvents) -> None:
    (event,) = add_events("accounts", 1)
    detail.tabs.setCurrentIndex(TAB_DIFF)
    detail.show_event(event, None)
    assert detail.diff_page.notice.text() == FIRST_REVISION
    assert detail.diff_shown() == ""


def test_nothing_selected(detail: EventDetail) -> None:
    detail.show_event(None, None)
    assert "No event" in detail.header.text()
    assert not detail.copy_payload_button.isEnabled()


def test_copy_buttons(detail: EventDetail, add_events: AddEvents) -> None:
    (event,) = add_events("accounts", 1, payload={"a": 1})
    detail.show_event(event, None)
    detail.copy_key_button.click()
    assert QGuiApplication.clipboard().text() == "k0"
    detail.copy_payload_button.click()
    assert QGuiApplication.clipboard().text() == '{\n  "a": 1\n}'


def big_document() -> dict[str, Any]:
    rows = [{"id": i, "name": f"item {i}", "tags": ["a", "b", "c"], "price": i * 1.5} for i in range(60_000)]
    return {"meta": {"count": len(rows)}, "rows": rows, "blob": "x" * 500_000}


def test_five_megabyte_payload_is_shown_lazily(detail: EventDetail, qtbot: Any) -> None:
    payload = big_document()
    event = CapturedEvent(1, {"model": "m", "op": "created", "key": "big", "rev": "1", "payload": payload})
    detail.tabs.setCurrentIndex(TAB_TEXT)
    detail.show_event(event, None)
    assert detail.large
    model = detail.tree_model
    assert model.rowCount() == 3
    assert model.nodes_created == 3  # nothing below the top level exists yet
    assert "MB" in detail.text_page.notice.text() and detail.text_page.button.isVisible()
    assert detail.text_shown() == ""

    detail.text_page.button.click()  # on request, the whole text, never cut, in pieces
    assert detail.text_page.filling and "Showing the text" in detail.text_page.notice.text()
    assert 0 < len(detail.text_shown()) < 5_000_000  # the first piece is in, the window answers
    qtbot.waitUntil(lambda: not detail.text_page.filling, timeout=30_000)
    assert detail.text_shown() == pretty_json(payload)
    assert detail.text_page.notice.text().endswith("MB") and "Showing" not in detail.text_page.notice.text()

    detail.tabs.setCurrentIndex(0)
    rows_index = model.index(1, 0)
    detail.tree.expand(rows_index)  # the view fetches the first chunk of children
    assert 0 < model.rowCount(rows_index) < 60_000  # a few chunks, not the 60,000 rows
    while model.canFetchMore(rows_index):
        model.fetchMore(rows_index)
    assert model.rowCount(rows_index) == 60_000


def test_tree_paths_and_values_for_copy() -> None:
    model = JsonTreeModel()
    model.set_document({"a b": [{"x": 1}], "ok": None})
    root = QModelIndex()
    ab = model.index(0, 0, root)
    model.fetchMore(ab)
    first = model.index(0, 0, ab)
    model.fetchMore(first)
    x = model.index(0, 0, first)
    assert model.path_of(x) == 'payload."a b"[0].x'
    assert model.json_of(first) == '{\n  "x": 1\n}'
    assert model.data(model.index(1, 1, root)) == "null"
    model.set_document("just text")
    assert model.rowCount() == 1 and model.path_of(model.index(0, 0)) == "payload"


def test_tree_model_passes_the_model_tester(qtmodeltester: Any) -> None:
    model = JsonTreeModel(chunk=3)
    model.set_document({"a": {"b": [1, 2, 3, 4, 5, {"c": None}]}, "d": list(range(10)), "e": "x"})
    qtmodeltester.check(model, force_py=True)


def test_filter_on_a_tree_value(detail: EventDetail) -> None:
    event = CapturedEvent(
        1, {"model": "m", "op": "created", "key": "k", "rev": "1", "payload": {"region": "Bangalore"}}
    )
    detail.show_event(event, None)
    assert detail.filter_expression(detail.tree_model.index(0, 0)) == 'payload.region == `"Bangalore"`'


def test_tree_model_passes_the_qt_model_tester_while_fetching(qtmodeltester: Any) -> None:
    model = JsonTreeModel(chunk=2)
    qtmodeltester.check(model, force_py=True)
    model.set_document({"a": [1, 2, 3, {"b": True}], "c": {"d": 1.5, "e": "f"}, "g": None})
    a = model.index(0, 0)
    while model.canFetchMore(a):
        model.fetchMore(a)
    assert model.rowCount(a) == 4


def test_another_event_stops_a_long_text_half_way_in(detail: EventDetail, qtbot: Any) -> None:
    big = CapturedEvent(
        1, {"model": "m", "op": "created", "key": "big", "rev": "1", "payload": big_document()}
    )
    small = CapturedEvent(2, {"model": "m", "op": "created", "key": "small", "rev": "1", "payload": {"n": 1}})
    detail.tabs.setCurrentIndex(TAB_TEXT)
    detail.show_event(big, None)
    detail.text_page.button.click()
    assert detail.text_page.filling
    detail.show_event(small, None)
    assert not detail.text_page.filling
    qtbot.wait(50)  # a stray piece of the big text would land now
    assert detail.text_shown() == pretty_json({"n": 1})


def test_big_numbers_are_shown_exactly(detail: EventDetail, capture: Capture) -> None:
    big, fine = 123456789012345678901234567890, "0.10000000000000000555"
    first = Event("ds", "accounts", "created", "acc-9", "1-a", "1", {"n": 1})
    second = Event("ds", "accounts", "updated", "acc-9", "2-a", "2", {"n": big, "x": Decimal(fine)})
    capture.append("accounts", [first, second], "2")
    latest = capture.latest(1)[0]
    detail.show_event(latest, capture.previous_revision("accounts", "acc-9", latest.pos))
    detail.tabs.setCurrentIndex(TAB_TEXT)
    assert f'"n": {big}' in detail.text_shown() and f'"x": {fine}' in detail.text_shown()
    detail.tabs.setCurrentIndex(TAB_DIFF)
    assert f'+  "n": {big},' in detail.diff_shown().splitlines()
    assert pretty_json({"n": big}) == f'{{\n  "n": {big}\n}}'
    model = detail.tree_model
    assert model.json_of(model.index(0, 0)) == str(big)


def test_the_header_names_a_rev_and_seq_only_where_the_source_has_them() -> None:
    webhook = CapturedEvent(1, {"model": "m", "op": "created", "key": "k", "rev": None, "seq": "s"})
    couch = CapturedEvent(2, {"model": "m", "op": "updated", "key": "k", "rev": "2-ab", "seq": "s"})
    core_nats = CapturedEvent(3, {"model": "m", "op": "created", "key": "k", "rev": "7", "seq": None})
    assert "rev" not in EventDetail._header_html(webhook).replace("received", "")
    assert "rev 2-ab" in EventDetail._header_html(couch) and "seq s" in EventDetail._header_html(couch)
    assert "seq" not in EventDetail._header_html(core_nats) and "None" not in EventDetail._header_html(
        core_nats
    )


def big_revisions(key: str, first_pos: int, every: int) -> tuple[CapturedEvent, CapturedEvent]:
    """Two ~5 MB revisions of ``key``: the second changes every ``every``-th row's price."""
    before = big_document()
    after = dict(before, rows=[dict(r, price=-1) if r["id"] % every == 0 else r for r in before["rows"]])
    env = {"model": "m", "op": "updated", "key": key}
    return (
        CapturedEvent(first_pos, dict(env, rev="1", payload=before)),
        CapturedEvent(first_pos + 1, dict(env, rev="2", payload=after)),
    )


def test_a_large_diff_is_computed_off_the_gui_thread(
    detail: EventDetail,
    qtbot: Any,
    qloop: asyncio.AbstractEventLoop,
) -> None:
    previous, current = big_revisions("big", 1, 1000)
    detail.tabs.setCurrentIndex(TAB_DIFF)
    detail.show_event(current, previous)
    assert detail.diff_large and detail.diff_page.button.isVisible()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(20)
    start = time.perf_counter()
    detail.diff_page.button.click()
    assert detail.diff_shown() == ""  # the click only started the work
    assert detail.diff_computing and detail.diff_page.notice.text() == COMPUTING_DIFF
    assert detail.diff_page.button.text() == "Cancel"
    qtbot.waitUntil(lambda: not detail.diff_computing and not detail.diff_page.filling, timeout=30_000)
    done = time.perf_counter()
    timer.stop()
    # Computing it takes ~0.15-0.2 s here, and the GUI thread went on serving its timer meanwhile.
    served = [t for t in ticks if start < t < done]
    assert len(served) >= 2, (len(served), done - start)
    assert detail.diff_shown() == unified_payload_diff(previous, current)
    assert '-      "price": 0.0,' in detail.diff_shown().splitlines()
    assert detail.diff_page.notice.text() == "" and detail.diff_page.button.text() == "Show diff"


def test_a_stale_large_diff_is_dropped_for_the_newer_events(
    detail: EventDetail,
    qtbot: Any,
    qloop: asyncio.AbstractEventLoop,
) -> None:
    old_previous, old_current = big_revisions("old", 1, 1000)
    new_previous, new_current = big_revisions("new", 3, 7000)
    detail.tabs.setCurrentIndex(TAB_DIFF)
    detail.show_event(old_current, old_previous)
    detail.diff_page.button.click()
    assert detail.diff_computing
    detail.show_event(new_current, new_previous)  # before the old diff is done
    assert not detail.diff_computing and detail.diff_page.button.text() == "Show diff"
    detail.diff_page.button.click()
    qtbot.waitUntil(lambda: not detail.diff_computing and not detail.diff_page.filling, timeout=30_000)
    qtbot.wait(300)  # the old diff's thread ends by now; its result must not land
    assert detail.diff_shown() == unified_payload_diff(new_previous, new_current)
    assert "rev 2 (#4)" in detail.diff_shown() and "(#2)" not in detail.diff_shown()

    # Cancelled by its button: the request is offered again, nothing is shown.
    detail.show_event(old_current, old_previous)
    detail.diff_page.button.click()
    detail.diff_page.button.click()
    assert not detail.diff_computing and detail.diff_page.button.text() == "Show diff"
    qtbot.wait(300)
    assert detail.diff_shown() == "" and "on request" in detail.diff_page.notice.text()


def test_a_small_diff_is_shown_at_once(
    detail: EventDetail,
    capture: Capture,
    qloop: asyncio.AbstractEventLoop,
) -> None:
    previous, current = revisions(capture)
    detail.tabs.setCurrentIndex(TAB_DIFF)
    detail.show_event(current, previous)  # no turn of the loop: in the same call, no notice between
    assert not detail.diff_computing and '+  "status": "active"' in detail.diff_shown().splitlines()
