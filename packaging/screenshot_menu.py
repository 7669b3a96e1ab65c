"""Render the main window with live demo events and its Run menu open, and save a screenshot.

    python packaging/screenshot_menu.py [OUTPUT.png]

A throw-away home opens the demo workspace (a real webhook receiver and the built-in MQTT
broker, on free ports if 8787/1883 are taken), sends it sample events over HTTP, selects one,
and opens Run with its Model submenu. A menu is a popup, a window of its own, so the picture
is composed: the window's grab with each popup's grab painted where it opened. It works
offscreen (QT_QPA_PLATFORM=offscreen, the default here) and under Xvfb alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import QPoint, QSettings
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QMenu

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.home import Home

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "resources" / "screenshots" / "main-window-menu.png"


async def wait_for(condition: object, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise SystemExit("timed out waiting for the demo")
        await asyncio.sleep(0.05)


def compose(window_shot: QPixmap, origin: QPoint, popups: list[QMenu]) -> QPixmap:
    """The window's picture with each open popup painted at its place (global → window)."""
    out = QPixmap(window_shot)
    painter = QPainter(out)
    for menu in popups:
        painter.drawPixmap(menu.pos() - origin, menu.grab())
    painter.end()
    return out


async def render(output: Path) -> None:
    from eventdesk.ui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="eventdesk-shot-") as tmp:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(Path(tmp) / "qsettings"))
        home = Home.open(str(Path(tmp) / "home"))
        window = MainWindow(home)
        window.resize(1480, 900)
        window.show()
        window.demo.open_demo()
        await wait_for(lambda: window.runtime.state_of(f"model/{demo.MODEL}").state is State.RUNNING)
        window.demo.send_samples()
        await wait_for(lambda: window.table.model.rowCount() >= window.demo.sample_count)
        await asyncio.sleep(1.5)  # rates and the status bar catch up
        window.notifications.clear()
        window.table.table.selectRow(window.table.model.rowCount() - 3)
        await asyncio.sleep(0.8)

        run_menu = window.menus.menus["Run"]
        bar = window.menuBar()
        run_action = run_menu.menuAction()
        run_menu.popup(bar.mapToGlobal(bar.actionGeometry(run_action).bottomLeft()))
        await asyncio.sleep(0.3)
        model_action = window.menus.models_menu.menuAction()
        run_menu.setActiveAction(model_action)
        window.menus.models_menu.popup(run_menu.mapToGlobal(run_menu.actionGeometry(model_action).topRight()))
        await asyncio.sleep(0.3)
        sub = window.menus.models_menu.findChild(QMenu, f"menu_model_{demo.MODEL}")
        popups = [run_menu, window.menus.models_menu]
        if sub is not None:
            window.menus.models_menu.setActiveAction(sub.menuAction())
            geometry = window.menus.models_menu.actionGeometry(sub.menuAction())
            sub.popup(window.menus.models_menu.mapToGlobal(geometry.topRight()))
            await asyncio.sleep(0.3)
            popups.append(sub)
        shot = compose(window.grab(), window.mapToGlobal(QPoint(0, 0)), popups)
        output.parent.mkdir(parents=True, exist_ok=True)
        if not shot.save(str(output)):
            raise SystemExit(f"could not write {output}")
        print(f"saved {output}")
        for menu in reversed(popups):
            menu.close()
        await window.shutdown()
        window.close()
        home.close()
        QSettings.setDefaultFormat(QSettings.Format.NativeFormat)


def main() -> int:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("EventDesk")
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(render(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
