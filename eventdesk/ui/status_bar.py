"""The status bar: connectors running, broker connections, total events/s, route backlog."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from eventdesk.core.capture import Capture
from eventdesk.core.workspace import Workspace


@dataclass(frozen=True)
class Summary:
    models_running: int
    models_total: int
    brokers_connected: int
    brokers_total: int
    rate: float
    backlog: int | None


def route_backlogs(capture: Capture, workspace: Workspace) -> dict[str, int]:
    """Events captured but not yet acknowledged, per route (indexed counts; run off the GUI thread)."""
    result: dict[str, int] = {}
    for route in list(workspace.routes.values()):
        position = capture.route_position(route.name) or 0
        result[route.name] = capture.count(route.model, after=position)
    return result


class StatusSummary(QStatusBar):
    """Permanent labels refreshed by the window's once-a-second tick."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.connectors = QLabel()
        self.connectors.setObjectName("status_connectors")
        self.brokers = QLabel()
        self.brokers.setObjectName("status_brokers")
        self.rate = QLabel()
        self.rate.setObjectName("status_rate")
        self.backlog = QLabel()
        self.backlog.setObjectName("status_backlog")
        for label in (self.connectors, self.brokers, self.rate, self.backlog):
            label.setContentsMargins(8, 0, 8, 0)
            self.addPermanentWidget(label)
        self.show_summary(Summary(0, 0, 0, 0, 0.0, None))

    def show_summary(self, s: Summary) -> None:
        self.connectors.setText(f"Connectors: {s.models_running}/{s.models_total} running")
        self.connectors.setToolTip("Models whose connector is running, of all models")
        self.brokers.setText(f"Brokers: {s.brokers_connected}/{s.brokers_total} connected")
        self.rate.setText(f"{s.rate:.1f} ev/s")
        self.rate.setToolTip("Events received per second, all models")
        self.backlog.setText("Backlog: -" if s.backlog is None else f"Backlog: {s.backlog}")
        self.backlog.setToolTip("Captured events waiting to be republished, all routes")
