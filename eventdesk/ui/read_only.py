"""The app on a home that another process (``eventdesk run``) holds: watch it, change nothing.

:class:`HomeWatcher` follows what the holder captures (every ``FOLLOW_MS``, from the last
position seen) into the event table and the states it records into the tree and the status
bar; the window disables everything that would start, stop or edit.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QObject, QTimer

from eventdesk.core.capture import CapturedEvent
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.event_table import EventTableView
from eventdesk.ui.notifications import NotificationArea
from eventdesk.ui.workspace_tree import WorkspaceTree

FOLLOW_MS = 500
FOLLOW_BATCH = 5000
BANNER_KEY = "read-only"


def read_only_banner(reason: str) -> str:
    return (
        f"Read only: {reason}. Showing what it captures; to run or edit here, stop it and reopen EventDesk."
    )


class WatchedWindow(Protocol):
    """What :class:`HomeWatcher` shows the holder's work in (the main window)."""

    home: Home
    runtime: Runtime
    tasks: TaskSlots
    notifications: NotificationArea
    table: EventTableView
    tree: WorkspaceTree

    def refresh_status(self) -> None: ...


class HomeWatcher(QObject):
    """Polls the capture of a home held by another process (read only) for ``window``."""

    def __init__(self, window: WatchedWindow, parent: QObject) -> None:
        super().__init__(parent)
        self.window = window
        self.position = window.home.capture.last_pos()
        self.holder_gone = False
        self._timer = QTimer(self)
        self._timer.setInterval(FOLLOW_MS)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        tasks = self.window.tasks
        if not tasks.running("follow"):
            tasks.start("follow", self.follow())

    def _read(self) -> tuple[list[CapturedEvent], dict[str, tuple[str, str | None]], bool]:
        """[capture thread] New events, the recorded states, whether the holder is still there."""
        home = self.window.home
        events = home.capture.events_after(self.position, FOLLOW_BATCH)
        return events, home.live_states(), home.holder() is not None

    async def follow(self) -> None:
        """Show one round of what the holder did since the last one."""
        window = self.window
        events, states, held = await window.runtime.db(self._read)
        if events:
            self.position = events[-1].pos
            window.table.model.append(events)
        # Shown only (the tree and the status bar hear of them): this runtime never runs here.
        window.runtime.show_foreign(
            {key: StateChange(State(state), detail) for key, (state, detail) in states.items()},
            events=len(events),
        )
        if not held and not self.holder_gone:
            self.holder_gone = True
            window.notifications.notify(
                "info",
                "Read only: the runner that held this home has stopped. Reopen EventDesk to run or edit here.",
                key=BANNER_KEY,
            )
        window.refresh_status()
