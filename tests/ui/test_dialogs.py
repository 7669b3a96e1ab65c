"""Add/edit dialogs: generated forms, inline errors, secrets straight to the keyring."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from eventdesk.connectors.cloudant import CloudantConnector
from eventdesk.core import connection_test
from eventdesk.core.errors import ConnectorError
from eventdesk.core.home import Home
from eventdesk.core.secrets import NO_BACKEND_HELP, account_for
from eventdesk.core.workspace import DatasourceConfig, ModelConfig
from eventdesk.ui import object_dialogs
from eventdesk.ui.object_dialogs import BrokerDialog, DatasourceDialog, ModelDialog, RouteDialog
from eventdesk.ui.secret_dialog import SecretDialog
from tests.ui.conftest_main import home_fixture, qloop_fixture  # noqa: F401 - fixtures

SECRET = "s3cr3t-Pa55word!"


def fill_datasource(dialog: DatasourceDialog, name: str, url: str, secret: str | None = None) -> None:
    assert dialog.form is not None and dialog.secret is not None
    dialog.name_edit.setText(name)
    dialog.kind_combo.setCurrentText("cloudant")
    url_edit = dialog.form.widget("url")
    assert isinstance(url_edit, QLineEdit)
    url_edit.setText(url)
    dialog.form.editors["auth"].set_value("basic")
    dialog.form.editors["username"].set_value("admin")
    if secret is not None:
        dialog.secret.input.setText(secret)


def texts(dialog: Any) -> list[str]:
    return [w.text() for w in dialog.findChildren(QLineEdit)]


def stored_account(home: Home, datasource: str) -> str:
    ref = home.workspace.datasource(datasource).secret
    assert ref is not None and ref.store == "keyring"
    return ref.name


def test_datasource_dialog_stores_secret_in_keyring_not_in_file(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.save_button.isEnabled()
    assert dialog.secret is not None
    assert dialog.secret.input.echoMode() == QLineEdit.EchoMode.Password
    fill_datasource(dialog, "prod", "not a url", SECRET)
    assert not dialog.save_button.isEnabled()
    assert "not a URL" in dialog.form.editors["url"].error.text()  # type: ignore[union-attr]
    fill_datasource(dialog, "prod", "https://db.example.com", SECRET)
    assert dialog.save_button.isEnabled()
    with qtbot.waitSignal(dialog.saved) as blocker:
        dialog.save_button.click()
    assert blocker.args == ["prod"]
    account = account_for(home.workspace.workspace_id, "datasource", "prod")
    assert keyring.get_password("eventdesk", account) == SECRET
    text = home.paths.workspace_file.read_text()
    assert SECRET not in text
    assert f'"keyring": "{account}"' in text
    assert home.workspace.datasource("prod").settings["url"] == "https://db.example.com"


def test_show_toggle_reveals_what_was_typed(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    assert dialog.secret is not None
    field = dialog.secret.input
    field.reveal.trigger()
    assert field.echoMode() == QLineEdit.EchoMode.Normal
    field.reveal.trigger()
    assert field.echoMode() == QLineEdit.EchoMode.Password


def test_duplicate_name_is_shown_next_to_the_name(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://a.example.com"})
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    fill_datasource(dialog, "prod", "https://b.example.com")
    assert not dialog.save_button.isEnabled()
    row = dialog.row("name")
    assert row.error.isVisible()
    assert row.error.text() == "Name: a datasource with this name already exists"


def test_error_from_home_lands_on_its_field(qtbot: QtBot, home: Home) -> None:
    keyring.set_keyring(fail.Keyring())
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    fill_datasource(dialog, "prod", "https://db.example.com")
    dialog.secret.usable = True  # type: ignore[union-attr]  # pretend, to reach Home's refusal
    dialog.secret.input.setEnabled(True)  # type: ignore[union-attr]
    dialog.secret.input.setText(SECRET)  # type: ignore[union-attr]
    dialog.save_button.click()
    assert dialog.isVisible()  # not closed: the error is shown instead
    assert dialog.secret is not None
    assert dialog.secret.error.isVisible()
    assert "no usable OS keyring backend" in dialog.secret.error.text()
    assert "prod" not in home.workspace.datasources


def test_edit_dialog_never_shows_the_secret(qtbot: QtBot, home: Home) -> None:
    home.add_datasource(
        "prod", "cloudant", {"url": "https://db.example.com", "auth": "basic", "username": "u"}, secret=SECRET
    )
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.secret is not None
    assert SECRET not in texts(dialog)
    assert not dialog.secret.input.isVisible()
    assert dialog.secret.status.text() == "Secret: set"
    assert dialog.secret.replace_button.isVisible() and dialog.secret.remove_button.isVisible()
    assert dialog.name_edit.isReadOnly()
    # Replace… offers an empty masked field
    dialog.secret.replace_button.click()
    assert dialog.secret.input.isVisible() and dialog.secret.input.text() == ""
    dialog.secret.input.setText("new-one")
    dialog.save_button.click()
    assert keyring.get_password("eventdesk", stored_account(home, "prod")) == "new-one"


@pytest.mark.usefixtures("qloop")
def test_edit_dialog_says_set_only_when_the_keyring_holds_the_secret(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"}, secret=SECRET)
    home.add_datasource("gone", "cloudant", {"url": "https://db.example.com"}, secret=SECRET)
    keyring.delete_password("eventdesk", stored_account(home, "gone"))
    here, gone = DatasourceDialog(home, "prod"), DatasourceDialog(home, "gone")
    for dialog in (here, gone):
        qtbot.addWidget(dialog)
        dialog.show()
    assert here.secret is not None and gone.secret is not None
    assert here.secret.status.text() == "Secret: checking…"  # the keyring is asked off the loop
    qtbot.waitUntil(lambda: here.secret.checked and gone.secret.checked)  # type: ignore[union-attr]
    assert here.secret.status.text() == "Secret: set" and not here.secret.input.isVisible()
    assert gone.secret.status.text() == "Secret: missing (no secret stored in the keyring; set it again)"
    assert gone.secret.input.isVisible()  # typed in again right here
    gone.secret.input.setText("found-again")
    with qtbot.waitSignal(gone.saved):  # the keyring is written off the loop
        gone.save_button.click()
    assert keyring.get_password("eventdesk", stored_account(home, "gone")) == "found-again"


@pytest.mark.usefixtures("qloop")
def test_edit_dialog_reports_a_missing_environment_variable(
    qtbot: QtBot, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"}, secret_env="PROD_PW")
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.secret.checked)  # type: ignore[union-attr]
    assert dialog.secret is not None
    assert dialog.secret.status.text() == "Secret: missing (environment variable PROD_PW is not set)"
    monkeypatch.setenv("PROD_PW", "from-env")
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.secret.checked)  # type: ignore[union-attr]
    assert dialog.secret.status.text() == "Secret: from environment variable PROD_PW"


def test_edit_dialog_remove_deletes_the_secret(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"}, secret=SECRET)
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.secret is not None
    dialog.secret.remove_button.click()
    assert "removed" in dialog.secret.status.text()
    dialog.save_button.click()
    assert (
        keyring.get_password("eventdesk", account_for(home.workspace.workspace_id, "datasource", "prod"))
        is None
    )
    assert home.workspace.datasource("prod").secret is None


def test_no_keyring_backend_says_so(qtbot: QtBot, home: Home) -> None:
    keyring.set_keyring(fail.Keyring())
    dialog = BrokerDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.secret is not None
    assert dialog.secret.help.isVisible()
    assert dialog.secret.help.text() == NO_BACKEND_HELP
    assert not dialog.secret.input.isEnabled()
    secret_dialog = SecretDialog(home, "broker", "b")
    qtbot.addWidget(secret_dialog)
    secret_dialog.show()
    assert secret_dialog.field.help.isVisible()


def test_secret_dialog_stores_straight_to_keyring(qtbot: QtBot, home: Home) -> None:
    home.add_broker("local", "mqtt", {"url": "mqtt://localhost:1883"})
    dialog = SecretDialog(home, "broker", "local")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.field.input.setText(SECRET)
    dialog.save()
    assert (
        keyring.get_password("eventdesk", account_for(home.workspace.workspace_id, "broker", "local"))
        == SECRET
    )
    assert SECRET not in home.paths.workspace_file.read_text()


def test_broker_dialog_kind_and_form(qtbot: QtBot, home: Home) -> None:
    dialog = BrokerDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.kind == "mqtt"
    assert dialog.form is not None and "keepalive" in dialog.form.editors
    assert dialog.secret is not None and dialog.secret_label.text() == "Password:"
    dialog.name_edit.setText("local")
    dialog.form.editors["url"].set_value("http://localhost")
    assert "scheme must be one of mqtt, mqtts" in dialog.form.errors()["url"]
    dialog.form.editors["url"].set_value("mqtt://localhost:1883")
    assert dialog.save_button.isEnabled()
    dialog.save_button.click()
    assert home.workspace.broker("local").settings["url"] == "mqtt://localhost:1883"


def test_model_dialog_defaults_database_to_name(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"})
    dialog = ModelDialog(home, datasource="prod")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.form is not None
    dialog.name_edit.setText("accounts")
    assert dialog.form.values()["database"] == "accounts"
    assert dialog.save_button.isEnabled()
    dialog.save_button.click()
    assert home.workspace.model("accounts").settings["database"] == "accounts"
    # an explicit database wins over the name
    other = ModelDialog(home, datasource="prod")
    qtbot.addWidget(other)
    assert other.form is not None
    other.name_edit.setText("orders")
    other.form.editors["database"].set_value("orders-2026")
    other.form.editors["database"].changed.emit()
    other.name_edit.setText("orders2")
    assert other.form.values()["database"] == "orders-2026"


def test_model_dialog_without_datasource_cannot_save(qtbot: QtBot, home: Home) -> None:
    dialog = ModelDialog(home)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("m")
    assert not dialog.save_button.isEnabled()


@pytest.fixture
def route_home(home: Home) -> Home:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"})
    home.add_model("accounts", "prod", {"database": "accounts"})
    home.add_broker("local", "mqtt", {"url": "mqtt://localhost:1883"})
    return home


def test_route_dialog_checks_topic_like_the_cli(qtbot: QtBot, route_home: Home) -> None:
    dialog = RouteDialog(route_home, model="accounts")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.name == "accounts-to-local"
    assert dialog.form is not None
    assert dialog.save_button.isEnabled()
    dialog.form.editors["topic"].set_value("events/#")
    dialog.revalidate()
    assert not dialog.save_button.isEnabled()
    assert "wildcards" in dialog.form.editors["topic"].error.text()
    dialog.form.editors["topic"].set_value("events/{nope}")
    dialog.form.editors["topic"].changed.emit()
    assert "unknown placeholder {nope}" in dialog.form.errors()["topic"]
    dialog.form.editors["topic"].set_value("events/{model}/{op}")
    dialog.form.editors["topic"].changed.emit()
    assert dialog.save_button.isEnabled()
    dialog.form.editors["qos"].set_value(0)
    dialog.save_button.click()
    route = route_home.workspace.route("accounts-to-local")
    assert route.settings["topic"] == "events/{model}/{op}"
    assert route.settings["qos"] == 0


def test_route_dialog_can_create_a_broker(qtbot: QtBot, route_home: Home) -> None:
    dialog = RouteDialog(route_home, model="accounts")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.new_broker.click()
    broker = dialog.broker_dialog
    assert broker is not None and broker.isVisible()
    broker.name_edit.setText("other")
    assert broker.form is not None
    broker.form.editors["url"].set_value("mqtt://other:1883")
    broker.form.validate()
    broker.revalidate()
    with qtbot.waitSignal(dialog.brokerAdded):
        broker.save_button.click()
    assert dialog.broker_combo.currentText() == "other"
    assert dialog.name == "accounts-to-other"


class FakeConnector(CloudantConnector):
    """Only test_connection differs: answers, fails or hangs on demand."""

    mode: ClassVar[str] = "ok"
    seen: ClassVar[list[tuple[str, str | None]]] = []

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        cls.seen.append((datasource.settings["url"], secret))
        if cls.mode == "fail":
            raise ConnectorError(
                "HTTP 401: name or password is incorrect", obj=datasource.label, field="secret"
            )
        if cls.mode == "hang":
            await asyncio.sleep(3600)
        return "CouchDB 3.3.3, 2 databases"


@pytest.fixture
def fake_connector(monkeypatch: pytest.MonkeyPatch) -> type[FakeConnector]:
    FakeConnector.seen = []
    monkeypatch.setattr(object_dialogs, "connector_class", lambda kind: FakeConnector)
    # A saved object shown unchanged is tested as the tree and `eventdesk test` test it.
    monkeypatch.setattr(connection_test, "connector_class", lambda kind: FakeConnector)
    return FakeConnector


@pytest.mark.usefixtures("qloop")
def test_test_connection_reports_success_and_exact_error(
    qtbot: QtBot, home: Home, fake_connector: type[FakeConnector]
) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"}, secret=SECRET)
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    dialog.show()
    fake_connector.mode = "ok"
    dialog.test.button.click()
    assert dialog.test.result.text() == "Testing…"
    assert dialog.test.busy.isVisible() and dialog.test.cancel.isVisible()
    qtbot.waitUntil(lambda: "CouchDB" in dialog.test.result.text())
    assert dialog.test.result.text() == "✔ CouchDB 3.3.3, 2 databases"
    assert fake_connector.seen == [("https://db.example.com", SECRET)]  # the stored secret, resolved
    fake_connector.mode = "fail"
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✘"))
    assert dialog.test.result.text() == (
        "✘ datasource 'prod': Password / API key: HTTP 401: name or password is incorrect"
    )
    assert dialog.test.button.isEnabled() and not dialog.test.busy.isVisible()


@pytest.mark.usefixtures("qloop")
def test_an_unchanged_saved_datasource_is_tested_as_saved_an_edited_one_as_shown(
    qtbot: QtBot, home: Home, fake_connector: type[FakeConnector], monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[tuple[str, str]] = []
    real = connection_test.check_connection

    async def spy(workspace: Any, kind: str, name: str, timeout: float = 30.0) -> str:
        saved.append((kind, name))
        return await real(workspace, kind, name, timeout)

    monkeypatch.setattr(object_dialogs, "check_connection", spy)
    fake_connector.mode = "ok"
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"}, secret=SECRET)
    dialog = DatasourceDialog(home, "prod")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.shows_saved_object()
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text() != "Testing…")
    assert dialog.test.result.text() == "✔ CouchDB 3.3.3, 2 databases"
    assert saved == [("datasource", "prod")]
    assert fake_connector.seen == [("https://db.example.com", SECRET)]
    dialog.form.editors["url"].set_value("https://other.example.com")  # type: ignore[union-attr]
    assert not dialog.shows_saved_object()
    dialog.test.button.click()
    qtbot.waitUntil(lambda: len(fake_connector.seen) == 2)
    assert saved == [("datasource", "prod")]  # what the form shows, not what is saved
    assert fake_connector.seen[1] == ("https://other.example.com", SECRET)


@pytest.mark.usefixtures("qloop")
def test_test_connection_can_be_cancelled(
    qtbot: QtBot, home: Home, fake_connector: type[FakeConnector]
) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    fill_datasource(dialog, "prod", "https://db.example.com", "typed")
    fake_connector.mode = "hang"
    dialog.test.button.click()
    qtbot.waitUntil(lambda: bool(fake_connector.seen))
    assert fake_connector.seen == [("https://db.example.com", "typed")]
    assert dialog.tasks.running("test")
    dialog.test.cancel.click()
    assert dialog.test.result.text() == "Test cancelled."
    qtbot.waitUntil(lambda: not dialog.tasks.pending)
    assert dialog.test.button.isEnabled()


def test_an_unsigned_webhook_on_the_network_is_refused_next_to_the_secret(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.name_edit.setText("hooks")
    dialog.kind_combo.setCurrentText("webhook")
    assert dialog.form is not None and dialog.secret is not None
    assert "allow_unsigned" in dialog.form.editors  # the explicit way out is in the form
    dialog.form.editors["host"].set_value("0.0.0.0")
    dialog.save_button.click()
    assert dialog.isVisible() and "hooks" not in home.workspace.datasources
    assert dialog.secret.error.isVisible()
    assert "no shared secret is set, and host 0.0.0.0" in dialog.secret.error.text()
    dialog.form.editors["allow_unsigned"].set_value(True)
    dialog.save_button.click()
    assert home.workspace.datasource("hooks").settings["allow_unsigned"] is True


@pytest.mark.usefixtures("qloop")
def test_saving_a_secret_touches_the_keyring_off_the_loop(
    qtbot: QtBot, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    backend = keyring.get_keyring()
    threads: list[str] = []
    real_set, real_delete = backend.set_password, backend.delete_password

    def set_password(service: str, account: str, password: str) -> None:
        threads.append(threading.current_thread().name)
        real_set(service, account, password)

    def delete_password(service: str, account: str) -> None:
        threads.append(threading.current_thread().name)
        real_delete(service, account)

    monkeypatch.setattr(backend, "set_password", set_password)
    monkeypatch.setattr(backend, "delete_password", delete_password)
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    fill_datasource(dialog, "prod", "https://db.example.com", SECRET)
    with qtbot.waitSignal(dialog.saved, timeout=5000):
        dialog.save_button.click()
    account = stored_account(home, "prod")
    assert keyring.get_password("eventdesk", account) == SECRET
    # Removing it from the edit dialog deletes it off the loop too.
    edit = DatasourceDialog(home, "prod")
    qtbot.addWidget(edit)
    assert edit.secret is not None
    edit.secret.remove_button.click()
    with qtbot.waitSignal(edit.saved, timeout=5000):
        edit.save_button.click()
    assert home.workspace.datasource("prod").secret is None
    assert keyring.get_password("eventdesk", account) is None
    assert len(threads) == 2 and threading.main_thread().name not in threads, threads


@pytest.mark.usefixtures("qloop")
def test_a_name_taken_is_refused_before_the_keyring_is_touched(qtbot: QtBot, home: Home) -> None:
    home.add_datasource(
        "prod", "cloudant", {"url": "https://a.example.com", "auth": "basic", "username": "u"}, secret="first"
    )
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    fill_datasource(dialog, "prod", "https://db.example.com", "second")
    dialog.save_button.click()
    qtbot.waitUntil(lambda: "already exists" in dialog.row("name").error.text(), timeout=5000)
    assert keyring.get_password("eventdesk", stored_account(home, "prod")) == "first"
