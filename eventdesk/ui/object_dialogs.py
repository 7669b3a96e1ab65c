"""Add and edit dialogs for datasources, models, brokers and routes.

Forms come from the kinds' schemas (the shared frame: ui/object_dialog.py). "Test connection"
runs as an owned asyncio task with a busy indicator and Cancel, so the window never freezes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QWidget,
)

from eventdesk.core.connection_test import TEST_TIMEOUT, check_connection, list_sources
from eventdesk.core.errors import ConfigError, EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.registry import broker_class, broker_kinds, connector_class, connector_kinds
from eventdesk.core.secrets import SecretRef, delete_secret, resolve_secret, secret_problem
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import (
    ROUTE_SCHEMA,
    BrokerConfig,
    DatasourceConfig,
    RouteConfig,
    Workspace,
)
from eventdesk.ui.dialog_guidance import URL_PLACEHOLDERS, format_examples_label
from eventdesk.ui.object_dialog import ConnectionTestRow, ObjectDialog, describe_error

log = logging.getLogger(__name__)

MAX_LISTED = 300  # entries in the model dialog's list of a datasource's databases or tables

__all__ = ["BrokerDialog", "DatasourceDialog", "ModelDialog", "ObjectDialog", "RouteDialog", "describe_error"]


class _TestableDialog(ObjectDialog):
    """Datasource and broker dialogs: a kind, a secret and a connection test."""

    kinds: tuple[str, ...] = ()

    def __init__(self, home: Home, name: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(home, name, parent)
        current = self.existing().get(name) if name else None
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(list(self.kinds))
        if current is not None:
            self.kind_combo.setCurrentText(current.kind)
        self.add_row("kind", "Kind", self.kind_combo, first=True)
        self.add_secret_row(current.secret if current is not None else None)
        if current is not None and current.secret is not None:
            self.check_stored_secret(current.secret)
        self.test = ConnectionTestRow()
        self.extra.addWidget(self.test)
        self.test.button.clicked.connect(self.start_test)
        self.test.cancel.clicked.connect(self.cancel_test)
        self.kind_combo.currentTextChanged.connect(lambda _k: self.set_schema(self.schema_of(self.kind)))
        assert self.secret is not None
        self.secret.changed.connect(self.test.clear)  # a result says nothing about other values
        self.set_schema(self.schema_of(self.kind), current.settings if current is not None else None)

    def set_schema(self, schema: Schema, values: dict[str, Any] | None = None) -> None:
        """The kind's form, its URL placeholder following the kind; a new kind or an edit of
        a field clears the last test's result."""
        super().set_schema(schema, values)
        assert self.form is not None
        url = self.form.editors.get("url")
        if url is not None and self.kind in URL_PLACEHOLDERS:
            url.placeholder(URL_PLACEHOLDERS[self.kind])
        self.form.changed.connect(self.test.clear)
        self.test.clear()

    @property
    def kind(self) -> str:
        return self.kind_combo.currentText()

    def candidate(self) -> DatasourceConfig | BrokerConfig:
        raise NotImplementedError

    def store(self, secret_ref: SecretRef | None = None) -> None:
        """Add or replace the object; a ``secret_ref`` from the keyring (stored off the loop by
        :meth:`save`) is taken as it is, otherwise the typed secret is stored here."""
        assert self.form is not None and self.secret is not None
        self.add(
            self.name,
            self.kind,
            self.form.values(),
            secret=None if secret_ref is not None else self.secret.value(),
            secret_ref=secret_ref,
            replace=self.editing,
        )
        if self.editing and self.secret.remove_requested:
            self.home.set_secret(self.object_type, self.name, None, delete_stored=secret_ref is None)

    def add(
        self,
        name: str,
        kind: str,
        settings: dict[str, Any],
        *,
        secret: str | None,
        secret_ref: SecretRef | None,
        replace: bool,
    ) -> object:
        """``Home.add_datasource`` or ``Home.add_broker``."""
        raise NotImplementedError

    # -- saving: the keyring off the loop ---------------------------------------------------
    def save(self) -> None:
        """Save; a secret to store or delete goes to the keyring off the loop (a keyring may
        block on D-Bus), after every other check passed on it."""
        assert self.secret is not None
        touches_keyring = self.secret.value() is not None or (self.editing and self.secret.remove_requested)
        if touches_keyring and self.revalidate():
            try:
                self.tasks.start("save", self._save_off_loop())
            except RuntimeError:  # no running loop (a script, a test without one): nothing to block
                pass
            else:
                self.save_button.setEnabled(False)
                return
        super().save()

    async def _save_off_loop(self) -> None:
        assert self.secret is not None
        secret = None if self.secret.remove_requested else self.secret.value()
        old = self.existing().get(self.name) if self.editing else None
        loop = asyncio.get_running_loop()
        try:
            self.home.check_put(self.candidate(), has_secret=secret is not None, replace=self.editing)
            ref = None
            if secret is not None:
                ref = await loop.run_in_executor(
                    None, self.home.keep_secret, self.object_type, self.name, secret
                )
            elif old is not None and old.secret is not None:
                await loop.run_in_executor(None, delete_secret, old.secret)
                ref = old.secret  # deleted; store() drops the reference without the keyring
            self.store(secret_ref=ref)
        except EventDeskError as exc:
            self.show_error(exc)
            return
        self.saved.emit(self.name)
        self.accept()

    def schema_of(self, kind: str) -> Schema:
        raise NotImplementedError

    def stored_ref(self) -> SecretRef | None:
        current = self.existing().get(self.name) if self.editing else None
        return None if current is None else current.secret

    def check_stored_secret(self, ref: SecretRef) -> None:
        """Find out whether the stored secret can be had, off the loop (keyring calls block)."""
        label = f"{self.object_type} {self.name!r}"
        try:
            self.tasks.start("secret_check", self._check_stored_secret(ref, label))
        except RuntimeError:  # no running loop (a script, a test without one): nothing to block
            assert self.secret is not None
            self.secret.show_check(secret_problem(ref, label))

    async def _check_stored_secret(self, ref: SecretRef, label: str) -> None:
        problem = await asyncio.get_running_loop().run_in_executor(None, secret_problem, ref, label)
        assert self.secret is not None
        self.secret.show_check(problem)

    async def secret_for_test(self) -> str | None:
        assert self.secret is not None
        typed = self.secret.value()
        if typed is not None:
            return typed
        ref = self.stored_ref()
        if ref is None or self.secret.remove_requested:
            return None
        loop = asyncio.get_running_loop()  # keyring back-ends may talk D-Bus: keep it off the loop
        return await loop.run_in_executor(None, resolve_secret, ref, f"{self.object_type} {self.name!r}")

    def start_test(self) -> None:
        self.test.testing()
        self.tasks.start("test", self._run_test())

    def cancel_test(self) -> None:
        self.tasks.cancel("test")
        self.test.finished(None, "Test cancelled.")

    def shows_saved_object(self) -> bool:
        """Whether the form holds the saved object unchanged (no new secret typed either)."""
        assert self.form is not None and self.secret is not None
        current = self.existing().get(self.name) if self.editing else None
        return (
            current is not None
            and self.name not in self.home.workspace.invalid_of(self.object_type)
            and current.kind == self.kind
            and current.settings == self.form.values()
            and self.secret.value() is None
            and not self.secret.remove_requested
        )

    async def _run_test(self) -> None:
        try:
            async with asyncio.timeout(TEST_TIMEOUT):
                if self.shows_saved_object():  # the saved object: tested as the tree and `eventdesk test` do
                    summary = await check_connection(self.home.workspace, self.object_type, self.name)
                else:
                    summary = await self.run_test()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the exact error is the point of a test
            self.test.finished(False, self.describe(exc))
        else:
            self.test.finished(True, summary or "Connected.")

    async def run_test(self) -> str:
        raise NotImplementedError


class DatasourceDialog(_TestableDialog):
    object_type = "datasource"

    def __init__(self, home: Home, name: str | None = None, parent: QWidget | None = None) -> None:
        self.kinds = connector_kinds()
        super().__init__(home, name, parent)

    def existing(self) -> dict[str, Any]:
        return self.home.workspace.stored("datasource")

    def schema_of(self, kind: str) -> Schema:
        return connector_class(kind).datasource_schema

    def candidate(self) -> DatasourceConfig:
        assert self.form is not None
        return DatasourceConfig(self.name, self.kind, self.form.values())

    def add(self, name: str, kind: str, settings: dict[str, Any], **secret_and_replace: Any) -> object:
        return self.home.add_datasource(name, kind, settings, **secret_and_replace)

    async def run_test(self) -> str:
        assert self.form is not None
        cfg = Workspace.validate_datasource(
            DatasourceConfig(self.name or "unsaved", self.kind, self.form.values())
        )
        secret = await self.secret_for_test()
        return await connector_class(self.kind).test_connection(cfg, secret)


class BrokerDialog(_TestableDialog):
    object_type = "broker"

    def __init__(self, home: Home, name: str | None = None, parent: QWidget | None = None) -> None:
        # An external MQTT broker first: the built-in one (kind local) comes with the demo.
        self.kinds = tuple(sorted(broker_kinds(), key=lambda kind: kind != "mqtt"))
        super().__init__(home, name, parent)

    def existing(self) -> dict[str, Any]:
        return self.home.workspace.stored("broker")

    def schema_of(self, kind: str) -> Schema:
        return broker_class(kind).schema

    def candidate(self) -> BrokerConfig:
        assert self.form is not None
        return BrokerConfig(self.name, self.kind, self.form.values())

    def add(self, name: str, kind: str, settings: dict[str, Any], **secret_and_replace: Any) -> object:
        return self.home.add_broker(name, kind, settings, **secret_and_replace)

    async def run_test(self) -> str:
        assert self.form is not None
        cfg = Workspace.validate_broker(BrokerConfig(self.name or "unsaved", self.kind, self.form.values()))
        secret = await self.secret_for_test()
        return await broker_class(self.kind).test_connection(cfg, secret)


class ModelDialog(ObjectDialog):
    """A model: a datasource and that kind's model settings; the database defaults to the name."""

    object_type = "model"

    def __init__(
        self,
        home: Home,
        name: str | None = None,
        parent: QWidget | None = None,
        *,
        datasource: str | None = None,
    ) -> None:
        super().__init__(home, name, parent)
        current = home.workspace.stored("model").get(name) if name else None
        self.ds_combo = QComboBox()
        self.ds_combo.addItems(sorted(home.workspace.datasources))
        if current is not None:
            self.ds_combo.setCurrentText(current.datasource)
        elif datasource:
            self.ds_combo.setCurrentText(datasource)
        self.add_row("datasource", "Datasource", self.ds_combo)
        # "List tables…" / "List databases…": what the datasource holds, to pick from.
        self.browse_button = QPushButton("List…")
        self.browse_button.setObjectName("browse_sources")
        self.browse_status = QLabel()
        self.browse_status.setObjectName("browse_status")
        self.browse_status.setWordWrap(True)
        self.browse_menu = QMenu(self)
        self.browse_menu.triggered.connect(self._source_chosen)
        self.browse_button.clicked.connect(self.browse_sources)
        browse_row = QHBoxLayout()
        browse_row.addWidget(self.browse_button)
        browse_row.addWidget(self.browse_status, 1)
        self.extra.addLayout(browse_row)
        self._auto_database = current is None
        self._last_name = self.name
        self._kind = ""
        self.ds_combo.currentTextChanged.connect(self._datasource_changed)
        self.name_edit.textChanged.connect(self._name_changed)
        self._datasource_changed(self.ds_combo.currentText(), current.settings if current else None)

    def existing(self) -> dict[str, Any]:
        return self.home.workspace.stored("model")

    def _datasource_changed(self, ds_name: str, values: dict[str, Any] | None = None) -> None:
        ds = self.home.workspace.datasources.get(ds_name)
        kind = ds.kind if ds is not None else ""
        if ds is None:
            self.revalidate()
            return
        field = connector_class(kind).source_field
        self.browse_button.setVisible(field is not None)
        self.browse_button.setText(f"List {field}s…" if field else "List…")
        self.browse_status.setText("")
        if kind != self._kind or values is not None:
            self._kind = kind
            self.set_schema(connector_class(kind).model_schema, values)
            if self.form is not None and "database" in self.form.editors:
                self.form.editors["database"].changed.connect(self._database_edited)
        self.revalidate()

    # -- what the datasource holds, to pick from ------------------------------------------
    def browse_sources(self) -> None:
        self.browse_button.setEnabled(False)
        self.browse_status.setText("Asking the datasource…")
        self.tasks.start("browse", self._browse(self.ds_combo.currentText()))

    async def _browse(self, datasource: str) -> None:
        try:
            found = await list_sources(self.home.workspace, datasource)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reason is the point: shown where the user looks
            self.browse_status.setText(f"✘ {describe_error(exc)}")
            return
        finally:
            self.browse_button.setEnabled(True)
        self.browse_menu.clear()
        for entry in found[:MAX_LISTED]:
            self.browse_menu.addAction(entry)
        more = f" (the first {MAX_LISTED} in the menu; type the others)" if len(found) > MAX_LISTED else ""
        self.browse_status.setText(f"{len(found)} found{more}" if found else "none found")
        if found:
            self.browse_menu.popup(self.browse_button.mapToGlobal(self.browse_button.rect().bottomLeft()))

    def _source_chosen(self, action: QAction) -> None:
        field = connector_class(self._kind).source_field if self._kind else None
        if field is None or self.form is None or field not in self.form.editors:
            return
        value = action.text().split(" (", 1)[0]  # "public.t (no primary key)": the name alone
        self.form.editors[field].set_value(value)
        if field == "database":
            self._auto_database = value == self.name
        self.revalidate()

    def _name_changed(self, _text: str) -> None:
        if self._auto_database and self.form is not None and "database" in self.form.editors:
            editor = self.form.editors["database"]
            editor.blockSignals(True)
            editor.set_value(self.name)
            editor.blockSignals(False)
            self.revalidate()
        self._last_name = self.name

    def _database_edited(self) -> None:
        if self.form is not None:
            self._auto_database = self.form.editors["database"].value() in ("", self.name)

    def problems(self) -> dict[str, str]:
        found = super().problems()
        if not self.ds_combo.currentText():
            found["datasource"] = "add a datasource first"
        return found

    def store(self) -> None:
        assert self.form is not None
        self.home.add_model(self.name, self.ds_combo.currentText(), self.form.values(), replace=self.editing)


class RouteDialog(ObjectDialog):
    """Republish a model to a broker; the topic template is checked as the CLI checks it."""

    object_type = "route"
    brokerAdded = Signal(str)

    def __init__(
        self,
        home: Home,
        name: str | None = None,
        parent: QWidget | None = None,
        *,
        model: str | None = None,
    ) -> None:
        super().__init__(home, name, parent)
        current = home.workspace.stored("route").get(name) if name else None
        self.fixed_model = model is not None
        self.model_combo = QComboBox()
        self.model_combo.addItems(sorted(home.workspace.models))
        self.model_combo.setCurrentText(current.model if current else (model or ""))
        self.model_combo.setEnabled(not self.fixed_model and current is None)
        self.add_row("model", "Model", self.model_combo)
        broker_row = QWidget()
        hb = QHBoxLayout(broker_row)
        hb.setContentsMargins(0, 0, 0, 0)
        self.broker_combo = QComboBox()
        self.broker_combo.addItems(sorted(home.workspace.brokers))
        if current is not None:
            self.broker_combo.setCurrentText(current.broker)
        self.new_broker = QPushButton("New broker…")
        self.new_broker.clicked.connect(self.open_new_broker)
        hb.addWidget(self.broker_combo, 1)
        hb.addWidget(self.new_broker)
        row = self.add_row("broker", "Broker", broker_row)
        row.input = self.broker_combo  # the red border goes on the combo
        self.broker_dialog: BrokerDialog | None = None
        self._auto_name = current is None and not name
        if self.fixed_model:
            self.setWindowTitle(f"Republish {model}")
        self.set_schema(ROUTE_SCHEMA, current.settings if current else None)
        self.format_examples = format_examples_label()
        self.extra.addWidget(self.format_examples)
        self.model_combo.currentTextChanged.connect(self._targets_changed)
        self.broker_combo.currentTextChanged.connect(self._targets_changed)
        self.name_edit.textEdited.connect(self._name_edited)
        self._targets_changed()

    def existing(self) -> dict[str, Any]:
        return self.home.workspace.stored("route")

    def _name_edited(self, _text: str) -> None:
        self._auto_name = False

    def _targets_changed(self, _text: str = "") -> None:
        if self._auto_name and self.model_combo.currentText() and self.broker_combo.currentText():
            self.name_edit.setText(f"{self.model_combo.currentText()}-to-{self.broker_combo.currentText()}")
        self.revalidate()

    def open_new_broker(self) -> None:
        dialog = BrokerDialog(self.home, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.saved.connect(self._broker_added)
        self.broker_dialog = dialog
        dialog.open()

    def _broker_added(self, name: str) -> None:
        self.broker_combo.blockSignals(True)
        self.broker_combo.clear()
        self.broker_combo.addItems(sorted(self.home.workspace.brokers))
        self.broker_combo.blockSignals(False)
        self.broker_combo.setCurrentText(name)
        self.brokerAdded.emit(name)
        self._targets_changed()

    def config(self) -> RouteConfig:
        assert self.form is not None
        return RouteConfig(
            self.name, self.model_combo.currentText(), self.broker_combo.currentText(), self.form.values()
        )

    def problems(self) -> dict[str, str]:
        found = super().problems()
        if not self.model_combo.currentText():
            found["model"] = "add a model first"
        if not self.broker_combo.currentText():
            found["broker"] = "add a broker first (New broker…)"
        return found

    def revalidate(self) -> bool:
        if self.form is not None:
            self.form.clear_reported()
        ok = super().revalidate()
        if not ok or self.form is None:
            return ok
        try:  # what the CLI checks: names exist, settings coerce, the topic template publishes
            self.home.workspace.validate_route(self.config())
        except ConfigError as exc:
            self.show_error(exc)
            return False
        return True

    def store(self) -> None:
        cfg = self.config()
        self.home.add_route(cfg.name, cfg.model, cfg.broker, cfg.settings, replace=self.editing)
