"""File ▸ New workspace / Open workspace (issue 16): the app (ui/app.py's ``_main``, as launched)
closes the window on its home (models stopped, the home's lock released) and opens one on the
chosen home; a directory that cannot be opened says why in a banner and the window stays."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.errors import HomeInUseError
from eventdesk.core.home import Home
from eventdesk.ui.app import _main, _Session
from eventdesk.ui.home_opening import open_home
from eventdesk.ui.main_window import MainWindow
from tests.ui.conftest_desk import action, demo_on_free_ports, open_demo_from_menu
from tests.ui.conftest_main import isolated_qsettings_fixture, qloop_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.gui


@pytest.fixture
def session(
    qtbot: QtBot,
    qloop: asyncio.AbstractEventLoop,
    isolated_qsettings: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[_Session]:
    """The app's session on the test's home, as ``eventdesk`` runs it; quit after."""
    demo_on_free_ports(monkeypatch)
    threshold = gc.get_threshold()  # _main tunes the collector for the app: put it back after
    first = open_home(str(isolated_home))
    assert first is not None
    running = _Session()
    task = qloop.create_task(_main(first, running))
    qtbot.waitUntil(lambda: running.window is not None and running.window.isVisible())
    yield running
    if not task.done():
        assert running.window is not None
        running.window.close()  # asks the app to quit
    qtbot.waitUntil(task.done, timeout=15_000)
    assert task.result() == 0
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(True)
    gc.set_threshold(*threshold)
    gc.unfreeze()


def window_of(session: _Session) -> MainWindow:
    assert session.window is not None
    return session.window


def held_by_someone(directory: Path) -> bool:
    try:
        Home.open(str(directory), lock="edit").close()
    except HomeInUseError:
        return True
    return False


def banner(window: MainWindow) -> str:
    found = [b for b in window.notifications.banners if b.key == "workspace"]
    assert found and found[0].level == "error"
    return found[0].message.text()


def test_file_menu_starts_a_new_workspace_and_opens_the_old_one_again(
    qtbot: QtBot, session: _Session, isolated_home: Path, tmp_path: Path
) -> None:
    first = window_of(session)
    assert [a.objectName() for a in first.menus.menus["File"].actions()[:2]] == [
        "new_workspace",
        "open_workspace",
    ]
    assert action(first, "new_workspace").shortcut().toString() == "Ctrl+N"
    assert action(first, "open_workspace").shortcut().toString() == "Ctrl+Shift+O"
    open_demo_from_menu(qtbot, first)  # a running model, to be stopped by the switch
    second_dir = tmp_path / "second"
    runtime = first.runtime

    first.open_workspace(str(second_dir), new=True)
    qtbot.waitUntil(lambda: session.window is not first, timeout=15_000)
    second = window_of(session)
    assert second.home.paths.data_dir == second_dir.resolve() and second.isVisible()
    assert (second_dir / "workspace.json").exists() and second.showing_empty_state
    assert runtime.state_of(f"model/{demo.MODEL}").state is State.STOPPED  # the first window's, shut down
    assert not held_by_someone(isolated_home) and held_by_someone(second_dir)

    second.open_workspace(str(isolated_home))  # File ▸ Open workspace… back to the first
    qtbot.waitUntil(lambda: session.window is not second, timeout=15_000)
    again = window_of(session)
    assert again.home.paths.data_dir == isolated_home.resolve()
    assert demo.MODEL in again.home.workspace.models and not again.showing_empty_state
    assert not held_by_someone(second_dir)


def test_a_directory_that_cannot_be_opened_says_why_and_the_window_stays(
    session: _Session, isolated_home: Path, tmp_path: Path
) -> None:
    window = window_of(session)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert window.open_workspace(str(nothing)) is None
    assert "holds no workspace (no workspace.json): use File ▸ New workspace…" in banner(window)
    assert str(nothing) in banner(window)
    taken = tmp_path / "taken"
    other = Home.open(str(taken))
    other.save()
    other.close()
    assert window.open_workspace(str(taken), new=True) is None
    assert banner(window).endswith("already holds a workspace: use File ▸ Open workspace… to open it")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert window.open_workspace(str(a_file), new=True) is None
    assert banner(window).endswith("is a file, not a directory")
    assert window.open_workspace(str(isolated_home)) is None
    assert banner(window).endswith("is the workspace open in this window")
    assert session.window is window and window.isVisible()
