"""The desktop app end to end: real widgets, real pouchdb-server, real mosquitto, no fakes.

A user adds a datasource (its password typed into the masked field goes to the test keyring), a
model, starts it from the tree, sees documents arrive as rows, filters them, opens one and its
diff, switches republishing on and off, and stops. A wrong password shows on the tree and in a
banner, never in a modal dialog. Every item model of the window runs under the model tester while
all of this happens.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.event_detail import TAB_DIFF, TAB_TEXT, TAB_TREE
from eventdesk.ui.event_table import COL_KEY, COL_OP, EventRole
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.object_dialogs import BrokerDialog, DatasourceDialog, ModelDialog, RouteDialog
from eventdesk.ui.workspace_tree import STATE_ROLE
from tests.peers.servers import CouchServer, MqttBroker, Subscriber, start_couch, stop_process
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)

pytestmark = [pytest.mark.gui, pytest.mark.slow]

ADMIN = "admin"
PASSWORD = "Right-Pa55word-9c1e"
WRONG = "Wrong-Pa55word-51d0"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def secured_couch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CouchServer]:
    """A pouchdb-server of this module's own with an admin: basic auth is really checked."""
    server = start_couch(tmp_path_factory.mktemp("secured-couch"))
    try:
        server.request("PUT", "/_config/admins/admin", json.dumps(PASSWORD).encode())
        yield server
    finally:
        stop_process(server.proc)


def create_db(server: CouchServer, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    server.request("PUT", f"/{name}", auth=(ADMIN, PASSWORD))
    return name


def put(server: CouchServer, db: str, doc_id: str, body: dict[str, Any]) -> str:
    reply = json.loads(
        server.request("PUT", f"/{db}/{doc_id}", json.dumps(body).encode(), auth=(ADMIN, PASSWORD))
    )
    return str(reply["rev"])


@pytest.fixture
def window(
    qtbot: QtBot,
    qloop: asyncio.AbstractEventLoop,
    isolated_qsettings: Path,
    home: Home,
    request: pytest.FixtureRequest,
) -> Iterator[MainWindow]:
    """The main window, shown, with a Python model tester watching each of its item models."""
    win = MainWindow(home)
    testers = []
    for model in (win.table.model, win.tree.tree_model, win.detail.tree_model):
        tester = ModelTester(request.config)
        tester.check(model, force_py=True)  # asserts on every later change, not just once
        testers.append(tester)
    win.show()
    qtbot.waitExposed(win)
    yield win
    run(qtbot, win.shutdown(), timeout=10_000)
    assert not win.tasks.pending
    for tester in testers:
        # pytest-qt's ModelTester has no public way to stop checking (its fixture calls this).
        tester._cleanup()
    win.close()
    win.deleteLater()


# -- driving the widgets ---------------------------------------------------------------------------
def type_into(qtbot: QtBot, edit: QLineEdit, text: str) -> None:
    edit.clear()
    qtbot.keyClicks(edit, text)


def choose(combo: QComboBox, text: str) -> None:
    index = combo.findText(text)
    assert index >= 0, f"{text!r} not offered in {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(index)


def line_edit(dialog: Any, field: str) -> QLineEdit:
    widget = dialog.form.widget(field)
    assert isinstance(widget, QLineEdit), type(widget)
    return widget


def save(qtbot: QtBot, dialog: Any) -> None:
    assert dialog.save_button.isEnabled(), dialog.findChild(object, "error_general")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)


def tree_action(window: MainWindow, key: str, action_id: str) -> None:
    """Open the tree's context menu on ``key``'s node and trigger ``action_id`` from it."""
    tree = window.tree
    index = tree.tree_model.index_of(key)
    assert index.isValid(), f"no node {key}"
    tree.scrollTo(index)
    tree.setCurrentIndex(index)
    tree.customContextMenuRequested.emit(tree.visualRect(index).center())
    menu = tree.menu
    assert menu is not None
    action = menu.findChild(QAction, action_id)
    assert action is not None, f"{key} has no {action_id!r} in its menu"
    assert action.isEnabled(), f"{action_id!r} is disabled on {key}"
    action.trigger()
    menu.close()


def node_state(window: MainWindow, key: str) -> str:
    item = window.tree.tree_model.item_of(key)
    return str(item.data(STATE_ROLE)) if item is not None else ""


def node_tooltip(window: MainWindow, key: str) -> str:
    item = window.tree.tree_model.item_of(key)
    return item.toolTip() if item is not None else ""


def rows(window: MainWindow) -> list[tuple[str, str]]:
    """(key, op) of every row of the table, top to bottom, as displayed."""
    model = window.table.model
    return [
        (str(model.data(model.index(r, COL_KEY))), str(model.data(model.index(r, COL_OP))))
        for r in range(model.rowCount())
    ]


def add_datasource(qtbot: QtBot, window: MainWindow, server: CouchServer, password: str) -> None:
    window.empty_state.add_datasource.click()
    dialog = window.last_dialog
    assert isinstance(dialog, DatasourceDialog) and dialog.form is not None and dialog.secret is not None
    type_into(qtbot, dialog.name_edit, "couch")
    choose(dialog.kind_combo, "couchdb")
    type_into(qtbot, line_edit(dialog, "url"), server.url)
    auth = dialog.form.widget("auth")
    assert isinstance(auth, QComboBox)
    choose(auth, "basic")
    assert not dialog.save_button.isEnabled()  # basic needs a username
    type_into(qtbot, line_edit(dialog, "username"), ADMIN)
    assert dialog.secret.input.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(dialog.secret.input, password)
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: "datasource/couch" in window.tree.tree_model.keys)


def add_model(qtbot: QtBot, window: MainWindow, db: str) -> None:
    assert window.act_add_model.isEnabled()
    window.act_add_model.trigger()
    dialog = window.last_dialog
    assert isinstance(dialog, ModelDialog) and dialog.form is not None
    assert dialog.ds_combo.currentText() == "couch"
    type_into(qtbot, dialog.name_edit, db)
    assert dialog.form.values()["database"] == db  # the database defaults to the model's name
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: f"model/{db}" in window.tree.tree_model.keys)


# -- the tests -------------------------------------------------------------------------------------
def test_live_events_filter_detail_republish_and_stop(
    qtbot: QtBot,
    window: MainWindow,
    home: Home,
    secured_couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    server = secured_couch
    db = create_db(server, "accounts")
    assert window.showing_empty_state

    # a datasource through its dialog: the password goes to the keyring, not to the file
    add_datasource(qtbot, window, server, PASSWORD)
    assert keyring.get_password("eventdesk", f"{home.workspace.workspace_id}/datasource/couch") == PASSWORD
    assert PASSWORD not in home.paths.workspace_file.read_text()
    assert not window.showing_empty_state
    add_model(qtbot, window, db)

    # start from the tree; wait until it follows the feed
    tree_action(window, f"model/{db}", "start")
    qtbot.waitUntil(lambda: node_state(window, f"model/{db}") == "running", timeout=WAIT_MS)
    assert node_state(window, "datasource/couch") == "running"

    # documents created in the database arrive as rows, newest at the bottom
    revs: dict[str, str] = {}
    for i, region in enumerate(["Bangalore", "Pune", "Bangalore", "Pune"], start=1):
        revs[f"acct-{i}"] = put(server, db, f"acct-{i}", {"region": region, "balance": 100 * i})
    expected = [(f"acct-{i}", "created") for i in range(1, 5)]
    qtbot.waitUntil(lambda: rows(window) == expected, timeout=WAIT_MS)

    # free text filters what is shown and what arrives next
    type_into(qtbot, window.filter_bar.text_edit, "bangalore")
    qtbot.waitUntil(lambda: rows(window) == [("acct-1", "created"), ("acct-3", "created")])
    put(server, db, "acct-5", {"region": "Pune", "balance": 500})
    put(server, db, "acct-6", {"region": "Bangalore", "balance": 600})
    qtbot.waitUntil(lambda: [k for k, _ in rows(window)] == ["acct-1", "acct-3", "acct-6"], timeout=WAIT_MS)
    assert home.capture.count(db) == 6  # the filtered-out acct-5 is captured all the same
    window.filter_bar.text_edit.clear()
    qtbot.waitUntil(lambda: len(rows(window)) == 6)

    # JMESPath: an unfinished expression is an inline error and the table keeps its rows
    expression = window.filter_bar.expression_edit
    type_into(qtbot, expression, "payload.balance >")
    qtbot.waitUntil(lambda: window.filter_bar.error_label.isVisible())
    assert "JMESPath" in window.filter_bar.error_label.text()
    assert len(rows(window)) == 6
    qtbot.keyClicks(expression, " `300`")
    qtbot.waitUntil(lambda: [k for k, _ in rows(window)] == ["acct-4", "acct-5", "acct-6"])
    assert not window.filter_bar.error_label.isVisible()
    expression.clear()
    qtbot.waitUntil(lambda: len(rows(window)) == 6)

    # an update: select it and see the JSON tree, the text and the diff against the previous revision
    put(server, db, "acct-2", {"_rev": revs["acct-2"], "region": "Pune", "balance": 250, "vip": True})
    qtbot.waitUntil(lambda: rows(window)[-1:] == [("acct-2", "updated")], timeout=WAIT_MS)
    last = window.table.model.rowCount() - 1
    updated = window.table.model.data(window.table.model.index(last, 0), EventRole)
    window.detail.tabs.setCurrentIndex(TAB_TREE)
    window.table.table.selectRow(last)
    qtbot.waitUntil(lambda: window.detail.current_event == updated)
    tree = window.detail.tree_model
    shown = {
        str(tree.data(tree.index(r, 0))): (str(tree.data(tree.index(r, 1))), tree.path_of(tree.index(r, 0)))
        for r in range(tree.rowCount())
    }
    assert {"_id", "_rev", "region", "balance", "vip"} == set(shown)
    assert shown["balance"] == ("250", "payload.balance")
    assert shown["vip"][0] == "true"
    window.detail.tabs.setCurrentIndex(TAB_TEXT)
    assert json.loads(window.detail.text_shown())["balance"] == 250
    window.detail.tabs.setCurrentIndex(TAB_DIFF)
    diff = window.detail.diff_shown().splitlines()
    assert '-  "balance": 200,' in diff
    assert '+  "balance": 250,' in diff
    assert '+  "vip": true' in diff

    # Republish…: a route to a new broker, created from the route dialog; the subscriber gets events
    sub = subscriber(f"{unique_topic}/#")
    tree_action(window, f"model/{db}", "republish")
    route_dialog = window.last_dialog
    assert isinstance(route_dialog, RouteDialog) and route_dialog.form is not None
    assert not route_dialog.save_button.isEnabled()  # no broker yet
    qtbot.mouseClick(route_dialog.new_broker, Qt.MouseButton.LeftButton)
    broker_dialog = route_dialog.broker_dialog
    assert isinstance(broker_dialog, BrokerDialog) and broker_dialog.form is not None
    type_into(qtbot, broker_dialog.name_edit, "mosq")
    type_into(qtbot, line_edit(broker_dialog, "url"), mqtt_broker.url)
    save(qtbot, broker_dialog)
    qtbot.waitUntil(lambda: route_dialog.broker_combo.currentText() == "mosq")
    route = f"{db}-to-mosq"
    assert route_dialog.name == route
    type_into(qtbot, line_edit(route_dialog, "topic"), unique_topic + "/{model}/{key}")
    save(qtbot, route_dialog)
    qtbot.waitUntil(lambda: node_state(window, f"route/{route}") == "running", timeout=WAIT_MS)
    assert "republishing" in window.tree.tree_model.status_text(f"model/{db}")
    put(server, db, "acct-7", {"region": "Pune", "balance": 700})
    put(server, db, "acct-8", {"region": "Bangalore", "balance": 800})
    qtbot.waitUntil(lambda: len(sub.messages) == 2, timeout=WAIT_MS)
    assert [m.topic for m in sub.messages] == [f"{unique_topic}/{db}/acct-7", f"{unique_topic}/{db}/acct-8"]
    envelope = json.loads(sub.messages[0].payload)
    assert (envelope["model"], envelope["key"], envelope["op"]) == (db, "acct-7", "created")
    assert envelope["payload"]["balance"] == 700

    # toggled off: capture and the table go on, publishing stops
    tree_action(window, f"model/{db}", "unpublish")
    qtbot.waitUntil(lambda: not window.runtime.is_running("route", route))
    assert not home.workspace.route(route).enabled
    put(server, db, "acct-9", {"region": "Pune", "balance": 900})
    qtbot.waitUntil(lambda: rows(window)[-1:] == [("acct-9", "created")], timeout=WAIT_MS)
    assert len(sub.messages) == 2
    # toggled on again: the backlog since the route's position goes out first
    tree_action(window, f"model/{db}", "republish")
    again = window.last_dialog
    assert isinstance(again, RouteDialog) and again.name == route
    save(qtbot, again)
    qtbot.waitUntil(lambda: len(sub.messages) == 3, timeout=WAIT_MS)
    assert sub.messages[2].topic == f"{unique_topic}/{db}/acct-9"

    # stop: the click returns at once; the node goes stopping -> stopped
    seen: list[State] = []
    window.runtime.on_state(lambda key, change: seen.append(change.state) if key == f"model/{db}" else None)
    tree_action(window, f"model/{db}", "stop")
    assert node_state(window, f"model/{db}") == "running"  # nothing was awaited in the click
    qtbot.waitUntil(lambda: node_state(window, f"model/{db}") == "stopped", timeout=WAIT_MS)
    assert seen == [State.STOPPING, State.STOPPED]
    assert home.capture.count(db) == 10
    assert QApplication.activeModalWidget() is None


def test_wrong_password_shows_on_the_node_and_in_a_banner(
    qtbot: QtBot, window: MainWindow, home: Home, secured_couch: CouchServer
) -> None:
    db = create_db(secured_couch, "locked")
    add_datasource(qtbot, window, secured_couch, WRONG)
    assert keyring.get_password("eventdesk", f"{home.workspace.workspace_id}/datasource/couch") == WRONG
    add_model(qtbot, window, db)
    window.act_start_all.trigger()
    qtbot.waitUntil(lambda: node_state(window, f"model/{db}") == "error", timeout=WAIT_MS)

    model_tip = node_tooltip(window, f"model/{db}")
    source_tip = node_tooltip(window, "datasource/couch")
    assert "State: error" in model_tip
    assert node_state(window, "datasource/couch") == "error"
    # the field by its label, in the tooltips as in the banner (issue 16)
    assert "State: error" in source_tip and "Password / API key" in source_tip
    assert "field '" not in model_tip + source_tip
    banners = [b for b in window.notifications.banners if b.level == "error"]
    assert len(banners) == 1
    assert db in banners[0].message.text()
    assert "Password / API key" in banners[0].details.toPlainText()
    assert "field '" not in banners[0].message.text() + banners[0].details.toPlainText()
    assert window.notifications.isVisible()
    assert QApplication.activeModalWidget() is None
    shown = [model_tip, source_tip, banners[0].message.text(), banners[0].details.toPlainText()]
    assert not any(WRONG in text or PASSWORD in text for text in shown)
    assert home.capture.count(db) == 0
