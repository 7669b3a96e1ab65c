"""Fixtures for the main-window, dialog and tree tests (imported by those modules as ``*_fixture``).

Async code runs on a qasync loop marked as already running, so ``qtbot.waitUntil`` (which
processes Qt events) also runs asyncio callbacks: no ``exec()``, no nested loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.ui.main_window import MainWindow

T = TypeVar("T")


@pytest.fixture(name="isolated_qsettings")
def isolated_qsettings_fixture(tmp_path: Path) -> Iterator[Path]:
    """QSettings in INI files under tmp_path, never the user's."""
    path = tmp_path / "qsettings"
    path.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(path))
    yield path
    QSettings.setDefaultFormat(QSettings.Format.NativeFormat)


@pytest.fixture(name="qloop")
def qloop_fixture(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        gathered = asyncio.gather(*pending, return_exceptions=True)
        deadline = loop.time() + 5
        while not gathered.done() and loop.time() < deadline:
            qapp.processEvents()
    # "already running" loops are stopped by hand; stop() would call QApplication.exit().
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    timer = loop._timer  # type: ignore[attr-defined]
    loop.close()
    # qasync kills a closed loop's Qt timers only when each one next fires, which can be in a
    # later test, on a loop object being torn down (a segfault in its timerEvent was seen once
    # in CI). Kill them now and let Qt delete the timer object.
    callbacks = timer._SimpleTimer__callbacks
    for timer_id in list(callbacks):
        timer.killTimer(timer_id)
    callbacks.clear()
    timer.deleteLater()
    qapp.processEvents()


def run(qtbot: QtBot, coro: Coroutine[Any, Any, T], timeout: int = 5000) -> T:
    """Run ``coro`` on the qasync loop while Qt processes events; return its result."""
    task = asyncio.get_running_loop().create_task(coro)
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()


@pytest.fixture(name="home")
def home_fixture(isolated_home: Path) -> Iterator[Home]:
    h = Home.open(str(isolated_home))
    yield h
    h.close()


MakeWindow = Callable[[], MainWindow]


@pytest.fixture(name="make_window")
def make_window_fixture(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home
) -> Iterator[MakeWindow]:
    """``make_window()``: a shown main window on ``home``; every one made is shut down after."""
    made: list[MainWindow] = []

    def make() -> MainWindow:
        window = MainWindow(home)
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        run(qtbot, window.shutdown())
        assert not window.tasks.pending
        window.close()
        window.deleteLater()
