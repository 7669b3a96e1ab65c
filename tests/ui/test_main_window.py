"""The main window: empty state, dialogs, live state on the tree, start/stop, persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox
from pytestqt.qtbot import QtBot

from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.connectors.cloudant import CloudantConnector
from eventdesk.core import broker_link, model_runner, supervisor
from eventdesk.core.contracts import Connector, Publisher, State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.home import Home
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import BrokerConfig, DatasourceConfig, ModelConfig
from eventdesk.ui.object_dialogs import BrokerDialog, DatasourceDialog, RouteDialog
from eventdesk.ui.workspace_tree import STATE_ROLE
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    MakeWindow,
    home_fixture,
    isolated_qsettings_fixture,
    make_window_fixture,
    qloop_fixture,
    run,
)


def add_objects(home: Home) -> None:
    home.add_datasource("prod", "cloudant", {"url": "https://db.example.com"})
    home.add_model("accounts", "prod", {"database": "accounts"})


class LiveConnector(Connector):
    """Delivers a few events, then follows "forever" (until cancelled), like a quiet feed."""

    kind: ClassVar[str] = "cloudant"
    datasource_schema: ClassVar[Schema] = CloudantConnector.datasource_schema
    model_schema: ClassVar[Schema] = CloudantConnector.model_schema
    batches: ClassVar[int] = 1

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        return "ok"

    async def run(self, since: Any) -> None:
        self.host.set_state(StateChange(State.RUNNING))
        for b in range(self.batches):
            events = [
                Event(
                    datasource=self.datasource.name,
                    model=self.model.name,
                    op="created",
                    key=f"doc-{b}-{i}",
                    rev=f"1-{b}{i}",
                    seq=f"{b}-{i}",
                    payload={"n": i},
                )
                for i in range(5)
            ]
            await self.host.deliver(events, f"{b}-4")
        await asyncio.Event().wait()


class MemoryPublisher(Publisher):
    """A broker that acknowledges everything at once (the MQTT side is tested elsewhere)."""

    kind: ClassVar[str] = "mqtt"
    schema: ClassVar[Schema] = MqttPublisher.schema
    validate_topic = staticmethod(MqttPublisher.validate_topic)
    sent: ClassVar[list[tuple[str, bytes]]] = []

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        return "ok"

    async def start(self) -> None:
        self.on_state(StateChange(State.RUNNING))

    @property
    def connected(self) -> bool:
        return True

    async def wait_connected(self) -> None:
        return None

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        self.sent.append((topic, payload))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def close(self, timeout: float = 2.0) -> None:
        self.on_state(StateChange(State.STOPPED))


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    MemoryPublisher.sent = []
    monkeypatch.setattr(model_runner, "connector_class", lambda kind: LiveConnector)
    monkeypatch.setattr(broker_link, "broker_class", lambda kind: MemoryPublisher)
    monkeypatch.setattr(supervisor, "broker_class", lambda kind: MemoryPublisher)


def test_empty_workspace_shows_empty_state_with_working_buttons(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    assert window.showing_empty_state
    assert window.empty_state.isVisible()
    assert "Add a <b>datasource</b>" in window.empty_state.findChildren(type(window.status.rate))[0].text()
    window.empty_state.add_datasource.click()
    dialog = window.last_dialog
    assert isinstance(dialog, DatasourceDialog) and dialog.isVisible()
    assert QApplication.activeModalWidget() in (None, dialog)  # window-modal via open(), not exec()
    dialog.reject()
    qtbot.waitUntil(lambda: not window.dialogs)
    window.empty_state.add_broker.click()
    assert isinstance(window.last_dialog, BrokerDialog)
    window.last_dialog.reject()


def test_adding_a_datasource_leaves_the_empty_state(
    qtbot: QtBot, make_window: MakeWindow, home: Home
) -> None:
    window = make_window()
    assert not window.act_add_model.isEnabled()
    window.empty_state.add_datasource.click()
    dialog = window.last_dialog
    assert isinstance(dialog, DatasourceDialog) and dialog.form is not None
    dialog.name_edit.setText("prod")
    url = dialog.form.widget("url")
    assert isinstance(url, QLineEdit)
    url.setText("https://db.example.com")
    dialog.save_button.click()
    qtbot.waitUntil(lambda: not window.showing_empty_state)
    assert window.main_split.isVisible()
    assert "datasource/prod" in window.tree.tree_model.keys
    assert window.act_add_model.isEnabled()
    assert "prod" in home.workspace.datasources


def test_toolbar_shortcuts(make_window: MakeWindow) -> None:
    window = make_window()
    assert window.act_start_all.shortcut() == QKeySequence("Ctrl+R")
    assert window.act_stop_all.shortcut() == QKeySequence("Ctrl+Shift+R")
    assert window.act_pause.shortcut() == QKeySequence("Ctrl+P")
    assert window.act_focus_filter.shortcut() == QKeySequence("Ctrl+F")
    assert window.act_export.shortcut() == QKeySequence("Ctrl+E")
    assert window.act_export.isEnabled() and "coming soon" not in window.act_export.toolTip()
    window.act_pause.trigger()
    assert window.table.model.paused
    window.act_pause.trigger()
    assert not window.table.model.paused


def test_geometry_and_splitters_persist(
    qtbot: QtBot, make_window: MakeWindow, home: Home, isolated_qsettings: Path
) -> None:
    add_objects(home)
    window = make_window()
    window.resize(791, 517)  # within the offscreen screen (800x600), above the minimum width
    window.main_split.setSizes([180, 300, 240])
    qtbot.waitUntil(lambda: window.width() == 791)
    sizes = window.main_split.sizes()
    run(qtbot, window.shutdown())
    files = list(isolated_qsettings.rglob("*.ini"))
    assert files, "QSettings must write under the isolated path"
    assert QSettings(str(files[0]), QSettings.Format.IniFormat).contains("main_window/geometry")
    again = make_window()
    assert (again.width(), again.height()) == (791, 517)
    assert again.main_split.sizes() == sizes


def test_connector_error_shows_on_node_and_as_banner(
    qtbot: QtBot, make_window: MakeWindow, home: Home
) -> None:
    home.add_datasource(
        "prod",
        "cloudant",
        {"url": "https://db.example.com", "auth": "basic", "username": "u"},
        secret_env="EVENTDESK_TEST_UNSET_VARIABLE",
    )
    home.add_model("accounts", "prod", {"database": "accounts"})
    window = make_window()
    window.start_model("accounts")
    item = window.tree.tree_model.item_of("model/accounts")
    assert item is not None
    qtbot.waitUntil(lambda: "State: error" in item.toolTip())
    assert "environment variable EVENTDESK_TEST_UNSET_VARIABLE is not set" in item.toolTip()
    banners = window.notifications.banners
    assert len(banners) == 1 and banners[0].level == "error"
    assert "EVENTDESK_TEST_UNSET_VARIABLE" in banners[0].details.toPlainText()
    assert window.notifications.isVisible()
    assert QApplication.activeModalWidget() is None  # no modal dialog
    window.start_model("accounts")  # the same error again updates the one banner
    qtbot.wait(50)
    assert len(window.notifications.banners) == 1
    banners[0].close_button.click()
    assert not window.notifications.banners


@pytest.mark.usefixtures("live")
def test_start_and_stop_without_blocking(qtbot: QtBot, make_window: MakeWindow, home: Home) -> None:
    add_objects(home)
    window = make_window()
    seen: list[State] = []
    window.runtime.on_state(
        lambda key, change: seen.append(change.state) if key == "model/accounts" else None
    )
    window.act_start_all.trigger()
    qtbot.waitUntil(lambda: window.table.model.rowCount() == 5)
    assert window.runtime.state_of("model/accounts").state is State.RUNNING
    window.tick()
    qtbot.waitUntil(lambda: window.status.connectors.text() == "Connectors: 1/1 running")
    assert "ev/s" in window.tree.tree_model.status_item("model/accounts").text()  # type: ignore[union-attr]
    assert window.act_stop_all.isEnabled()
    window.stop_model("accounts")
    qtbot.waitUntil(lambda: window.runtime.state_of("model/accounts").state is State.STOPPED)
    assert seen == [State.CONNECTING, State.RUNNING, State.STOPPING, State.STOPPED]
    assert window.tree.tree_model.item_of("model/accounts").data(STATE_ROLE) == "stopped"  # type: ignore[union-attr]


@pytest.mark.usefixtures("live")
def test_selecting_an_event_shows_it_with_its_previous_revision(
    qtbot: QtBot, make_window: MakeWindow, home: Home
) -> None:
    add_objects(home)
    window = make_window()
    window.start_model("accounts")
    qtbot.waitUntil(lambda: window.table.model.rowCount() == 5)
    window.table.table.selectRow(2)
    qtbot.waitUntil(lambda: window.detail.current_event is not None)
    assert window.detail.current_event.envelope["key"] == "doc-0-2"  # type: ignore[union-attr]


@pytest.mark.usefixtures("live")
def test_republish_creates_route_and_starts_it(qtbot: QtBot, make_window: MakeWindow, home: Home) -> None:
    add_objects(home)
    home.add_broker("local", "mqtt", {"url": "mqtt://localhost:1883"})
    window = make_window()
    window.tree.tree_model  # noqa: B018
    window.do_action("republish", "model", "accounts")
    dialog = window.last_dialog
    assert isinstance(dialog, RouteDialog) and dialog.form is not None
    dialog.form.editors["topic"].set_value("out/{model}/{key}")
    dialog.form.editors["topic"].changed.emit()
    dialog.save_button.click()
    qtbot.waitUntil(lambda: window.runtime.state_of("route/accounts-to-local").state is State.RUNNING)
    assert home.workspace.route("accounts-to-local").enabled
    window.start_model("accounts")
    qtbot.waitUntil(lambda: len(MemoryPublisher.sent) == 5)
    assert MemoryPublisher.sent[0][0] == "out/accounts/doc-0-0"
    window.tick()
    qtbot.waitUntil(lambda: window.total_backlog == 0)
    assert window.status.backlog.text() == "Backlog: 0"
    assert window.status.brokers.text() == "Brokers: 1/1 connected"
    # toggling off disables the route and stops it
    window.do_action("unpublish", "model", "accounts")
    qtbot.waitUntil(lambda: not window.runtime.is_running("route", "accounts-to-local"))
    assert not home.workspace.route("accounts-to-local").enabled
    assert window.tree.tree_model.status_item("route/accounts-to-local").text().startswith("disabled")  # type: ignore[union-attr]


def test_a_route_that_cannot_start_is_not_silent(qtbot: QtBot, make_window: MakeWindow, home: Home) -> None:
    add_objects(home)
    home.add_broker(
        "local", "mqtt", {"url": "mqtt://localhost:1883"}, secret_env="EVENTDESK_TEST_UNSET_VARIABLE"
    )
    home.add_route("r1", "accounts", "local", {"enabled": False})
    window = make_window()
    window.do_action("enable", "route", "r1")

    def tooltip() -> str:
        item = window.tree.tree_model.item_of("route/r1")
        return item.toolTip() if item is not None else ""

    qtbot.waitUntil(lambda: "State: error" in tooltip())
    assert "EVENTDESK_TEST_UNSET_VARIABLE" in tooltip()
    assert home.workspace.route("r1").enabled
    window.do_action("disable", "route", "r1")
    qtbot.waitUntil(lambda: not home.workspace.route("r1").enabled)


def test_remove_asks_first(qtbot: QtBot, make_window: MakeWindow, home: Home) -> None:
    add_objects(home)
    window = make_window()
    window.do_action("remove", "datasource", "prod")
    qtbot.waitUntil(lambda: window.confirm_box is not None and window.confirm_box.isVisible())
    box = window.confirm_box
    assert box is not None and "\u2022 model 'accounts'" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: window.confirm_box is None)
    assert "prod" in home.workspace.datasources
    window.do_action("remove", "datasource", "prod")
    qtbot.waitUntil(lambda: window.confirm_box is not None and window.confirm_box.isVisible())
    window.confirm_box.button(QMessageBox.StandardButton.Yes).click()  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: "prod" not in home.workspace.datasources)
    assert window.showing_empty_state
    assert "accounts" not in home.workspace.models
