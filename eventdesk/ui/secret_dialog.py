"""Secrets in the UI: typed into a masked field, stored straight in the keyring, never shown again.

An edit form says "Secret: set" (with Replace… and Remove) only once the keyring (or the
environment variable) was found to hold it; a secret that is gone is reported missing and the
masked field is offered again. Without a usable keyring backend the field says so
(``NO_BACKEND_HELP``) instead of failing obscurely later.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.secrets import NO_BACKEND_HELP, SecretRef, keyring_usable
from eventdesk.ui.settings_form import error_label


class MaskedLineEdit(QLineEdit):
    """A password field with a show/hide toggle; its text is never pre-filled from a store."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEchoMode(QLineEdit.EchoMode.Password)
        self.setObjectName("secret_input")
        self.reveal = QAction("Show", self)
        self.reveal.setCheckable(True)
        self.reveal.setToolTip("Show or hide what you typed")
        self.reveal.setIcon(self.style().standardIcon(self.style().StandardPixmap.SP_FileDialogContentsView))
        self.reveal.toggled.connect(self._toggle)
        self.addAction(self.reveal, QLineEdit.ActionPosition.TrailingPosition)

    def _toggle(self, shown: bool) -> None:
        self.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.reveal.setText("Hide" if shown else "Show")


class SecretField(QWidget):
    """The secret part of an add/edit form.

    ``value()`` is the new secret typed (None: leave as is); ``remove_requested`` asks the
    dialog to delete the stored one. A stored secret is only ever described, never shown,
    and called "set" only after :meth:`show_check` reported it can be had.
    """

    changed = Signal()

    def __init__(self, label: str, stored: SecretRef | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.stored = stored
        self.remove_requested = False
        self._replacing = False
        self.checked = stored is None
        self.stored_problem: str | None = None
        self.usable = keyring_usable()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)

        self.status_row = QWidget()
        row = QHBoxLayout(self.status_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel()
        self.status.setObjectName("secret_status")
        self.replace_button = QPushButton("Replace…")
        self.replace_button.clicked.connect(self._replace)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove)
        row.addWidget(self.status, 1)
        row.addWidget(self.replace_button)
        row.addWidget(self.remove_button)
        layout.addWidget(self.status_row)

        self.input = MaskedLineEdit()
        self.input.setPlaceholderText("Stored in the OS keyring; never shown again")
        self.input.textChanged.connect(self.changed)
        layout.addWidget(self.input)

        self.help = QLabel(NO_BACKEND_HELP)
        self.help.setObjectName("no_keyring_help")
        self.help.setWordWrap(True)
        self.help.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.help.setStyleSheet("color: #8a5a00;")
        layout.addWidget(self.help)

        self.error = error_label()
        self.error.setObjectName("error_secret")
        layout.addWidget(self.error)
        self._sync()

    @property
    def entering(self) -> bool:
        """True while the masked field is offered (new object, a missing secret, or after Replace…)."""
        return self.stored is None or self._replacing or self.stored_problem is not None

    def show_check(self, problem: str | None) -> None:
        """What checking the stored secret found: None if it can be had, else why not."""
        self.checked = True
        self.stored_problem = problem
        self._sync()

    def _sync(self) -> None:
        from_env = self.stored is not None and self.stored.store == "env"
        self.help.setVisible(not self.usable and not from_env)
        if self.remove_requested:
            self.status.setText("Secret: will be removed when you save")
        elif not self.checked:
            self.status.setText("Secret: checking…")
        elif self.stored_problem is not None:
            self.status.setText(f"Secret: missing ({self.stored_problem})")
        elif from_env:
            assert self.stored is not None
            self.status.setText(f"Secret: from {self.stored.describe()}")
        else:
            self.status.setText("Secret: set")
        self.status_row.setVisible(self.stored is not None)
        self.replace_button.setVisible(self.stored is not None and self.usable and not self.entering)
        self.remove_button.setText("Undo" if self.remove_requested else "Remove")
        self.input.setVisible(self.entering and not self.remove_requested)
        self.input.setEnabled(self.usable)

    def _replace(self) -> None:
        self._replacing = True
        self._sync()
        self.input.setFocus()

    def _remove(self) -> None:
        self.remove_requested = not self.remove_requested
        if self.remove_requested:
            self.input.clear()
            self._replacing = False
        self._sync()
        self.changed.emit()

    def value(self) -> str | None:
        text = self.input.text()
        return text if text and self.usable else None

    def set_error(self, message: str | None) -> None:
        self.error.setText(f"{self.label}: {message}" if message else "")
        self.error.setVisible(bool(message))


class SecretDialog(QDialog):
    """Set or replace the secret of an existing datasource or broker, straight into the keyring."""

    def __init__(self, home: Home, object_type: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.object_type = object_type
        self.name = name
        self.setWindowTitle(f"Secret of {object_type} {name}")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"New secret for {object_type} <b>{name}</b>:"))
        self.field = SecretField("Secret")
        layout.addWidget(self.field)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.field.changed.connect(self._update)
        self._update()

    def _update(self) -> None:
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save.setEnabled(self.field.value() is not None)

    def save(self) -> None:
        secret = self.field.value()
        if secret is None:
            return
        try:
            self.home.set_secret(self.object_type, self.name, secret)
        except EventDeskError as exc:
            self.field.set_error(exc.detail)
            return
        self.field.input.clear()
        self.accept()
