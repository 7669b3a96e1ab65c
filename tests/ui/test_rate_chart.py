"""The rate chart keeps a bounded, per-model history of the last minute."""

from __future__ import annotations

from typing import Any

import pytest

from eventdesk.ui.rate_chart import RateChart

pytestmark = pytest.mark.gui


def test_chart_keeps_a_bounded_history_per_model(qtbot: Any) -> None:
    chart = RateChart(window=60)
    qtbot.addWidget(chart)
    for t in range(600):
        chart.add_sample(float(t), {"accounts": 10.0 + t % 5, "orders": 2.5})
    assert sorted(chart.models()) == ["accounts", "orders"]
    history = chart.history("accounts")
    assert len(history) <= 61
    assert history[-1] == (599.0, 14.0)
    assert history[0][0] >= 599 - 60
    assert len(chart.legend.items) == 2


def test_model_without_samples_for_a_window_disappears(qtbot: Any) -> None:
    chart = RateChart(window=10)
    qtbot.addWidget(chart)
    chart.add_sample(0.0, {"accounts": 1.0, "orders": 1.0})
    for t in range(1, 20):
        chart.add_sample(float(t), {"accounts": 1.0})
    assert chart.models() == ["accounts"]
    assert len(chart.legend.items) == 1
    chart.clear()
    assert chart.models() == []


def test_samples_faster_than_once_a_second_stay_bounded(qtbot: Any) -> None:
    chart = RateChart(window=60)
    qtbot.addWidget(chart)
    for i in range(10_000):
        chart.add_sample(i / 1000, {"accounts": 1.0})
    assert len(chart.history("accounts")) == chart.max_samples
