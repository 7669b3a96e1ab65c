"""The desk between runs and out of view (issue 16): models running at close start again at
launch when asked (a setting, off by default, kept), the tray icon (none offscreen: said so, and
what it would notify decided all the same), and a layout that holds still (a row with a long rev
selected leaves the panes' sizes alone; banners float over the panes without moving the table;
the tree keeps a usable width at the smallest size; column widths and the sort order persist)."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from eventdesk.core import demo
from eventdesk.core.capture import CapturedEvent
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.home import Home
from eventdesk.core.secrets import delete_secret
from eventdesk.ui import session_restore
from eventdesk.ui.event_table import COL_KEY
from eventdesk.ui.main_window import TREE_MIN_WIDTH, MainWindow
from eventdesk.ui.tray import tray_notice, tray_summary
from tests.peers.servers import free_port
from tests.ui.conftest_desk import demo_on_free_ports, open_demo_from_menu
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    MakeWindow,
    home_fixture,
    isolated_qsettings_fixture,
    make_window_fixture,
    qloop_fixture,
    run,
)

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def demo_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    demo_on_free_ports(monkeypatch)


def demo_state(window: MainWindow) -> State:
    return window.runtime.state_of(f"model/{demo.MODEL}").state


@pytest.mark.parametrize("asked", [True, False])
def test_models_running_at_close_start_again_only_when_asked(
    qtbot: QtBot, make_window: MakeWindow, asked: bool
) -> None:
    first = make_window()
    setting = first.menus.act_restart_running
    assert not setting.isChecked() and not session_restore.restart_enabled()  # off by default
    setting.setChecked(asked)
    open_demo_from_menu(qtbot, first)
    run(qtbot, first.shutdown(), timeout=15_000)

    again = make_window()
    assert again.menus.act_restart_running.isChecked() is asked  # the setting was kept
    if asked:
        qtbot.waitUntil(lambda: demo_state(again) is State.RUNNING, timeout=15_000)
    else:
        qtbot.wait(1000)  # the window's first turns, when a restart would begin
        assert demo_state(again) is State.STOPPED


def test_tray_says_when_there_is_none_and_notifies_errors_only_out_of_view(
    qtbot: QtBot, make_window: MakeWindow
) -> None:
    window = make_window()
    tray = window.tray
    assert tray.available is False and tray.icon is None  # offscreen has no system tray
    failed = StateChange(State.ERROR, "datasource 'couch': URL: connection refused\nmore")
    window.tray.on_state("model/accounts", failed)
    assert tray.notified == []  # the window is in view: its banner says it
    window.showMinimized()
    qtbot.waitUntil(window.isMinimized)
    tray.on_state("model/orders", StateChange(State.RUNNING))
    tray.on_state("model/accounts", failed)
    assert tray.notified == [("Model accounts failed", "datasource 'couch': URL: connection refused")]
    assert tray_summary(tray.states) == "EventDesk: 1 model running; 1 failing (model accounts)"
    assert tray_notice("model/x", StateChange(State.RETRYING), window_in_view=False) is None


def test_a_model_failing_while_minimized_is_notified_from_the_tray(
    qtbot: QtBot, make_window: MakeWindow, home: Home
) -> None:
    ds = home.add_datasource(
        "couch",
        "couchdb",
        {"url": f"http://127.0.0.1:{free_port()}", "auth": "basic", "username": "admin"},
        secret="pw",
    )
    delete_secret(ds.secret)  # the keyring lost it: the model fails at its start
    home.add_model("accounts", "couch", {"database": "accounts"})
    window = make_window()
    window.showMinimized()
    qtbot.waitUntil(window.isMinimized)
    window.start_model("accounts")
    qtbot.waitUntil(lambda: window.tray.notified != [], timeout=10_000)
    ((title, message),) = window.tray.notified
    assert title == "Model accounts failed"
    assert message.startswith("datasource 'couch': Password / API key: ")  # by its label
    assert "field '" not in message
    assert window.tray.states["model/accounts"] is State.ERROR


def long_rev_event(pos: int) -> CapturedEvent:
    return CapturedEvent(
        pos,
        {
            "id": f"id{pos}",
            "received_at": "2026-11-29T10:00:00.123Z",
            "datasource": "ds",
            "model": "accounts",
            "op": "updated",
            "key": "k" * 300,
            "rev": f"{pos}-" + "f" * 400,
            "seq": str(pos),
            "payload": {"note": "x" * 2000},
            "source": {},
        },
    )


def test_selecting_a_row_with_long_values_leaves_the_panes_alone(
    qtbot: QtBot, make_window: MakeWindow, home: Home
) -> None:
    window = make_window()
    window.resize(800, 560)
    qtbot.waitExposed(window)
    window.table.model.append([long_rev_event(p) for p in (10_001, 10_002)])
    qtbot.wait(50)
    splits = (window.main_split.sizes(), window.left_split.sizes())
    window.table.table.selectRow(1)
    qtbot.waitUntil(lambda: window.detail.current_event is not None, timeout=5000)
    qtbot.wait(100)
    assert (window.main_split.sizes(), window.left_split.sizes()) == splits
    assert window.width() == 800
    header = window.detail.header.text()
    shown = re.sub(r"title='[^']*'", "", header)  # what the label shows; the whole value is its tooltip
    assert "f" * 400 not in shown and "k" * 300 not in shown and "…" in shown
    assert "f" * 400 in header


def test_column_widths_and_sort_order_persist(qtbot: QtBot, make_window: MakeWindow) -> None:
    first = make_window()
    first.table.table.setColumnWidth(COL_KEY, 233)
    first.table.newest_first_action.setChecked(True)
    run(qtbot, first.shutdown())
    again = make_window()
    assert again.table.table.columnWidth(COL_KEY) == 233
    header = again.table.table.horizontalHeader()
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder and again.table.model.descending


def test_banners_float_over_the_panes_without_moving_the_table(qtbot: QtBot, make_window: MakeWindow) -> None:
    window = make_window()
    window.resize(800, 560)
    qtbot.waitExposed(window)
    window.stack.setCurrentWidget(window.main_split)  # the panes, as with objects defined
    qtbot.wait(50)
    table = window.table.table
    before = (table.mapTo(window, table.rect().topLeft()), table.size())
    area = window.notifications
    for i in range(3):
        area.notify(
            "error", f"model m{i}: datasource 'couch': URL: connection refused", "details", key=f"k{i}"
        )
    qtbot.wait(50)
    assert (table.mapTo(window, table.rect().topLeft()), table.size()) == before  # nothing pushed
    central = window.centralWidget()
    assert area.isVisible() and area.parentWidget() is central
    assert central.rect().contains(area.geometry())  # floating inside the window, bottom right
    assert area.geometry().bottom() > central.height() // 2
    tops = [b.mapTo(central, b.rect().topLeft()).y() for b in area.banners]
    assert tops == sorted(tops) and len(set(tops)) == 3  # stacked, not on top of each other
    area.banners[0].details_button.click()  # a banner that grows stays inside, above the bottom
    qtbot.wait(50)
    assert central.rect().contains(area.geometry())
    area.clear()
    assert not area.isVisible()
    assert (table.mapTo(window, table.rect().topLeft()), table.size()) == before


def test_at_the_smallest_size_the_tree_keeps_a_usable_width(qtbot: QtBot, make_window: MakeWindow) -> None:
    window = make_window()
    window.resize(826, 550)
    qtbot.waitUntil(lambda: window.width() == 826)
    window.stack.setCurrentWidget(window.main_split)
    qtbot.wait(50)
    assert window.tree.width() >= TREE_MIN_WIDTH
    window.main_split.moveSplitter(0, 1)  # a drag of the tree's edge all the way left
    qtbot.wait(50)
    assert window.main_split.sizes()[0] >= TREE_MIN_WIDTH and window.tree.isVisible()
