"""Runtime errors in banners (issue 16): fields named by their labels, and a model whose keyring
secret is missing gets an "Enter password…" button that opens its datasource's dialog and starts
the model again once the password is saved. Real pouchdb-server with an admin (basic auth really
checked), the tests' keyring backend."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import ConnectorError
from eventdesk.core.home import Home
from eventdesk.core.secrets import delete_secret
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.notifications import Banner
from eventdesk.ui.object_dialogs import DatasourceDialog
from tests.peers.servers import CouchServer, start_couch, stop_process
from tests.ui.conftest_desk import desk_fixture  # noqa: F401
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
)

pytestmark = pytest.mark.gui

ADMIN = "admin"
PASSWORD = "Banner-Pa55word-77aa"


@pytest.fixture(scope="module")
def secured_couch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CouchServer]:
    server = start_couch(tmp_path_factory.mktemp("banner-couch"))
    try:
        server.request("PUT", "/_config/admins/admin", json.dumps(PASSWORD).encode())
        server.request("PUT", "/accounts", auth=(ADMIN, PASSWORD))
        yield server
    finally:
        stop_process(server.proc)


def model_state(desk: MainWindow) -> State:
    return desk.runtime.state_of("model/accounts").state


def test_a_missing_keyring_secret_offers_enter_password_and_restarts_the_model(
    qtbot: QtBot, desk: MainWindow, home: Home, secured_couch: CouchServer
) -> None:
    ds = home.add_datasource(
        "couch", "couchdb", {"url": secured_couch.url, "auth": "basic", "username": ADMIN}, secret=PASSWORD
    )
    delete_secret(ds.secret)  # the keyring lost it (another machine, a wiped keyring)
    home.add_model("accounts", "couch", {"database": "accounts"})
    desk.workspace_changed()
    desk.start_model("accounts")
    qtbot.waitUntil(lambda: model_state(desk) is State.ERROR, timeout=10_000)
    banner = next(b for b in desk.notifications.banners if b.key == "model/accounts")
    assert isinstance(banner, Banner)
    text = banner.message.text() + banner.details.toPlainText()
    assert "Password / API key" in text and "field 'secret'" not in text  # by its label
    button = banner.action_buttons["enter_secret"]
    assert button.text() == "Enter password…" and button.isVisibleTo(banner)

    button.click()
    dialog = desk.last_dialog
    assert isinstance(dialog, DatasourceDialog) and dialog.secret is not None
    assert dialog.name == "couch"
    qtbot.waitUntil(lambda: dialog.secret is not None and dialog.secret.entering, timeout=5000)
    qtbot.keyClicks(dialog.secret.input, PASSWORD)
    qtbot.waitUntil(dialog.save_button.isEnabled, timeout=5000)
    dialog.save_button.click()
    qtbot.waitUntil(lambda: model_state(desk) is State.RUNNING, timeout=15_000)  # started again
    assert not [b for b in desk.notifications.banners if b.key == "model/accounts"]


def test_runtime_errors_name_fields_by_their_labels(qtbot: QtBot, desk: MainWindow, home: Home) -> None:
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:9"})
    desk.workspace_changed()
    error = ConnectorError("connection refused", obj="datasource 'couch'", field="url")
    desk.state_banners.show("model/accounts", StateChange(State.ERROR, error.describe()))
    banner = next(b for b in desk.notifications.banners if b.key == "model/accounts")
    assert banner.message.text() == "model accounts: datasource 'couch': URL: connection refused"
    assert "enter_secret" not in banner.action_buttons  # not a missing secret
