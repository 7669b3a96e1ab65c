"""The first-run demo in the window: open it from the empty state, send samples, toggle republishing.

Everything is real: the webhook receiver, HTTP posts, the built-in amqtt broker and a paho
subscriber on it.
"""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from eventdesk.brokers.local import BROKERS
from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import Subscriber
from tests.ui.conftest_desk import desk_fixture  # noqa: F401 - fixture
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)

pytestmark = pytest.mark.gui

ROUTE_STATE = "route/" + demo.ROUTE


@pytest.fixture
def window(desk: MainWindow) -> MainWindow:
    """The desk tests' window (tests/ui/conftest_desk.py): shown, the demo on free ports."""
    return desk


def test_open_the_demo_send_samples_see_them_and_toggle_republishing(
    qtbot: QtBot, window: MainWindow, home: Home
) -> None:
    assert window.showing_empty_state
    button = window.empty_state.open_demo
    assert button.isVisible() and button.text() == "Open the demo workspace"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: not window.showing_empty_state, timeout=5000)
    qtbot.waitUntil(
        lambda: window.runtime.state_of(f"model/{demo.MODEL}").state is State.RUNNING, timeout=10000
    )
    qtbot.waitUntil(lambda: window.runtime.state_of(ROUTE_STATE).state is State.RUNNING, timeout=10000)
    info = demo.demo_info(home)
    assert BROKERS.get(info.broker_host, info.broker_port) is not None
    assert home.workspace.route(demo.ROUTE).settings["format"] == "model-message"

    subscriber = Subscriber(port=info.broker_port, topic=demo.TOPIC, qos=1)
    try:
        window.demo.sample_count = 12
        window.demo.act_send_samples.trigger()
        qtbot.waitUntil(lambda: window.table.model.rowCount() == 12, timeout=15000)
        qtbot.waitUntil(lambda: len(subscriber.messages) == 12, timeout=15000)
        first = json.loads(subscriber.messages[0].payload)
        assert first["model"] == "accounts" and first["message"]["id"].startswith("acc-")
        assert home.capture.count(demo.MODEL) == 12

        # Republishing off: events still arrive in the table (and capture), nothing is published.
        window.do_action("disable", "route", demo.ROUTE)
        qtbot.waitUntil(lambda: not home.workspace.route(demo.ROUTE).enabled, timeout=5000)
        qtbot.waitUntil(lambda: not window.runtime.is_running("route", demo.ROUTE), timeout=5000)
        window.demo.sample_count = 5
        window.demo.act_send_samples.trigger()
        qtbot.waitUntil(lambda: window.table.model.rowCount() == 17, timeout=15000)
        assert len(subscriber.messages) == 12

        # On again: the route resumes from its position, so the 5 held back are published.
        window.do_action("enable", "route", demo.ROUTE)
        qtbot.waitUntil(lambda: len(subscriber.messages) == 17, timeout=15000)
    finally:
        subscriber.close()
