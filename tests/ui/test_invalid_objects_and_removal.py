"""The app with bad input: an invalid object is shown marked and opens for editing; removing asks
first, listing exactly what goes (items 18 and 22)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMessageBox, QPlainTextEdit
from pytestqt.qtbot import QtBot

from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.object_dialogs import BrokerDialog, ModelDialog
from eventdesk.ui.workspace_tree import STATE_COLOURS, STATE_ROLE, WorkspaceTree
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)


def _with_invalid_model(home: Home) -> Home:
    """A workspace whose model 'accounts' has the selector `--selector '"str"'` used to store."""
    home.add_datasource("prod", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "prod", {"database": "accounts"})
    home.add_model("orders", "prod", {"database": "orders"})
    home.add_broker("local", "mqtt", {"url": "mqtt://127.0.0.1:1883"}, secret="broker-secret")
    home.add_route("out", "accounts", "local", {"topic": "t/{model}"})
    data = json.loads(home.paths.workspace_file.read_text())
    data["models"]["accounts"]["settings"]["selector"] = "str"
    data["brokers"]["local"]["settings"]["keepalive"] = "often"
    home.paths.workspace_file.write_text(json.dumps(data))
    home.reload()
    assert set(home.workspace.invalid) == {"model/accounts", "broker/local", "route/out"}
    return home


def test_the_tree_shows_an_invalid_object_marked_with_its_error(
    qtbot: QtBot, home: Home, tmp_path: Path
) -> None:
    _with_invalid_model(home)
    tree = WorkspaceTree()
    qtbot.addWidget(tree)
    tree.rebuild(home.workspace)
    tree.resize(420, 220)
    tree.show()
    assert tree.grab().save(str(tmp_path / "tree-with-invalid.png"))
    model = tree.tree_model
    item = model.item_of("model/accounts")
    assert item is not None and item.parent() is model.item_of("datasource/prod")
    route = model.item_of("route/out")
    assert route is not None and route.parent() is model.item_of("broker/local")
    assert item.data(STATE_ROLE) == "invalid"
    assert "model 'accounts': field 'selector': invalid JSON" in item.toolTip()
    status = model.status_item("model/accounts")
    assert status is not None and status.text() == "invalid"
    assert status.foreground().color() == QColor(STATE_COLOURS[State.ERROR])
    assert [a for a, _, _ in tree.actions_for("model/accounts")] == ["edit", "remove"]
    assert model.status_item("model/orders").text() != "invalid"  # type: ignore[union-attr]
    assert model.status_item("group/datasources").text() == "1"  # type: ignore[union-attr]
    assert model.status_item("group/brokers").text() == "1"  # type: ignore[union-attr]


def test_an_invalid_model_opens_with_its_stored_values_and_saving_fixes_it(qtbot: QtBot, home: Home) -> None:
    _with_invalid_model(home)
    dialog = ModelDialog(home, "accounts")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.form is not None
    selector = dialog.form.widget("selector")
    assert isinstance(selector, QPlainTextEdit) and selector.toPlainText() == "str"
    assert "invalid JSON" in dialog.form.editors["selector"].error.text()
    assert not dialog.save_button.isEnabled()
    dialog.form.editors["selector"].set_value('{"region": "Bangalore"}')
    dialog.form.validate()
    assert dialog.revalidate()
    dialog.save_button.click()
    assert home.workspace.model("accounts").settings["selector"] == {"region": "Bangalore"}
    assert set(home.workspace.invalid) == {"broker/local", "route/out"}


def test_an_invalid_broker_opens_and_saving_it_keeps_its_secret(qtbot: QtBot, home: Home) -> None:
    _with_invalid_model(home)
    dialog = BrokerDialog(home, "local")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.kind == "mqtt"
    assert dialog.form is not None and dialog.form.values()["url"] == "mqtt://127.0.0.1:1883"
    assert dialog.revalidate()  # the bad keepalive shows as the default
    dialog.save_button.click()
    assert home.workspace.broker("local").secret is not None
    assert home.workspace.broker("local").settings["keepalive"] == 30


@pytest.fixture
def window(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home
) -> Iterator[MainWindow]:
    made = MainWindow(home)
    made.show()
    yield made
    run(qtbot, made.shutdown())
    made.close()
    made.deleteLater()


def _confirm_box(qtbot: QtBot, window: MainWindow) -> QMessageBox:
    qtbot.waitUntil(lambda: window.confirm_box is not None and window.confirm_box.isVisible())
    assert window.confirm_box is not None
    return window.confirm_box


def test_removing_a_datasource_lists_exactly_what_goes_and_cancel_keeps_it(
    qtbot: QtBot, home: Home, window: MainWindow, tmp_path: Path
) -> None:
    home.add_datasource("prod", "couchdb", {"url": "http://127.0.0.1:5984"}, secret="s3cret")
    home.add_model("accounts", "prod", {"database": "accounts"})
    home.add_broker("local", "mqtt", {"url": "mqtt://127.0.0.1:1883"})
    home.add_route("out", "accounts", "local", {"topic": "t/{model}"})
    home.capture.append("accounts", [], "7-abc")
    window.workspace_changed()

    window.do_action("remove", "datasource", "prod")
    box = _confirm_box(qtbot, window)
    expected = [
        "route 'out' and its delivery position",
        "model 'accounts' and its checkpoint",
        "datasource 'prod'",
        "the secret of datasource 'prod' in the OS keyring",
    ]
    assert home.removal("datasource", "prod").describe() == expected
    listed = [line.removeprefix("\u2022 ") for line in box.text().splitlines() if line.startswith("\u2022")]
    assert listed == expected
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    assert box.grab().save(str(tmp_path / "remove-confirmation.png"))
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: window.confirm_box is None)
    assert set(Home.open().workspace.routes) == {"out"}

    window.do_action("remove", "datasource", "prod")
    _confirm_box(qtbot, window).button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: "prod" not in home.workspace.datasources)
    assert home.workspace.routes == {} and home.workspace.models == {}
    assert home.capture.checkpoint("accounts") is None


def test_an_invalid_object_can_be_removed_from_the_app(qtbot: QtBot, home: Home, window: MainWindow) -> None:
    _with_invalid_model(home)
    window.workspace_changed()
    assert window.tree.tree_model.item_of("model/accounts") is not None
    window.do_action("remove", "model", "accounts")
    box = _confirm_box(qtbot, window)
    assert "\u2022 route 'out'" in box.text()
    box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: "model/accounts" not in home.workspace.invalid)
    assert window.tree.tree_model.item_of("model/accounts") is None
    saved = json.loads(home.paths.workspace_file.read_text())
    assert "accounts" not in saved["models"] and saved["brokers"]["local"]["settings"]["keepalive"] == "often"


def test_the_app_shows_why_a_malformed_workspace_file_cannot_be_opened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "workspace.json").write_text('{"schema_version": 1, "datasources": "x"}')
    shot = tmp_path / "error.png"
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication, QMessageBox\n"
        "from eventdesk.ui import app as ui_app\n"
        "app = QApplication(sys.argv)\n"
        "def check():\n"
        "    boxes = [w for w in QApplication.topLevelWidgets() if w.isVisible() and isinstance(w, QMessageBox)]\n"
        f"    boxes[0].grab().save({str(shot)!r})\n"
        "    print('BOX', boxes[0].text(), flush=True)\n"
        "    boxes[0].button(QMessageBox.StandardButton.Ok).click()\n"
        "QTimer.singleShot(1500, check)\n"
        f"sys.exit(ui_app.run_app({str(home)!r}))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    message = f"workspace file {str(home / 'workspace.json')!r}: field 'datasources': expected a JSON object"
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"BOX {message}" in result.stdout
    assert f"eventdesk: error: {message}" in result.stderr
    assert shot.stat().st_size > 1000
