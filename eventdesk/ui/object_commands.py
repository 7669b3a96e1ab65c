"""What the window's object commands do: add, edit, remove and test datasources, models, brokers
and routes, show what a datasource left on its server, republish a model, and retry or drop a
route's quarantined events.

:class:`ObjectCommands` opens the object dialogs (owned, awaited in tasks of the window), asks
for confirmation without blocking the loop, and drives the runtime through its public API; the
window connects its actions and the tree's menus to it and is told through callbacks when the
workspace or the status changed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDialog, QMessageBox, QWidget

from eventdesk.core import server_leftovers
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.secrets import delete_secret
from eventdesk.ui.async_tasks import TaskSlots, ask_yes, dialog_result
from eventdesk.ui.dialog_guidance import reason_of
from eventdesk.ui.leftovers_dialog import LeftoversDialog
from eventdesk.ui.notifications import NotificationArea
from eventdesk.ui.object_dialogs import BrokerDialog, DatasourceDialog, ModelDialog, ObjectDialog, RouteDialog

LEFTOVERS_DELAY = 5.0  # seconds after a datasource's first model runs, before its server is asked


class ObjectCommands(QObject):
    """``ObjectCommands(window, home, runtime, tasks, notifications, workspace_changed,
    status_changed)``; ``window`` is the dialogs' parent."""

    def __init__(
        self,
        window: QWidget,
        home: Home,
        runtime: Runtime,
        tasks: TaskSlots,
        notifications: NotificationArea,
        workspace_changed: Callable[[], None],
        status_changed: Callable[[], None],
    ) -> None:
        super().__init__(window)
        self.window = window
        self.home = home
        self.runtime = runtime
        self.tasks = tasks
        self.notifications = notifications
        self.workspace_changed = workspace_changed
        self.status_changed = status_changed
        self.dialogs: list[QDialog] = []
        self.confirm_box: QMessageBox | None = None
        self._dialog_ids = itertools.count(1)
        self._leftovers_checked: set[str] = set()  # datasources asked since the window opened
        self.leftovers_delay = LEFTOVERS_DELAY
        runtime.on_state(self._on_state)

    def _on_state(self, key: str, change: StateChange) -> None:
        """The first time a model of a datasource runs in this window, ask that datasource's
        server what EventDesk left there that no model follows (as ``eventdesk run`` does)."""
        if change.state is not State.RUNNING or not key.startswith("model/"):
            return
        model = self.home.workspace.models.get(key.removeprefix("model/"))
        if model is None or model.datasource in self._leftovers_checked:
            return
        self._leftovers_checked.add(model.datasource)
        self.tasks.start(f"leftovers-check/{model.datasource}", self._warn_leftovers_later(model.datasource))

    async def _warn_leftovers_later(self, datasource: str) -> None:
        # Not while the models start: one more connection to the server can wait a little.
        await asyncio.sleep(self.leftovers_delay)
        await self._warn_leftovers(datasource)

    def open_dialog(
        self, dialog: ObjectDialog, after: Callable[[str, str], Awaitable[None]] | None = None
    ) -> ObjectDialog:
        """Show ``dialog`` with ``open()`` and await its result in an owned task."""
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        saved: list[str] = []  # the dialog deletes itself on close: keep what it saved
        dialog.saved.connect(saved.append)
        dialog.saved.connect(lambda _name: self.workspace_changed())
        if isinstance(dialog, RouteDialog):
            dialog.brokerAdded.connect(lambda _name: self.workspace_changed())
        dialog.finished.connect(lambda _result: self._forget_dialog(dialog))
        self.dialogs.append(dialog)
        pending = dialog_result(dialog)  # shows it now
        self.tasks.start(
            f"dialog/{next(self._dialog_ids)}", self._dialog_flow(dialog.object_type, saved, pending, after)
        )
        return dialog

    def track(self, dialog: QDialog) -> None:
        """Keep ``dialog`` among the open ones until it finishes (closed with the window)."""
        dialog.finished.connect(lambda _result: self._forget_dialog(dialog))
        self.dialogs.append(dialog)

    def _forget_dialog(self, dialog: QDialog) -> None:
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)

    async def _dialog_flow(
        self,
        kind: str,
        saved: list[str],
        pending: asyncio.Future[int],
        after: Callable[[str, str], Awaitable[None]] | None,
    ) -> None:
        result = await pending
        if result == QDialog.DialogCode.Accepted.value and after is not None and saved:
            await after(kind, saved[-1])

    @property
    def last_dialog(self) -> ObjectDialog | None:
        return self.dialogs[-1] if self.dialogs else None  # type: ignore[return-value]

    def add_datasource(self) -> None:
        self.open_dialog(DatasourceDialog(self.home, parent=self.window))

    def add_model(self, datasource: str | None = None) -> None:
        self.open_dialog(ModelDialog(self.home, parent=self.window, datasource=datasource))

    def add_broker(self) -> None:
        self.open_dialog(BrokerDialog(self.home, parent=self.window))

    def add_route(self, model: str | None = None) -> None:
        self.open_dialog(RouteDialog(self.home, parent=self.window, model=model))

    def edit(self, kind: str, name: str) -> None:
        dialogs: dict[str, type[ObjectDialog]] = {
            "datasource": DatasourceDialog,
            "model": ModelDialog,
            "broker": BrokerDialog,
            "route": RouteDialog,
        }
        self.open_dialog(dialogs[kind](self.home, name, parent=self.window), self._after_edit)

    def enter_secret(self, datasource: str, model: str) -> None:
        """Open ``datasource``'s dialog (its secret field offered for typing, as the stored one is
        missing) and, once saved, start ``model`` again."""

        async def restart(_kind: str, _name: str) -> None:
            await self.runtime.stop_model(model)
            await self.runtime.start_model(model)

        self.open_dialog(DatasourceDialog(self.home, datasource, parent=self.window), restart)

    async def _after_edit(self, kind: str, name: str) -> None:
        if kind == "route":
            await self.runtime.restart_route(name)  # a route worker keeps its settings
        models = (
            [name]
            if kind == "model"
            else [m.name for m in self.home.workspace.models_of(name)]
            if kind == "datasource"
            else []
        )
        running = [m for m in models if self.runtime.is_running("model", m)]
        if running:
            self.notifications.notify(
                "info",
                f"{kind.capitalize()} {name} saved. The change applies when {', '.join(running)} restarts.",
                key=f"edited/{kind}/{name}",
            )

    def republish(self, model: str) -> None:
        """Open the route dialog for ``model`` (its first route, or a new one), then start it."""
        routes = self.home.workspace.routes_of_model(model)
        dialog = (
            RouteDialog(self.home, routes[0].name, parent=self.window, model=model)
            if routes
            else RouteDialog(self.home, parent=self.window, model=model)
        )
        if routes and dialog.form is not None:
            dialog.form.editors["enabled"].set_value(True)
        self.open_dialog(dialog, self._after_republish)

    async def _after_republish(self, _kind: str, name: str) -> None:
        route = self.home.workspace.route(name)
        if not route.enabled:
            return
        await self.runtime.stop_route(name)  # a route worker keeps its settings: start it anew
        await self.runtime.start_route(name)
        self.workspace_changed()

    async def confirm(self, title: str, text: str) -> bool:
        """Ask Yes/Cancel (Cancel by default) without blocking the loop; True for Yes."""
        return await ask_yes(self.window, title, text, lambda box: setattr(self, "confirm_box", box))

    async def remove(self, kind: str, name: str) -> None:
        try:
            plan = self.home.removal(kind, name)  # the same dry run as `eventdesk remove`
        except EventDeskError as exc:
            self.notifications.notify("error", exc.describe(), key=f"remove/{kind}/{name}")
            return
        if not await self.confirm(
            f"Remove {kind}",
            f"Remove {kind} {name!r}?\n\nThis removes:\n"
            + "\n".join(f"\u2022 {line}" for line in plan.describe())
            + "\n\nCaptured events stay in the capture.",
        ):
            return
        drop = bool(plan.held) and await self.confirm(
            "Drop on the server too?",
            "These stay on the source server unless dropped now:\n"
            + "\n".join(f"\u2022 model {m!r}: {what}" for m, what in plan.held)
            + "\n\nKept, they go on holding the server's disk until someone drops them by hand "
            "there. Drop them now (Yes) or keep them (Cancel)?",
        )
        for model in plan.models:
            self.tasks.cancel(f"model/{model}")
        await self.runtime.forget(plan)
        if drop:
            try:
                for model, _what in plan.held:  # dropped first: a failure removes nothing
                    summary = await self.runtime.release_model(model)
                    self.notifications.notify(
                        "info", f"model {model!r}: {summary}", key=f"remove/{kind}/{name}"
                    )
            except EventDeskError as exc:
                self.notifications.notify(
                    "error", f"not removed: {exc.describe()}", key=f"remove/{kind}/{name}"
                )
                return
        try:
            removed = self.home.remove(kind, name, cascade=True, delete_secret_too=False)
        except EventDeskError as exc:
            self.notifications.notify("error", exc.describe(), key=f"remove/{kind}/{name}")
            return
        for key in (
            [f"model/{m}" for m in plan.models] + [f"route/{r}" for r in plan.routes] + [f"{kind}/{name}"]
        ):
            self.notifications.dismiss_key(key)
        self.workspace_changed()  # the view follows the workspace at once, not after the keyring
        self.notifications.notify("info", "Removed " + ", ".join(removed) + ".", key="removed")
        try:
            await asyncio.to_thread(delete_secret, plan.secret)  # a keyring may block on D-Bus
        except EventDeskError as exc:
            self.notifications.notify(
                "warning", f"Removed, but its secret stays: {exc.describe()}", key="removed"
            )

    async def ask_server(self, action: str, kind: str, name: str) -> None:
        """The tree's "Test connection" (:meth:`test`) or a datasource's "Left on the server…"
        (:meth:`leftovers`)."""
        if action == "leftovers":
            await self.leftovers(name)
        else:
            await self.test(kind, name)

    async def leftovers(self, datasource: str) -> None:
        """Open the "Left on the server…" dialog of ``datasource`` (it reads the server itself)."""
        dialog = LeftoversDialog(self.home, datasource, parent=self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.track(dialog)
        await dialog_result(dialog)

    async def test(self, kind: str, name: str) -> None:
        key = f"test/{kind}/{name}"
        self.notifications.notify("info", f"Testing the connection of {kind} {name}…", key=key)
        try:
            summary = await self.runtime.test_connection(kind, name)
        except EventDeskError as exc:  # the exact error is the point of a test: in view, not in Details
            why = reason_of(exc, kind, name, self.home.workspace)
            reason, _, more = why.partition("\n")
            self.notifications.notify("error", f"{kind} {name}: test failed: {reason}", more or None, key=key)
        else:
            self.notifications.notify("success", f"{kind} {name}: {summary or 'connected'}", key=key)
            if kind == "datasource":
                await self._warn_leftovers(name)

    async def _warn_leftovers(self, datasource: str) -> None:
        """After a datasource's test passed, or its first model runs: a warning if objects on
        its server that no model follows hold something, with a button to the dialog that
        drops them."""
        try:
            entries = await server_leftovers.list_left(self.home.workspace, datasource)
        except EventDeskError:
            return  # the test passed; the dialog says why the list cannot be read
        left = server_leftovers.held_for_nothing(entries)
        if not left:
            return
        message = f"datasource {datasource!r}: " + (
            f"{left[0].name}, followed by no model, holds {server_leftovers.held_text(left[0])}"
            if len(left) == 1
            else f"{len(left)} objects on its server, followed by no model, hold its disk"
        )
        details = "\n".join(
            server_leftovers.warnings(datasource, left, how="drop it in “Left on the server…”")
        )
        key = f"leftovers/{datasource}"
        banner = self.notifications.notify("warning", message, details, key=key)

        def show() -> None:
            self.tasks.start(f"leftovers/datasource/{datasource}", self.leftovers(datasource))

        banner.add_action("leftovers", "Left on the server…", show)

    async def quarantine_action(self, action: str, route: str) -> None:
        """Retry or drop the events ``route`` holds in quarantine (the tree's route menu)."""
        capture = self.home.capture
        held = await self.runtime.db(capture.quarantine_counts)
        count = held.get(route, 0)
        if action == "drop-quarantined":
            if not await self.confirm(
                "Drop quarantined events",
                f"Drop the {count} event(s) route {route!r} holds in quarantine?\n\n"
                "They are not published; the events stay in the capture (export them first to keep "
                "a list: eventdesk quarantine export).",
            ):
                return
            done = await self.runtime.db(capture.quarantine_drop, route)
            message = f"route {route!r}: dropped {done} quarantined event(s)"
        else:
            done = await self.runtime.db(capture.quarantine_retry, route)
            message = f"route {route!r}: {done} quarantined event(s) will be sent again" + (
                "" if self.runtime.state_of(f"route/{route}").state is State.RUNNING else " once it runs"
            )
        self.notifications.notify("info", message, key=f"quarantine/{route}")
        self.status_changed()
