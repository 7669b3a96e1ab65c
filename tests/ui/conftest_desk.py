"""Fixtures for the desk tests (tests/ui/test_desk_*.py): a shown main window on an isolated
home whose demo, when opened, listens on free ports (never 8787/1883)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QAction
from pytestqt.qtbot import QtBot

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow
from tests.peers.servers import free_port
from tests.ui.conftest_main import run


def demo_on_free_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free ports instead of 8787/1883, so a test's demo never meets another (or a real broker)."""
    monkeypatch.setattr(demo, "WEBHOOK_PORT", free_port())
    monkeypatch.setattr(demo, "BROKER_PORT", free_port())


@pytest.fixture(name="desk")
def desk_fixture(
    qtbot: QtBot,
    qloop: asyncio.AbstractEventLoop,
    isolated_qsettings: Path,
    home: Home,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MainWindow]:
    """The shown main window (the demo, if opened, on free ports); shut down after."""
    demo_on_free_ports(monkeypatch)
    win = MainWindow(home)
    win.show()
    yield win
    run(qtbot, win.shutdown(), timeout=15000)
    assert not win.tasks.pending
    win.close()
    win.deleteLater()


def menu_entries(window: MainWindow, title: str) -> list[str]:
    """The object names of a top menu's entries (separators left out)."""
    return [a.objectName() for a in window.menus.menus[title].actions() if not a.isSeparator()]


def action(window: MainWindow, name: str) -> QAction:
    found = window.findChild(QAction, name)
    assert found is not None, f"no action named {name}"
    return found


def open_demo_from_menu(qtbot: QtBot, window: MainWindow) -> None:
    """File ▸ Open the demo workspace, until the demo's model runs."""
    action(window, "open_demo").trigger()
    qtbot.waitUntil(
        lambda: window.runtime.state_of(f"model/{demo.MODEL}").state is State.RUNNING, timeout=15000
    )
