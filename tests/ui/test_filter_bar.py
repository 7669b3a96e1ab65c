"""The filter bar emits valid filters only and shows expression errors inline."""

from __future__ import annotations

from typing import Any

import pytest

from eventdesk.core.filters import EventFilter
from eventdesk.ui.filter_bar import FilterBar

pytestmark = pytest.mark.gui


@pytest.fixture
def bar(qtbot: Any) -> FilterBar:
    widget = FilterBar()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_bad_expression_is_shown_inline_and_not_emitted(qtbot: Any, bar: FilterBar) -> None:
    emitted: list[EventFilter] = []
    bar.filterChanged.connect(emitted.append)
    with qtbot.waitSignal(bar.errorChanged, timeout=2000) as blocker:
        qtbot.keyClicks(bar.expression_edit, "payload.region ==")
    assert blocker.args == ["column 18: incomplete expression"]
    assert bar.error_label.isVisible()
    assert "column 18" in bar.error_label.text()
    assert "border" in bar.expression_edit.styleSheet()
    assert emitted == []


def test_unknown_function_is_shown_inline_and_not_emitted(qtbot: Any, bar: FilterBar) -> None:
    emitted: list[EventFilter] = []
    bar.filterChanged.connect(emitted.append)
    with qtbot.waitSignal(bar.errorChanged, timeout=2000) as blocker:
        bar.expression_edit.setText("foo(bar)")
    assert blocker.args[0].startswith("column 1: unknown function foo()")
    assert bar.error_label.isVisible()
    assert emitted == []


def test_valid_expression_is_emitted_and_clears_the_error(qtbot: Any, bar: FilterBar) -> None:
    with qtbot.waitSignal(bar.errorChanged, timeout=2000):
        bar.expression_edit.setText("payload.region ==")
    with qtbot.waitSignal(bar.filterChanged, timeout=2000) as blocker:
        bar.expression_edit.setText("payload.region == 'Bangalore'")
    flt = blocker.args[0]
    assert flt == EventFilter(expression="payload.region == 'Bangalore'")
    assert not bar.error_label.isVisible()
    assert bar.expression_edit.styleSheet() == ""
    assert bar.current_filter() == flt


def test_typing_is_debounced_into_one_filter(qtbot: Any, bar: FilterBar) -> None:
    emitted: list[EventFilter] = []
    bar.filterChanged.connect(emitted.append)
    with qtbot.waitSignal(bar.filterChanged, timeout=2000):
        qtbot.keyClicks(bar.text_edit, "acc-1")
    assert emitted == [EventFilter(text="acc-1")]


def test_model_and_op_combos(qtbot: Any, bar: FilterBar) -> None:
    bar.set_models(["orders", "accounts"])
    assert [bar.model_combo.itemText(i) for i in range(bar.model_combo.count())] == [
        "All models",
        "accounts",
        "orders",
    ]
    with qtbot.waitSignal(bar.filterChanged, timeout=2000) as blocker:
        bar.set_model("orders")
    assert blocker.args[0].models == frozenset({"orders"})
    with qtbot.waitSignal(bar.filterChanged, timeout=2000) as blocker:
        bar.op_combo.setCurrentIndex(bar.op_combo.findData("deleted"))
    assert blocker.args[0] == EventFilter(models=frozenset({"orders"}), ops=frozenset({"deleted"}))
    bar.set_models(["orders", "invoices"])  # selection kept, no new filter
    assert bar.model_combo.currentData() == "orders"
    with qtbot.waitSignal(bar.filterChanged, timeout=2000) as blocker:
        bar.set_models(["invoices"])  # the selected model is gone: back to all models
    assert blocker.args[0].models is None


def test_focus_filter_and_set_expression(qtbot: Any, bar: FilterBar) -> None:
    bar.activateWindow()
    bar.focus_filter()
    qtbot.waitUntil(bar.text_edit.hasFocus, timeout=2000)
    with qtbot.waitSignal(bar.filterChanged, timeout=2000) as blocker:
        bar.set_expression('key == `"k1"`')
    assert blocker.args[0].expression == 'key == `"k1"`'
