"""A settings form generated from a :class:`~eventdesk.core.settings_schema.Schema`.

Every connector and broker kind gets its form from its schema, so a new kind needs no UI
code. Each edit is checked with ``Field.coerce`` (and the schema's cross-checks): the field
at fault gets a red border and a message naming it. Secret fields are not part of this
form; dialogs handle them with a masked field (see ``secret_dialog.py``).
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.errors import ConfigError
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.ui.dialog_guidance import choice_label

ERROR_STYLE = "color: #c62828;"
_INT_LIMIT = 2_000_000_000


def error_border(widget: QWidget, on: bool) -> None:
    """Give ``widget`` (and only it, not its children) a red border, or take it away."""
    name = widget.objectName() or f"w{id(widget)}"
    widget.setObjectName(name)
    cls = type(widget).__name__
    widget.setStyleSheet(f"{cls}#{name} {{ border: 1px solid #d32f2f; border-radius: 2px; }}" if on else "")
    widget.setProperty("invalid", on)


def error_label() -> QLabel:
    label = QLabel()
    label.setStyleSheet(ERROR_STYLE)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


class FieldEditor(QWidget):
    """The editor of one field plus the line under it that explains what is wrong."""

    changed = Signal()

    def __init__(self, field: Field, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.field = field
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.input = self._make_input()
        self.input.setObjectName(f"field_{field.name}")
        if field.help:
            self.input.setToolTip(field.help)
        self.error = error_label()
        self.error.setObjectName(f"error_{field.name}")
        if field.type == "path":
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.input, 1)
            browse = QToolButton()
            browse.setText("…")
            browse.setToolTip(f"Choose {field.title.lower()}")
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
            layout.addLayout(row)
        else:
            layout.addWidget(self.input)
        layout.addWidget(self.error)

    def _make_input(self) -> QWidget:
        f = self.field
        widget: QWidget
        if f.type in ("str", "path", "url"):
            edit = QLineEdit()
            edit.setPlaceholderText(f.help if f.type != "url" else (f.help or "scheme://host:port"))
            edit.setClearButtonEnabled(f.type != "str")
            edit.textChanged.connect(self.changed)
            widget = edit
        elif f.type == "int":
            spin = QSpinBox()
            spin.setRange(
                int(f.minimum) if f.minimum is not None else -_INT_LIMIT,
                int(f.maximum) if f.maximum is not None else _INT_LIMIT,
            )
            spin.valueChanged.connect(self.changed)
            widget = spin
        elif f.type == "float":
            dspin = QDoubleSpinBox()
            dspin.setDecimals(2)
            dspin.setRange(
                f.minimum if f.minimum is not None else -1e12,
                f.maximum if f.maximum is not None else 1e12,
            )
            dspin.valueChanged.connect(self.changed)
            widget = dspin
        elif f.type == "bool":
            box = QCheckBox()
            box.toggled.connect(self.changed)
            widget = box
        elif f.type == "choice":
            combo = QComboBox()
            for choice in f.choices:  # shown in words ("From now"), stored as the value ("now")
                combo.addItem(choice_label(f.name, choice), choice)
            combo.currentIndexChanged.connect(self.changed)
            widget = combo
        elif f.type == "json":
            text = QPlainTextEdit()
            text.setPlaceholderText(f.help)
            text.setTabChangesFocus(True)
            text.setFixedHeight(72)
            text.textChanged.connect(self.changed)
            widget = text
        else:  # pragma: no cover - secret fields are never given to a FieldEditor
            raise ValueError(f"no editor for field type {f.type!r}")
        return widget

    def _browse(self) -> None:
        dialog = QFileDialog(self, f"Choose {self.field.title.lower()}")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(self.set_value)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    # -- values ----------------------------------------------------------------------------
    def value(self) -> Any:
        w = self.input
        if isinstance(w, QLineEdit):
            return self.field.entered(w.text().strip()) if self.field.type != "str" else w.text()
        if isinstance(w, QSpinBox | QDoubleSpinBox):
            return w.value()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            data = w.currentData()
            return data if isinstance(data, str) else w.currentText()
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText().strip()
        raise TypeError(type(w).__name__)  # pragma: no cover

    def set_value(self, value: Any) -> None:
        w = self.input
        if isinstance(w, QLineEdit):
            w.setText("" if value is None else str(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value) if value is not None else max(0, w.minimum()))
        elif isinstance(w, QDoubleSpinBox):
            w.setValue(float(value) if value is not None else max(0.0, w.minimum()))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            index = w.findData("" if value is None else str(value))
            w.setCurrentIndex(max(index, 0))
        elif isinstance(w, QPlainTextEdit):
            if value is None or value == "":
                w.setPlainText("")
            else:
                w.setPlainText(value if isinstance(value, str) else json.dumps(value, indent=2))

    def placeholder(self, text: str) -> None:
        """Show ``text`` in an empty line edit (a URL's shape for the chosen kind, say)."""
        if isinstance(self.input, QLineEdit):
            self.input.setPlaceholderText(text)

    def set_error(self, message: str | None) -> None:
        error_border(self.input, bool(message))
        self.error.setText(f"{self.field.title}: {message}" if message else "")
        self.error.setVisible(bool(message))
        self.setProperty("invalid", bool(message))


class SettingsForm(QWidget):
    """The non-secret fields of ``schema``; ``values()`` feeds ``Schema.validate`` directly."""

    validChanged = Signal(bool)
    changed = Signal()

    def __init__(
        self,
        schema: Schema,
        obj: str = "settings",
        parent: QWidget | None = None,
        *,
        secret_row: tuple[QWidget, QWidget] | None = None,
    ) -> None:
        """``secret_row`` (label, editor): the dialog's secret field, shown where the schema
        has its secret (after the username, say), though the form does not hold its value."""
        super().__init__(parent)
        self.schema = schema
        self.obj = obj
        self.editors: dict[str, FieldEditor] = {}
        self._errors: dict[str, str] = {}
        self._external: dict[str, str] = {}
        self._valid = True

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addLayout(self.form)

        advanced = [f for f in schema.fields if f.advanced and not f.secret]
        self.advanced_toggle: QToolButton | None = None
        self.advanced_box: QWidget | None = None
        for f in schema.fields:
            if f.secret and not f.advanced and secret_row is not None:
                self.form.addRow(*secret_row)
                secret_row = None
            if f.secret or f.advanced:
                continue
            self._add(self.form, f)
        if advanced:
            toggle = QToolButton()
            toggle.setText("Advanced")
            toggle.setCheckable(True)
            toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            toggle.setArrowType(Qt.ArrowType.RightArrow)
            toggle.setAutoRaise(True)
            box = QWidget()
            box_form = QFormLayout(box)
            box_form.setContentsMargins(12, 0, 0, 0)
            for f in advanced:
                self._add(box_form, f)
            box.setVisible(False)
            toggle.toggled.connect(self._toggle_advanced)
            outer.addWidget(toggle)
            outer.addWidget(box)
            self.advanced_toggle, self.advanced_box = toggle, box
        outer.addStretch(1)
        self.set_values(schema.defaults())

    def _add(self, form: QFormLayout, f: Field) -> None:
        editor = FieldEditor(f)
        editor.changed.connect(lambda name=f.name: self._edited(name))
        self.editors[f.name] = editor
        label = QLabel(f.title + (" *" if f.required else "") + ":")
        label.setToolTip(f.help)
        label.setBuddy(editor.input)
        form.addRow(label, editor)

    def _toggle_advanced(self, shown: bool) -> None:
        assert self.advanced_toggle is not None and self.advanced_box is not None
        self.advanced_box.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # -- values ----------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        return {name: editor.value() for name, editor in self.editors.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            editor = self.editors.get(name)
            if editor is not None:
                editor.blockSignals(True)
                editor.set_value(value)
                editor.blockSignals(False)
        self._external.clear()
        self.validate()

    def widget(self, name: str) -> QWidget:
        return self.editors[name].input

    # -- validation ------------------------------------------------------------------------
    def _edited(self, name: str) -> None:
        self._external.pop(name, None)
        self.validate()
        self.changed.emit()

    def validate(self) -> bool:
        """Check every field and the cross-checks; mark the fields at fault."""
        errors: dict[str, str] = {}
        coerced: dict[str, Any] = {}
        for name, editor in self.editors.items():
            try:
                coerced[name] = editor.field.coerce(editor.value(), self.obj)
            except ConfigError as exc:
                errors[name] = exc.detail
        if not errors:
            for check in self.schema.cross_checks:
                problem = check(coerced)
                if problem is not None and problem[0] in self.editors:
                    errors.setdefault(problem[0], problem[1])
        errors = {**errors, **{k: v for k, v in self._external.items() if k not in errors}}
        self._errors = errors
        for name, editor in self.editors.items():
            editor.set_error(errors.get(name))
        valid = not errors
        if valid != self._valid:
            self._valid = valid
            self.validChanged.emit(valid)
        return valid

    def set_error(self, name: str, message: str) -> bool:
        """Show an error found elsewhere (by Home, say) on field ``name``; False if not ours."""
        if name not in self.editors:
            return False
        self._external[name] = message
        self.validate()
        self.editors[name].input.setFocus()
        return True

    def clear_reported(self) -> None:
        """Forget errors given through :meth:`set_error` (before checking again)."""
        self._external.clear()

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def is_valid(self) -> bool:
        return self._valid
