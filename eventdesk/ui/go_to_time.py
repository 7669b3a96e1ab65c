"""The "Go to time…" dialog of the event table: a local date and time, answered as the UTC
``received_at`` text envelopes carry (``2026-11-29T10:00:00.000Z``), so the table can look it up."""

from __future__ import annotations

from datetime import UTC, datetime

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QDateTimeEdit, QDialog, QDialogButtonBox, QFormLayout, QLabel, QWidget


def utc_text(when: datetime) -> str:
    """``when`` (aware) as envelopes write ``received_at``: UTC, milliseconds, ``Z``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GoToTimeDialog(QDialog):
    """Asks for a local date and time; :meth:`received_at` is it in UTC, as envelopes have it."""

    def __init__(self, start: datetime | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Go to time")
        self.setObjectName("go_to_time")
        self.when = QDateTimeEdit(self)
        self.when.setObjectName("go_to_time_when")
        self.when.setAccessibleName("Received at (local time)")
        self.when.setCalendarPopup(True)
        self.when.setDisplayFormat("yyyy-MM-dd HH:mm:ss.zzz")
        self.when.setDateTime(
            QDateTime.fromMSecsSinceEpoch(round(start.timestamp() * 1000))
            if start is not None
            else QDateTime.currentDateTime()
        )
        hint = QLabel("The table shows the first event received at or after this time.", self)
        hint.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Go")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Received at (local time)", self.when)
        form.addRow(hint)
        form.addRow(buttons)

    def received_at(self) -> str:
        ms = self.when.dateTime().toMSecsSinceEpoch()
        return utc_text(datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000))
