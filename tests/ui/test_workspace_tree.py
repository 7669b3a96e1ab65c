"""The workspace tree: structure, live state from the runtime, context menus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui.workspace_tree import STATE_ROLE, WorkspaceTree
from tests.ui.conftest_main import home_fixture  # noqa: F401 - fixture


@pytest.fixture
def filled(home: Home) -> Home:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"})
    home.add_datasource("dev", "couchdb", {"url": "http://localhost:5984"})
    home.add_model("accounts", "prod", {"database": "accounts"})
    home.add_model("orders", "prod", {"database": "orders"})
    home.add_broker("local", "mqtt", {"url": "mqtt://localhost:1883"})
    home.add_route("accounts-out", "accounts", "local", {"topic": "t/{model}"})
    return home


@pytest.fixture
def tree(qtbot: QtBot, filled: Home) -> WorkspaceTree:
    view = WorkspaceTree()
    qtbot.addWidget(view)
    view.rebuild(filled.workspace)
    view.show()
    return view


@pytest.fixture
def runtime(filled: Home, tree: WorkspaceTree) -> Iterator[Runtime]:
    rt = Runtime(filled.workspace, filled.capture)
    rt.on_state(tree.tree_model.set_state)
    yield rt
    asyncio.run(rt.aclose())


def test_tree_model_passes_qtmodeltester(qtmodeltester, tree: WorkspaceTree) -> None:  # type: ignore[no-untyped-def]
    qtmodeltester.check(tree.tree_model, force_py=True)
    tree.tree_model.set_state("model/accounts", StateChange(State.RUNNING))
    tree.tree_model.set_rate("accounts", 12.34)
    qtmodeltester.check(tree.tree_model, force_py=True)


def test_structure(tree: WorkspaceTree) -> None:
    m = tree.tree_model
    assert [m.item(0).text(), m.item(1).text()] == ["Datasources", "Brokers"]  # type: ignore[union-attr]
    assert m.keys == [
        "group/datasources",
        "group/brokers",
        "datasource/dev",
        "datasource/prod",
        "model/accounts",
        "model/orders",
        "broker/local",
        "route/accounts-out",
    ]
    prod = m.index_of("datasource/prod")
    assert m.rowCount(prod) == 2
    assert tree.isExpanded(prod)
    assert m.status_item("route/accounts-out").text() == "enabled"  # type: ignore[union-attr]


def test_state_changes_show_icon_status_and_tooltip(tree: WorkspaceTree, runtime: Runtime) -> None:
    m = tree.tree_model
    runtime.show_foreign({"model/accounts": StateChange(State.CONNECTING)})
    assert m.item_of("model/accounts").data(STATE_ROLE) == "connecting"  # type: ignore[union-attr]
    runtime.show_foreign({"model/accounts": StateChange(State.RUNNING)})
    m.set_rate("accounts", 12.34)
    assert m.status_item("model/accounts").text() == "running · 12.3 ev/s · republishing"  # type: ignore[union-attr]
    assert m.item_of("datasource/prod").data(STATE_ROLE) == "running"  # type: ignore[union-attr]
    assert "1/2 running" in m.status_item("datasource/prod").text()  # type: ignore[union-attr]
    detail = "model 'orders': HTTP 404: database 'orders' does not exist"
    runtime.show_foreign({"model/orders": StateChange(State.ERROR, detail)})
    item = m.item_of("model/orders")
    assert item is not None
    assert item.data(STATE_ROLE) == "error"
    assert "State: error" in item.toolTip() and detail in item.toolTip()
    # the datasource shows its most urgent model, with the error in its tooltip
    assert m.item_of("datasource/prod").data(STATE_ROLE) == "error"  # type: ignore[union-attr]
    assert detail in m.item_of("datasource/prod").toolTip()  # type: ignore[union-attr]
    runtime.show_foreign({"model/orders": StateChange(State.RETRYING, "connection refused", retry_in=4)})
    assert m.status_item("model/orders").text().startswith("retrying in 4 s")  # type: ignore[union-attr]
    runtime.show_foreign({"model/orders": StateChange(State.STOPPED)})
    assert "Last error: connection refused" in m.item_of("model/orders").toolTip()  # type: ignore[union-attr]


def test_state_survives_rebuild_and_route_backlog(
    tree: WorkspaceTree, filled: Home, runtime: Runtime
) -> None:
    runtime.show_foreign({"broker/local": StateChange(State.RETRYING, "connection refused")})
    tree.tree_model.set_backlog("accounts-out", 42)
    filled.add_model("later", "dev", {"database": "later"})
    tree.rebuild(filled.workspace)
    assert tree.tree_model.item_of("broker/local").data(STATE_ROLE) == "retrying"  # type: ignore[union-attr]
    assert tree.tree_model.status_item("route/accounts-out").text() == "enabled · backlog 42"  # type: ignore[union-attr]
    filled.set_route_enabled("accounts-out", False)
    tree.rebuild(filled.workspace)
    assert tree.tree_model.status_item("route/accounts-out").text() == "disabled · backlog 42"  # type: ignore[union-attr]


def test_context_menus(qtbot: QtBot, tree: WorkspaceTree, runtime: Runtime) -> None:
    ids = [a for a, _, _ in tree.actions_for("model/accounts") if a]
    assert ids == ["start", "stop", "republish", "unpublish", "test", "edit", "remove"]
    enabled = {a: e for a, _, e in tree.actions_for("model/accounts")}
    assert enabled["start"] and not enabled["stop"]
    runtime.show_foreign({"model/accounts": StateChange(State.RUNNING)})
    enabled = {a: e for a, _, e in tree.actions_for("model/accounts")}
    assert not enabled["start"] and enabled["stop"]
    assert next(a for a, _, _ in tree.actions_for("route/accounts-out") if a) == "disable"
    assert "add-model" in [a for a, _, _ in tree.actions_for("datasource/prod")]
    assert [a for a, _, _ in tree.actions_for("group/brokers")] == ["add-broker"]
    menu = tree.menu_for("model/orders")
    qtbot.addWidget(menu)
    start = next(a for a in menu.actions() if a.objectName() == "start")
    with qtbot.waitSignal(tree.actionRequested) as blocker:
        start.trigger()
    assert blocker.args == ["start", "model", "orders"]


def test_double_click_asks_to_edit(qtbot: QtBot, tree: WorkspaceTree) -> None:
    index = tree.tree_model.index_of("broker/local")
    with qtbot.waitSignal(tree.actionRequested) as blocker:
        tree.doubleClicked.emit(index)
    assert blocker.args == ["edit", "broker", "local"]
    with qtbot.waitSignal(tree.objectSelected) as sel:
        tree.setCurrentIndex(tree.tree_model.index_of("model/orders"))
    assert sel.args == ["model", "orders"]
    assert tree.tree_model.index_of("model/orders").data(Qt.ItemDataRole.DisplayRole) == "orders"
