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
import sys
from pathlib import Path

from PySide6.QtWidgets import QMenu, QWidget
from screenshot_desk import SCREENSHOTS, compose, desk, run, save, wait_for

from eventdesk.core import demo
from eventdesk.core.contracts import State


async def render(output: Path) -> None:
    async with desk() as (_home, window):
        window.demo.open_demo()
        await wait_for(
            lambda: window.runtime.state_of(f"model/{demo.MODEL}").state is State.RUNNING, what="the demo"
        )
        window.demo.send_samples()
        await wait_for(lambda: window.table.model.rowCount() >= window.demo.sample_count, what="the samples")
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
        popups: list[QWidget] = [run_menu, window.menus.models_menu]
        if sub is not None:
            window.menus.models_menu.setActiveAction(sub.menuAction())
            geometry = window.menus.models_menu.actionGeometry(sub.menuAction())
            sub.popup(window.menus.models_menu.mapToGlobal(geometry.topRight()))
            await asyncio.sleep(0.3)
            popups.append(sub)
        save(compose(window, popups), output)
        for menu in reversed(popups):
            menu.close()


if __name__ == "__main__":
    sys.exit(run(render, SCREENSHOTS / "main-window-menu.png"))
