"""A small plot of events per second per model over the last minute (pyqtgraph, imported only here).

Memory is bounded: one deque of samples per model, trimmed to the time window; a model that
sends no sample for a whole window disappears from the plot.

pyqtgraph and numpy take ~0.3 s to import, so the plot is built only once the chart is on screen
(after the window's first paint) or when it is first needed: launching stays fast.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QPalette, QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from eventdesk.ui.event_rows import model_color

if TYPE_CHECKING:
    import pyqtgraph as pg

WINDOW_SECONDS = 60.0


def _import_plotting() -> None:
    import numpy  # noqa: F401
    import pyqtgraph  # noqa: F401


class RateChart(QWidget):
    """``add_sample(t, {model: events_per_s})`` once a second; x is seconds before the newest sample."""

    def __init__(self, parent: QWidget | None = None, *, window: float = WINDOW_SECONDS) -> None:
        super().__init__(parent)
        self.window_seconds = window
        self.max_samples = int(window) * 2 + 2  # hard bound even if samples come faster than 1/s
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._plot: pg.PlotWidget | None = None
        self._legend: pg.LegendItem | None = None
        self.setMinimumHeight(90)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._importer: threading.Thread | None = None
        self._import_poll = QTimer(self)
        self._import_poll.setInterval(25)
        self._import_poll.timeout.connect(self._import_done)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._plot is None and self._importer is None:
            # Import pyqtgraph/numpy on a worker thread (GIL switches keep the GUI loop turning),
            # then build the plot on the GUI thread: no 0.3 s freeze right after launch.
            self._importer = threading.Thread(
                target=_import_plotting, name="eventdesk-import-pyqtgraph", daemon=True
            )
            self._importer.start()
            self._import_poll.start()

    def _import_done(self) -> None:
        if self._importer is not None and not self._importer.is_alive():
            self._import_poll.stop()
            self._ensure_plot()

    @property
    def plot(self) -> pg.PlotWidget:
        return self._ensure_plot()

    @property
    def legend(self) -> pg.LegendItem:
        self._ensure_plot()
        assert self._legend is not None
        return self._legend

    def _ensure_plot(self) -> pg.PlotWidget:
        if self._plot is not None:
            return self._plot
        import pyqtgraph as pg

        window = self.window_seconds
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        plot = self._plot = pg.PlotWidget(self, background=palette.color(QPalette.ColorRole.Base))
        item = plot.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setMouseEnabled(x=False, y=False)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("left", "events/s")
        item.setXRange(-window, 0, padding=0)
        item.enableAutoRange(axis="y")
        item.setLimits(yMin=0)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setTextPen(text)
            axis.setPen(text)
        self._legend = item.addLegend(offset=(8, 2), labelTextColor=text, colCount=4)
        plot.setMinimumHeight(90)
        self._layout.addWidget(plot)
        return plot

    def models(self) -> list[str]:
        return list(self._series)

    def history(self, model: str) -> list[tuple[float, float]]:
        """The samples kept for ``model`` as ``(t, rate)``, oldest first."""
        return list(self._series.get(model, ()))

    def add_sample(self, t: float, rates: dict[str, float]) -> None:
        """Record one sample per model at time ``t`` (seconds, monotonic) and redraw."""
        import numpy as np
        import pyqtgraph as pg

        for name, rate in rates.items():
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self.max_samples)
                pen = pg.mkPen(model_color(name), width=2)
                self._curves[name] = self.plot.getPlotItem().plot(name=name, pen=pen)
            series.append((t, float(rate)))
        cutoff = t - self.window_seconds
        for name in list(self._series):
            series = self._series[name]
            while series and series[0][0] < cutoff:
                series.popleft()
            if not series:
                self._remove(name)
                continue
            data = np.array(series, dtype=float)
            self._curves[name].setData(data[:, 0] - t, data[:, 1])

    def clear(self) -> None:
        for name in list(self._series):
            self._remove(name)

    def _remove(self, name: str) -> None:
        del self._series[name]
        curve = self._curves.pop(name)
        self.plot.getPlotItem().removeItem(curve)
        self.legend.removeItem(curve)
