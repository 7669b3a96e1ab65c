"""The app's forms for the postgres kind (generated from its schemas): a datasource added with
its password in the keyring, never in the URL or the workspace file, its Test button against a
real cluster (a wrong password named, never shown), and a model on a table."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.core.secrets import account_for
from eventdesk.ui.object_dialogs import DatasourceDialog, ModelDialog
from tests.peers.postgres_server import PASSWORD, PostgresServer, running_postgres
from tests.ui.conftest_main import home_fixture, qloop_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        server.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        server.execute("GRANT SELECT ON orders TO pw_user")
        yield server


def fill(dialog: DatasourceDialog, url: str, secret: str) -> None:
    assert dialog.form is not None and dialog.secret is not None
    dialog.name_edit.setText("pg")
    dialog.kind_combo.setCurrentText("postgres")
    assert dialog.form is not None and dialog.secret is not None  # rebuilt for the kind
    url_edit = dialog.form.widget("url")
    assert isinstance(url_edit, QLineEdit)
    url_edit.setText(url)
    dialog.form.editors["sslmode"].set_value("disable")
    dialog.secret.input.setText(secret)


@pytest.mark.usefixtures("qloop")
def test_postgres_datasource_form_test_button_and_model_form(
    qtbot: QtBot, home: Home, pg: PostgresServer
) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    fill(dialog, pg.password_url().replace("pw_user@", "pw_user:inline@"), PASSWORD)
    assert dialog.form is not None
    assert not dialog.save_button.isEnabled()  # a password in the URL is refused
    assert "secret store" in dialog.form.editors["url"].error.text()  # type: ignore[union-attr]
    fill(dialog, pg.password_url(), "not-" + PASSWORD)
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✘"), timeout=20000)
    assert "datasource 'pg': Password: " in dialog.test.result.text()
    assert "not-" + PASSWORD not in dialog.test.result.text()
    fill(dialog, pg.password_url(), PASSWORD)
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✔"), timeout=20000)
    assert "PostgreSQL 15" in dialog.test.result.text() and "wal_level logical" in dialog.test.result.text()
    assert dialog.save_button.isEnabled()
    with qtbot.waitSignal(dialog.saved):
        dialog.save_button.click()
    account = account_for(home.workspace.workspace_id, "datasource", "pg")
    assert keyring.get_password("eventdesk", account) == PASSWORD
    assert PASSWORD not in home.paths.workspace_file.read_text()
    assert home.workspace.datasource("pg").settings["sslmode"] == "disable"

    model = ModelDialog(home, datasource="pg")
    qtbot.addWidget(model)
    model.show()
    assert model.form is not None
    model.name_edit.setText("orders")
    assert set(model.form.values()) >= {"table", "since", "row_filter"}
    model.form.editors["table"].set_value("public.orders")
    model.form.editors["table"].changed.emit()
    assert model.save_button.isEnabled()
    model.save_button.click()
    assert home.workspace.model("orders").settings["table"] == "public.orders"
