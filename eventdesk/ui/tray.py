"""The system tray icon: the app's state at a glance (its tooltip), Show EventDesk, and a notification
when something fails while the window is minimized or hidden.

Not every desktop has a tray (offscreen and many Wayland sessions have none): then there is no
icon, :attr:`DeskTray.available` says so, and errors stay where they always are (the banners and
the tree). What would be notified is decided by :func:`tray_notice`, which needs no tray.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu, QSystemTrayIcon

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.workspace import Workspace
from eventdesk.ui.dialog_guidance import label_fields
from eventdesk.ui.icons import app_icon


def tray_summary(states: dict[str, State]) -> str:
    """The tray's tooltip: how many models run, and what is failing."""
    running = sum(1 for key, s in states.items() if key.startswith("model/") and s is State.RUNNING)
    failing = sorted(key for key, s in states.items() if s is State.ERROR)
    text = f"EventDesk: {running} model{'s' if running != 1 else ''} running"
    if failing:
        text += f"; {len(failing)} failing ({', '.join(k.replace('/', ' ') for k in failing[:3])})"
    return text


def tray_notice(key: str, change: StateChange, window_in_view: bool) -> tuple[str, str] | None:
    """``(title, message)`` to notify from the tray, or None: only errors, only while the window is
    out of view (minimized or hidden; in view, the banner says it)."""
    if window_in_view or change.state is not State.ERROR:
        return None
    kind, _, name = key.partition("/")
    return f"{kind.capitalize()} {name} failed", (change.detail or "failed").splitlines()[0]


class DeskTray(QObject):
    """The window's tray icon (none where the desktop has no tray)."""

    def __init__(self, window: QMainWindow, workspace: Callable[[], Workspace] | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.workspace = workspace  # the fields of a notice named by their labels, as in the banners
        self.states: dict[str, State] = {}
        self.notified: list[tuple[str, str]] = []  # what was notified (or would have been, without a tray)
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.icon: QSystemTrayIcon | None = None
        if self.available:
            self.icon = QSystemTrayIcon(app_icon(), self)
            menu = QMenu(window)
            show = QAction("Show EventDesk", menu)
            show.triggered.connect(self.show_window)
            menu.addAction(show)
            self.icon.setContextMenu(menu)
            self.icon.activated.connect(self._on_activated)
            self.icon.setToolTip(tray_summary(self.states))
            self.icon.show()

    def window_in_view(self) -> bool:
        return self.window.isVisible() and not self.window.isMinimized()

    def on_state(self, key: str, change: StateChange) -> None:
        self.states[key] = change.state
        if self.icon is not None:
            self.icon.setToolTip(tray_summary(self.states))
        notice = tray_notice(key, change, self.window_in_view())
        if notice is None:
            return
        if self.workspace is not None:
            notice = (notice[0], label_fields(notice[1], self.workspace()))
        self.notified.append(notice)
        if self.icon is not None:
            self.icon.showMessage(*notice, QSystemTrayIcon.MessageIcon.Critical)

    def forget(self, key: str) -> None:
        self.states.pop(key, None)

    def show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason is QSystemTrayIcon.ActivationReason.Trigger:
            self.show_window()

    def hide(self) -> None:
        if self.icon is not None:
            self.icon.hide()
