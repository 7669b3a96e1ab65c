"""The status bar: connectors running, broker connections, total events/s, route backlog and
quarantine, all from the runtime's status snapshot (core/runtime_status.py)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QStatusBar, QToolButton, QWidget

from eventdesk.core.runtime_status import Status


@dataclass(frozen=True)
class Summary:
    models_running: int
    models_total: int
    brokers_connected: int
    brokers_total: int
    rate: float
    backlog: int | None
    quarantined: int = 0

    @classmethod
    def of(cls, status: Status) -> Summary:
        """The bar's figures from the runtime's status snapshot."""
        return cls(
            models_running=status.models_running,
            models_total=len(status.models),
            brokers_connected=status.brokers_connected,
            brokers_total=len(status.brokers),
            rate=status.rate,
            backlog=status.backlog,
            quarantined=status.quarantined,
        )


class StatusSummary(QStatusBar):
    """Permanent labels refreshed by the window's once-a-second tick; the quarantine count is a
    button that asks to show the quarantined events (``quarantineClicked``)."""

    quarantineClicked = Signal()

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
        self.quarantine = QToolButton(self)
        self.quarantine.setObjectName("status_quarantine")
        self.quarantine.setAutoRaise(True)
        self.quarantine.clicked.connect(self.quarantineClicked)
        self.addPermanentWidget(self.quarantine)
        self.show_summary(Summary(0, 0, 0, 0, 0.0, None))

    def show_summary(self, s: Summary) -> None:
        self.connectors.setText(f"Connectors: {s.models_running}/{s.models_total} running")
        self.connectors.setToolTip("Models whose connector is running, of all models")
        self.brokers.setText(f"Brokers: {s.brokers_connected}/{s.brokers_total} connected")
        self.rate.setText(f"{s.rate:.1f} ev/s")
        self.rate.setToolTip("Events received per second, all models")
        self.backlog.setText("Backlog: -" if s.backlog is None else f"Backlog: {s.backlog}")
        self.backlog.setToolTip("Captured events waiting to be republished, all routes")
        self.quarantine.setText(f"Quarantined: {s.quarantined}")
        self.quarantine.setStyleSheet("color: #d32f2f; font-weight: bold;" if s.quarantined else "")
        self.quarantine.setToolTip(
            "Events set aside because their broker cannot take them, all routes: click to show them"
            if s.quarantined
            else "No event is in quarantine"
        )
