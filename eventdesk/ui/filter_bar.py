"""The filter bar: free text, model, op, a JMESPath expression checked while typing, and a
"quarantined only" toggle.

Only valid filters leave the bar (``filterChanged``); a bad expression is shown inline and the
table keeps its previous filter.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.envelope import OPS
from eventdesk.core.filters import EventFilter, FilterError

DEBOUNCE_MS = 150
ALL_MODELS = "All models"
ALL_OPS = "All ops"
_EXPRESSION_HELP = (
    "A JMESPath expression over the whole envelope (id, received_at, datasource, model, op, "
    "key, rev, seq, payload, source); events where it is true are shown"
)
_ERROR_STYLE = "QLineEdit { border: 1px solid #d32f2f; border-radius: 2px; padding: 1px; }"


class FilterBar(QWidget):
    """Emits ``filterChanged(EventFilter)`` ~150 ms after the user stops typing, valid filters only."""

    filterChanged = Signal(object)
    errorChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._last: EventFilter = EventFilter()
        self._error = ""

        self.text_edit = QLineEdit(self)
        self.text_edit.setPlaceholderText("Filter: text…")
        self.text_edit.setClearButtonEnabled(True)
        self.text_edit.setToolTip("Case-insensitive text in the key, model, op or payload")
        self.model_combo = QComboBox(self)
        self.model_combo.addItem(ALL_MODELS, None)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.op_combo = QComboBox(self)
        self.op_combo.addItem(ALL_OPS, None)
        for op in OPS:
            self.op_combo.addItem(op, op)
        self.expression_edit = QLineEdit(self)
        self.expression_edit.setPlaceholderText("JMESPath, e.g. payload.region == 'Bangalore'")
        self.expression_edit.setClearButtonEnabled(True)
        self.expression_edit.setToolTip(_EXPRESSION_HELP)
        for widget, name in (
            (self.text_edit, "Filter text"),
            (self.model_combo, "Filter by model"),
            (self.op_combo, "Filter by op"),
            (self.expression_edit, "Filter expression (JMESPath)"),
        ):
            widget.setAccessibleName(name)  # what a screen reader says (a placeholder is not a name)
        self.quarantined_button = QToolButton(self)
        self.quarantined_button.setObjectName("quarantined_only")
        self.quarantined_button.setText("Quarantined")
        self.quarantined_button.setCheckable(True)
        self.quarantined_button.setToolTip(
            "Only events a route set aside because its broker cannot take them (see the route's menu to retry)"
        )
        self.error_label = QLabel(self)
        self.error_label.setStyleSheet("color: #d32f2f;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._apply)
        self.text_edit.textChanged.connect(self._schedule)
        self.expression_edit.textChanged.connect(self._schedule)
        self.model_combo.currentIndexChanged.connect(self._apply)
        self.op_combo.currentIndexChanged.connect(self._apply)
        self.quarantined_button.toggled.connect(self._apply)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.text_edit, 2)
        row.addWidget(self.model_combo)
        row.addWidget(self.op_combo)
        row.addWidget(self.expression_edit, 3)
        row.addWidget(self.quarantined_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.error_label)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    # -- public ------------------------------------------------------------------------------------
    @property
    def error(self) -> str:
        """The expression's current error ("" when valid)."""
        return self._error

    def current_filter(self) -> EventFilter:
        """The last valid filter emitted (or the empty filter)."""
        return self._last

    def set_models(self, names: Iterable[str]) -> None:
        """Offer ``names``; keeps the selection if it still exists, else falls back to all models."""
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        try:
            self.model_combo.clear()
            self.model_combo.addItem(ALL_MODELS, None)
            for name in sorted(set(names)):
                self.model_combo.addItem(name, name)
            found = self.model_combo.findData(current) if current is not None else 0
            self.model_combo.setCurrentIndex(max(found, 0))
        finally:
            self.model_combo.blockSignals(False)
        if current is not None and self.model_combo.currentData() != current:
            self._apply()

    def set_model(self, name: str | None) -> None:
        """Select one model (e.g. from the sidebar) or all models."""
        index = 0 if name is None else self.model_combo.findData(name)
        if index < 0 and name is not None:
            self.model_combo.addItem(name, name)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)

    def set_expression(self, expression: str) -> None:
        """Put ``expression`` in the JMESPath field and apply it at once."""
        self.expression_edit.setText(expression)
        self._apply()

    def set_quarantined(self, only: bool) -> None:
        """Show only quarantined events (or all again)."""
        self.quarantined_button.setChecked(only)

    def focus_filter(self) -> None:
        self.text_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.text_edit.selectAll()

    # -- internals ---------------------------------------------------------------------------------
    def _schedule(self) -> None:
        self._debounce.start()

    def _build(self) -> EventFilter:
        model = self.model_combo.currentData()
        op = self.op_combo.currentData()
        return EventFilter(
            text=self.text_edit.text().strip(),
            models=None if model is None else frozenset({model}),
            ops=None if op is None else frozenset({op}),
            expression=self.expression_edit.text().strip(),
            quarantined=self.quarantined_button.isChecked(),
        )

    def _apply(self) -> None:
        self._debounce.stop()
        flt = self._build()
        try:
            flt.compile()
        except FilterError as exc:
            self._set_error(exc.describe())
            return
        self._set_error("")
        if flt != self._last:
            self._last = flt
            self.filterChanged.emit(flt)

    def _set_error(self, message: str) -> None:
        if message == self._error:
            return
        self._error = message
        self.error_label.setText(f"JMESPath {message}" if message else "")
        self.error_label.setVisible(bool(message))
        self.expression_edit.setStyleSheet(_ERROR_STYLE if message else "")
        self.expression_edit.setToolTip(message or _EXPRESSION_HELP)
        self.errorChanged.emit(message)
