"""The frame every add/edit dialog shares: a name, rows, a generated settings form, Save/Cancel.

Save stays disabled until everything is valid; errors from :class:`~eventdesk.core.home.Home`
(duplicate name, invalid topic, keyring trouble) appear next to the field they name. The
connection-test row shows a busy indicator and Cancel, so the window never freezes.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.connection_test import TEST_TIMEOUT
from eventdesk.core.errors import ConfigError, EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.secrets import SecretRef
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import (
    check_name,
)
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.dialog_guidance import describe_with_labels
from eventdesk.ui.secret_dialog import SecretField
from eventdesk.ui.settings_form import FieldEditor, SettingsForm, error_border, error_label

log = logging.getLogger(__name__)


def showable_values(schema: Schema, values: dict[str, Any]) -> dict[str, Any]:
    """The stored values a form can show: an invalid object's may hold anything, and a number
    box cannot show what is not a valid number (it then shows the default)."""
    out: dict[str, Any] = {}
    for f in schema.fields:
        if f.name not in values:
            continue
        if f.type in ("int", "float"):
            try:
                f.coerce(values[f.name], "")
            except ConfigError:
                continue
        out[f.name] = values[f.name]
    return out


def describe_error(exc: BaseException) -> str:
    """The exact error, in words a user can act on (never a secret: our errors carry none)."""
    if isinstance(exc, EventDeskError):
        return exc.describe()
    if isinstance(exc, TimeoutError):
        return f"no answer within {TEST_TIMEOUT:g} s"
    if isinstance(exc, NotImplementedError):
        return f"not available in this build yet ({exc})" if str(exc) else "not available in this build yet"
    return f"{type(exc).__name__}: {exc}"


class FieldRow(QWidget):
    """An input with an error line under it (for the fields that are not schema fields)."""

    def __init__(self, widget: QWidget, name: str) -> None:
        super().__init__()
        self.input = widget
        widget.setObjectName(f"field_{name}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(widget)
        self.error = error_label()
        self.error.setObjectName(f"error_{name}")
        layout.addWidget(self.error)

    def set_error(self, title: str, message: str | None) -> None:
        error_border(self.input, bool(message))
        self.error.setText(f"{title}: {message}" if message else "")
        self.error.setVisible(bool(message))


class ObjectDialog(QDialog):
    """Shared frame: name, object-specific rows, a generated settings form, Save/Cancel."""

    object_type = ""
    saved = Signal(str)

    def __init__(self, home: Home, name: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.editing = name is not None
        self.tasks = TaskSlots(on_error=self._task_failed)
        self.form: SettingsForm | None = None
        self.secret: SecretField | None = None
        self._rows: dict[str, tuple[str, FieldRow]] = {}
        self.setWindowTitle(f"{'Edit' if self.editing else 'Add'} {self.object_type}")
        self.setMinimumWidth(520)

        layout = QVBoxLayout(self)
        self.header = QFormLayout()
        layout.addLayout(self.header)
        self.name_edit = QLineEdit(name or "")
        self.name_edit.setReadOnly(self.editing)
        self.name_edit.setPlaceholderText("letters, digits, '.', '_' or '-'")
        self.add_row("name", "Name *", self.name_edit)
        self.form_holder = QVBoxLayout()
        layout.addLayout(self.form_holder)
        self.extra = QVBoxLayout()
        layout.addLayout(self.extra)
        self.general_error = error_label()
        self.general_error.setObjectName("error_general")
        layout.addWidget(self.general_error)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.name_edit.textChanged.connect(self.revalidate)

    @property
    def save_button(self) -> QPushButton:
        return self.buttons.button(QDialogButtonBox.StandardButton.Save)

    @property
    def name(self) -> str:
        return self.name_edit.text().strip()

    def row(self, key: str) -> FieldRow:
        """The row of a field that is not a schema field (name, kind, ...): its input and error."""
        return self._rows[key][1]

    def add_row(self, key: str, title: str, widget: QWidget, *, first: bool = False) -> FieldRow:
        """A row in the header; ``first`` puts it above the name (a kind is known first)."""
        row = FieldRow(widget, key)
        self._rows[key] = (title.rstrip(" *"), row)
        if first:
            self.header.insertRow(0, title + ":", row)
        else:
            self.header.addRow(title + ":", row)
        return row

    def set_schema(self, schema: Schema, values: dict[str, Any] | None = None) -> None:
        """(Re)generate the settings form, keeping what the user typed in shared fields."""
        old = self.form.values() if self.form is not None else {}
        secret_fields = [f for f in schema.fields if f.secret]
        if self.secret is not None:  # out of the old form before it goes: the new one places it
            self.secret_label.setParent(self)
            self.secret.setParent(self)
        if self.form is not None:
            self.form_holder.removeWidget(self.form)
            self.form.hide()  # not drawn over the new one until its deferred delete
            self.form.deleteLater()
        self.form = SettingsForm(
            schema,
            obj=f"{self.object_type} {self.name!r}",
            secret_row=(self.secret_label, self.secret) if self.secret is not None else None,
        )
        start = schema.defaults()
        start.update({k: v for k, v in old.items() if k in start and v not in ("", None)})
        start.update(showable_values(schema, values or {}))
        self.form.set_values(start)
        self.form.changed.connect(self.revalidate)
        self.form_holder.addWidget(self.form)
        self.form.show()  # now, not on the next event-loop turn: the secret's row is inside it
        if self.secret is not None:
            self.secret.setVisible(bool(secret_fields))
            if secret_fields:
                self.secret.label = secret_fields[0].title
                self.secret_label.setText(secret_fields[0].title + ":")
            self.secret_label.setVisible(bool(secret_fields))
        self._chain_tab_order()
        self._align_label_columns()
        self.revalidate()

    def _align_label_columns(self) -> None:
        """One label column for the header's rows and the form's: two form layouts would
        otherwise each size their own, and the fields under "Name" start further right."""
        assert self.form is not None
        labels: list[QWidget] = []
        for layout in (self.header, self.form.form):
            for r in range(layout.rowCount()):
                item = layout.itemAt(r, QFormLayout.ItemRole.LabelRole)
                widget = item.widget() if item is not None else None
                if widget is not None:
                    labels.append(widget)
        width = max((label.sizeHint().width() for label in labels if not label.isHidden()), default=0)
        for label in labels:
            label.setMinimumWidth(width)

    def _chain_tab_order(self) -> None:
        """Tab goes down the rows as they show: the header's, then the form's (the secret's
        editor, made before the form, would otherwise come first)."""
        assert self.form is not None
        chain: list[QWidget] = []
        for layout in (self.header, self.form.form):
            for r in range(layout.rowCount()):
                item = layout.itemAt(r, QFormLayout.ItemRole.FieldRole)
                widget = item.widget() if item is not None else None
                if isinstance(widget, FieldRow | FieldEditor):
                    chain.append(widget.input)
                elif isinstance(widget, SecretField):
                    chain.extend([widget.replace_button, widget.remove_button, widget.input])
                elif widget is not None:
                    chain.append(widget)
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)

    def add_secret_row(self, stored: SecretRef | None) -> None:
        """The secret's editor; :meth:`set_schema` shows it where the kind's schema has it."""
        self.secret = SecretField("Secret", stored, self)
        self.secret_label = QLabel("Secret:", self)
        self.secret_label.setBuddy(self.secret)
        self.secret.hide()
        self.secret_label.hide()
        self.secret.changed.connect(self.revalidate)

    # -- validation ------------------------------------------------------------------------
    def problems(self) -> dict[str, str]:
        """Errors of the non-schema rows; subclasses add theirs."""
        found: dict[str, str] = {}
        try:
            check_name(self.name, self.object_type)
        except ConfigError as exc:
            found["name"] = exc.detail if self.name else "a name is required"
        else:
            if not self.editing and self.name in self.existing():
                found["name"] = f"a {self.object_type} with this name already exists"
        return found

    def existing(self) -> dict[str, Any]:
        return {}

    def revalidate(self) -> bool:
        problems = self.problems()
        for key, (title, row) in self._rows.items():
            # An empty new name is not an error yet, just not done.
            show = problems.get(key) if not (key == "name" and not self.name) else None
            row.set_error(title, show)
        form_ok = self.form.validate() if self.form is not None else True
        ok = form_ok and not problems
        self.save_button.setEnabled(ok)
        self.general_error.hide()
        return ok

    def show_error(self, exc: EventDeskError) -> None:
        """Put an error from Home next to the field it names (or under the form)."""
        fld = exc.field
        if fld in self._rows:
            title, row = self._rows[fld]
            row.set_error(title, exc.detail)
            row.input.setFocus()
        elif fld is not None and self.form is not None and self.form.set_error(fld, exc.detail):
            pass
        elif fld == "secret" and self.secret is not None:
            self.secret.set_error(exc.detail)
        else:
            self.general_error.setText(self.describe(exc))
            self.general_error.show()
        self.save_button.setEnabled(False)

    def describe(self, exc: BaseException) -> str:
        """``exc`` in words, its field named by the label this dialog shows for it."""
        rows = {key: title for key, (title, _row) in self._rows.items()}
        if self.secret is not None:
            rows["secret"] = self.secret.label
        labelled = describe_with_labels(exc, self.form.schema if self.form is not None else None, rows)
        return labelled if labelled is not None else describe_error(exc)

    # -- saving ----------------------------------------------------------------------------
    def save(self) -> None:
        if not self.revalidate():
            return
        try:
            self.store()
        except EventDeskError as exc:
            self.show_error(exc)
            return
        self.saved.emit(self.name)
        self.accept()

    def store(self) -> None:
        raise NotImplementedError

    def _task_failed(self, slot: str, exc: BaseException) -> None:
        log.error("%s dialog: task %s failed", self.object_type, slot, exc_info=exc)

    def done(self, result: int) -> None:
        for slot in ("test", "secret_check", "browse"):
            self.tasks.cancel(slot)
        super().done(result)


class ConnectionTestRow(QWidget):
    """Test connection button, busy indicator, Cancel, and the outcome in words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.button = QPushButton("Test connection")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.cancel = QPushButton("Cancel test")
        self.cancel.hide()
        row.addWidget(self.button)
        row.addWidget(self.busy)
        row.addWidget(self.cancel)
        row.addStretch(1)
        layout.addLayout(row)
        self.result = QLabel()
        self.result.setObjectName("test_result")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.result)

    def testing(self) -> None:
        self.button.setEnabled(False)
        self.busy.show()
        self.cancel.show()
        self.result.setStyleSheet("")
        self.result.setText("Testing…")

    def clear(self) -> None:
        """What was tested changed: the last result no longer says anything (a running test
        goes on and reports)."""
        if self.button.isEnabled():
            self.result.clear()
            self.result.setStyleSheet("")

    def finished(self, ok: bool | None, message: str) -> None:
        self.button.setEnabled(True)
        self.busy.hide()
        self.cancel.hide()
        colour = {True: "#2e7d32", False: "#c62828", None: ""}[ok]
        self.result.setStyleSheet(f"color: {colour};" if colour else "")
        prefix = {True: "✔ ", False: "✘ ", None: ""}[ok]
        self.result.setText(prefix + message)
