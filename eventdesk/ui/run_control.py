"""What the window's run controls do: start and stop models (one, or all), switch routes on and
off, and keep the hosted brokers (the built-in one) running with the app.

Every start and stop runs as an owned task of the window (one slot per model or route, a new
one cancelling its predecessor), through the runtime's public API; failures show through the
objects' states, which the window listens to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from PySide6.QtCore import QObject

from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui.async_tasks import TaskSlots


class RunControl(QObject):
    """``RunControl(parent, home, runtime, tasks, workspace_changed, state_changed)``."""

    def __init__(
        self,
        parent: QObject,
        home: Home,
        runtime: Runtime,
        tasks: TaskSlots,
        workspace_changed: Callable[[], None],
        state_changed: Callable[[], None],
    ) -> None:
        super().__init__(parent)
        self.home = home
        self.runtime = runtime
        self.tasks = tasks
        self.workspace_changed = workspace_changed
        self.state_changed = state_changed  # what runs changed: the window updates its actions

    def start_model(self, name: str) -> None:
        self.tasks.start(f"model/{name}", self._start_model(name))

    def stop_model(self, name: str) -> None:
        self.tasks.start(f"model/{name}", self._stop_model(name))

    def start_all(self) -> None:
        for name in list(self.home.workspace.models):
            self.start_model(name)

    def stop_all(self) -> None:
        for name in list(self.home.workspace.models):
            self.tasks.cancel(f"model/{name}")
        self.tasks.start("all", self.runtime.stop())

    def set_route_enabled(self, name: str, enabled: bool) -> None:
        self.tasks.start(f"route/{name}", self._set_route_enabled(name, enabled))

    def unpublish(self, model: str) -> None:
        """Disable and stop every enabled route of ``model``."""
        self.tasks.start(f"unpublish/{model}", self._unpublish(model))

    async def _start_model(self, name: str) -> None:
        try:
            await self.runtime.start_model(name)
        except EventDeskError:
            return  # already on the model's node and in a banner, through its ERROR state
        finally:
            self.state_changed()

    async def _stop_model(self, name: str) -> None:
        await self.runtime.stop_model(name)
        self.state_changed()

    async def _set_route_enabled(self, name: str, enabled: bool) -> None:
        self.home.set_route_enabled(name, enabled)
        if enabled:
            await self.runtime.start_route(name)
        else:
            await self.runtime.stop_route(name)
        self.workspace_changed()

    async def _unpublish(self, model: str) -> None:
        for route in self.home.workspace.routes_of_model(model):
            if route.enabled:
                self.home.set_route_enabled(route.name, False)
                await self.runtime.stop_route(route.name)
        self.workspace_changed()

    def start_services(self) -> None:
        """Keep hosted brokers (the built-in one) running with the app, routes or not."""
        if self.home.read_only is not None:  # the holder runs them
            return
        if self.tasks.running("services") or not self.runtime.services_pending():
            return
        with contextlib.suppress(RuntimeError):  # no running loop yet: started on the next change
            self.tasks.start("services", self._run_services())

    async def _run_services(self) -> None:
        with contextlib.suppress(EventDeskError):  # shown on the broker's node, through its state
            await self.runtime.start_services()
