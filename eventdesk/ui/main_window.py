"""The main window: the workspace tree, the live event table with its filter, detail and rates.

It is view code: it builds the widgets, wires their signals, and shows what the runtime reports
(states, batches, the status snapshot). What its commands do lives beside it: object commands
(add, edit, remove, test: ui/object_commands.py) and run control (start, stop, routes on and
off: ui/run_control.py), both through the runtime's public API and as owned asyncio tasks, so
nothing here blocks the event loop. Errors show on their tree node and as one non-modal banner
per object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QHeaderView,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.capture import CapturedEvent
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import EventDeskError
from eventdesk.core.filters import EventFilter, FilterError
from eventdesk.core.home import Home
from eventdesk.core.recording import ImportResult
from eventdesk.core.runtime import Runtime
from eventdesk.ui import icons
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.demo_actions import DemoActions
from eventdesk.ui.empty_state import EmptyState
from eventdesk.ui.event_detail import EventDetail
from eventdesk.ui.event_table import EventTableView
from eventdesk.ui.export_dialog import ExportDialog
from eventdesk.ui.filter_bar import FilterBar
from eventdesk.ui.home_opening import choose_workspace_dir, open_workspace_dir
from eventdesk.ui.live_feed import LiveFeed
from eventdesk.ui.menu_bar import DeskMenus
from eventdesk.ui.notifications import NotificationArea
from eventdesk.ui.object_commands import ObjectCommands
from eventdesk.ui.object_dialogs import ObjectDialog, describe_error
from eventdesk.ui.rate_chart import RateChart
from eventdesk.ui.read_only import BANNER_KEY, HomeWatcher, read_only_banner
from eventdesk.ui.recording_view import RecordingOpener, selected_positions
from eventdesk.ui.run_control import RunControl
from eventdesk.ui.session_restore import models_to_restart, remember_running
from eventdesk.ui.state_banners import StateBanners
from eventdesk.ui.status_bar import StatusSummary, Summary
from eventdesk.ui.tray import DeskTray
from eventdesk.ui.window_layout import restore_layout, save_layout
from eventdesk.ui.workspace_tree import WorkspaceTree

log = logging.getLogger(__name__)
TREE_MIN_WIDTH = 180  # its names stay readable; the window's minimum width grows to ~780

TICK_MS = 1000


class MainWindow(QMainWindow):
    """``MainWindow(home)``; call ``await shutdown()`` once before the app quits.

    With ``defer_close`` (the app), closing the window only emits ``closeRequested``; the
    app then awaits :meth:`shutdown` and closes it for good.
    """

    closeRequested = Signal()
    homeOpened = Signal(object)  # a Home opened from File ▸ New/Open workspace: the app switches to it

    def __init__(self, home: Home, *, defer_close: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.defer_close = defer_close
        self._shut_down = False
        self._close_requested = False
        self.total_backlog: int | None = None
        self.total_quarantined = 0
        self._export_dialog: ExportDialog | None = None
        self.setWindowTitle("EventDesk")
        self.resize(1280, 800)

        self.runtime = Runtime(home.workspace, home.capture)
        self.tasks = TaskSlots(on_error=self._task_failed)
        self.feed = LiveFeed(self.runtime, self)
        self._listening = [  # unsubscribed on shutdown: the window stops showing what the runtime says
            self.runtime.on_state(self._on_state),
            self.runtime.on_terminal(self._on_terminal),
            self.runtime.on_quarantine(self._on_quarantine),
        ]

        self._build_actions()
        self._build_central()
        self.commands = ObjectCommands(
            self,
            home,
            self.runtime,
            self.tasks,
            self.notifications,
            workspace_changed=self.workspace_changed,
            status_changed=self.refresh_status,
        )
        self.state_banners = StateBanners(
            self.notifications, lambda: self.home.workspace, self.commands.enter_secret
        )
        self.tray = DeskTray(self, lambda: self.home.workspace)
        self.run_control = RunControl(
            self,
            home,
            self.runtime,
            self.tasks,
            workspace_changed=self.workspace_changed,
            state_changed=self._update_actions,
        )
        self.demo = DemoActions(
            self,
            self.home,
            self.runtime,
            self.tasks,
            self.notifications,
            workspace_changed=self.workspace_changed,
        )
        self.addAction(self.demo.act_send_samples)
        self.toolbar.addSeparator()
        self.toolbar.addAction(self.demo.act_send_samples)
        self.empty_state.open_demo.clicked.connect(self.demo.open_demo)
        self.menus = DeskMenus(self, self)
        self.status = StatusSummary(self)
        self.setStatusBar(self.status)

        self.feed.batch.connect(self._on_batch)
        self.table.pausedChanged.connect(self._on_paused)
        self.table.selectedEvent.connect(self._on_selected_event)
        self.filter_bar.filterChanged.connect(self._on_filter)
        self.status.quarantineClicked.connect(lambda: self.filter_bar.set_quarantined(True))
        self.detail.filterRequested.connect(self.filter_bar.set_expression)
        self.tree.actionRequested.connect(self.do_action)
        self.tree.objectSelected.connect(self._on_tree_selection)

        self.watcher: HomeWatcher | None = None
        self.workspace_changed()
        self.restore_settings()
        self.table.model.load_history(home.capture)
        if home.read_only is not None:
            self._enter_read_only(str(home.read_only))
        else:  # once the event loop runs: the models that ran at the last close, if asked for
            QTimer.singleShot(0, self.restart_models)

        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self.tick)
        self._tick.start()

    # -- construction ----------------------------------------------------------------------
    def _action(
        self,
        name: str,
        text: str,
        slot: Callable[[], object],
        shortcut: str | None = None,
        icon: str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setToolTip(f"{text.rstrip('…')} ({QKeySequence(shortcut).toString()})")
        if icon is not None:
            action.setIcon(icons.icon(icon))
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.act_add_datasource = self._action(
            "add_datasource", "Add datasource…", lambda: self.commands.add_datasource(), icon="add-datasource"
        )
        self.act_add_model = self._action(
            "add_model", "Add model…", lambda: self.commands.add_model(), icon="add-model"
        )
        self.act_add_broker = self._action(
            "add_broker", "Add broker…", lambda: self.commands.add_broker(), icon="add-broker"
        )
        self.act_add_route = self._action(
            "add_route", "Add route…", lambda: self.commands.add_route(), icon="add-route"
        )
        self.act_start_all = self._action(
            "start_all", "Start all", lambda: self.run_control.start_all(), "Ctrl+R", icon="start"
        )
        self.act_stop_all = self._action(
            "stop_all", "Stop all", lambda: self.run_control.stop_all(), "Ctrl+Shift+R", icon="stop"
        )
        self.act_pause = self._action("pause", "Pause", self.toggle_pause, "Ctrl+P", icon="pause")
        self.act_pause.setCheckable(True)  # one state with the table's Pause/Resume (_on_paused)
        self.act_focus_filter = self._action("focus_filter", "Filter", self.focus_filter, "Ctrl+F")
        self.act_export = self._action("export", "Export…", self.export_events, "Ctrl+E", icon="export")
        self.act_open_recording = self._action(
            "open_recording", "Open recording…", self.open_recording, "Ctrl+O", icon="open-recording"
        )
        self.recordings = RecordingOpener(self.home.paths.recordings_dir, self)
        self.recordings.failed.connect(lambda text: self.notifications.notify("error", text, key="recording"))
        self.recordings.imported.connect(self._on_recording_imported)

        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("main_toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.act_add_datasource, self.act_add_model, self.act_add_broker, self.act_add_route):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.act_start_all, self.act_stop_all, self.act_pause):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.act_export)
        toolbar.addAction(self.act_open_recording)
        self.toolbar = toolbar
        self.addToolBar(toolbar)

    def _build_central(self) -> None:
        self.notifications = NotificationArea()
        self.empty_state = EmptyState()
        self.empty_state.add_datasource.clicked.connect(lambda: self.commands.add_datasource())
        self.empty_state.add_broker.clicked.connect(lambda: self.commands.add_broker())

        self.tree = WorkspaceTree()
        self.rate_chart = RateChart()
        self.rate_chart.setObjectName("rate_chart")
        self.filter_bar = FilterBar()
        self.table = EventTableView()
        # several rows can be selected, for "export the selected rows"
        self.table.table.setSelectionMode(self.table.table.SelectionMode.ExtendedSelection)
        self.detail = EventDetail()
        self.detail.setObjectName("event_detail")

        self.left_split = QSplitter(Qt.Orientation.Vertical)
        self.left_split.setObjectName("left_split")
        self.left_split.addWidget(self.tree)
        self.left_split.addWidget(self.rate_chart)
        self.left_split.setStretchFactor(0, 3)
        self.left_split.setStretchFactor(1, 1)
        self.left_split.setSizes([520, 180])

        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.addWidget(self.filter_bar)
        centre_layout.addWidget(self.table, 1)

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("main_split")
        self.main_split.addWidget(self.left_split)
        self.main_split.addWidget(centre)
        self.main_split.addWidget(self.detail)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([390, 700, 360])
        # at the smallest window (826x550) the tree keeps room for its names, and a drag never
        # collapses the tree or the table to nothing (the detail pane may go: View ▸ Event detail)
        self.left_split.setMinimumWidth(TREE_MIN_WIDTH)
        self.main_split.setCollapsible(0, False)
        self.main_split.setCollapsible(1, False)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_state)
        self.stack.addWidget(self.main_split)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.notifications.overlay_on(central)  # banners float: they never push the table

    # -- workspace -------------------------------------------------------------------------
    @property
    def showing_empty_state(self) -> bool:
        return self.stack.currentWidget() is self.empty_state

    def workspace_changed(self) -> None:
        """Mirror the workspace in the tree, the filter's model list and the toolbar."""
        ws = self.home.workspace
        self.runtime.set_workspace(ws)
        self.tree.rebuild(ws)
        for key, change in self.runtime.states().items():
            self.tree.tree_model.set_state(key, change)
        self.stack.setCurrentWidget(self.empty_state if ws.empty else self.main_split)
        self.filter_bar.set_models(ws.models)
        self._update_actions()
        self.run_control.start_services()

    def _enter_read_only(self, reason: str) -> None:
        """Another process holds the home: watch it; start, stop and edit are off."""
        self.setWindowTitle("EventDesk (read only)")
        self.notifications.notify("warning", read_only_banner(reason), key=BANNER_KEY)
        self.watcher = HomeWatcher(self, parent=self)
        self._update_actions()

    def _update_actions(self) -> None:
        ws = self.home.workspace
        self.act_add_model.setEnabled(bool(ws.datasources))
        self.act_add_route.setEnabled(bool(ws.models))
        states = [self.runtime.state_of(f"model/{m}").state for m in ws.models]
        self.act_start_all.setEnabled(any(s in (State.STOPPED, State.ERROR) for s in states))
        self.act_stop_all.setEnabled(
            any(s is not State.STOPPED for s in states) or self.runtime.is_running("route")
        )
        self.demo.act_send_samples.setVisible(self.demo.sample_model() is not None)  # webhooks only
        if self.home.read_only is not None:
            for action in (
                self.act_add_datasource,
                self.act_add_model,
                self.act_add_broker,
                self.act_add_route,
                self.act_start_all,
                self.act_stop_all,
                self.demo.act_send_samples,
                self.menus.act_open_demo,
            ):
                action.setEnabled(False)
            for button in (
                self.empty_state.add_datasource,
                self.empty_state.add_broker,
                self.empty_state.open_demo,
            ):
                button.setEnabled(False)

    # -- actions ---------------------------------------------------------------------------
    def do_action(self, action: str, kind: str, name: str) -> None:
        """What the tree's context menus ask for."""
        ws = self.home.workspace
        if action in ("show-quarantined", "retry-quarantined", "drop-quarantined"):
            # Views of the capture and quarantine edits: a runner holding the home picks the
            # edits up as `eventdesk quarantine` ones, so they are allowed read only too.
            if action == "show-quarantined":
                routes = self.home.workspace.routes
                self.filter_bar.set_model(routes[name].model if name in routes else None)
                self.filter_bar.set_quarantined(True)
            else:
                self.tasks.start(f"{action}/{name}", self.commands.quarantine_action(action, name))
            return
        if self.home.read_only is not None and action not in ("test", "leftovers"):
            self.notifications.notify("warning", read_only_banner(str(self.home.read_only)), key=BANNER_KEY)
            return
        commands, run = self.commands, self.run_control
        if action == "add-datasource":
            commands.add_datasource()
        elif action == "add-broker":
            commands.add_broker()
        elif action == "add-model":
            commands.add_model(name)
        elif action == "add-route":
            commands.add_route()
        elif action == "edit":
            commands.edit(kind, name)
        elif action == "remove":
            self.tasks.start(f"remove/{kind}/{name}", commands.remove(kind, name))
        elif action in ("test", "leftovers"):  # they ask the server; the home stays as it is
            self.tasks.start(f"{action}/{kind}/{name}", commands.ask_server(action, kind, name))
        elif action in ("start", "stop"):
            for model in [name] if kind == "model" else [m.name for m in ws.models_of(name)]:
                (run.start_model if action == "start" else run.stop_model)(model)
        elif action == "republish":
            commands.republish(name)
        elif action == "unpublish":
            run.unpublish(name)
        elif action in ("enable", "disable"):
            run.set_route_enabled(name, action == "enable")

    # The dialogs and confirmations open now, and starting a model (what tests drive).
    @property
    def dialogs(self) -> list[QDialog]:
        return self.commands.dialogs

    @property
    def last_dialog(self) -> ObjectDialog | None:
        return self.commands.last_dialog

    @property
    def confirm_box(self) -> QMessageBox | None:
        return self.commands.confirm_box

    def restart_models(self) -> None:
        """Start the models that were running at the last close (Run ▸ Restart running models at launch)."""
        if not self._shut_down:
            for name in models_to_restart(self.home.workspace):
                self.run_control.start_model(name)

    def start_model(self, name: str) -> None:
        self.run_control.start_model(name)

    def stop_model(self, name: str) -> None:
        self.run_control.stop_model(name)

    def toggle_pause(self) -> None:
        self.table.set_paused(not self.table.model.paused)
        self._on_paused(self.table.model.paused)

    def _on_paused(self, paused: bool) -> None:
        """The table paused or resumed (from either control): the toolbar's action shows it."""
        self.act_pause.setChecked(paused)
        self.act_pause.setText("Resume" if paused else "Pause")

    def focus_filter(self) -> None:
        self.filter_bar.focus_filter()

    def export_events(self) -> ExportDialog:
        """The export dialog over the capture, the table's current filter and its selected rows;
        one at a time: asked again while it is open, the open one is raised."""
        if self._export_dialog is not None and self._export_dialog in self.dialogs:
            self._export_dialog.raise_()
            self._export_dialog.activateWindow()
            return self._export_dialog
        dialog = ExportDialog(
            self.home.capture,
            models=self.home.workspace.models,
            table_filter=self.table.model.event_filter,
            selected=selected_positions(self.table),
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.exported.connect(
            lambda r: self.notifications.notify(
                "success", f"Exported {r.exported:,} events to {r.path}.", key="export"
            )
        )
        self.commands.track(dialog)
        self._export_dialog = dialog
        dialog.show()
        return dialog

    def open_workspace(self, directory: str | None = None, *, new: bool = False) -> Home | None:
        """File ▸ New/Open workspace…: the home in ``directory`` to the app; else a banner why."""
        directory = directory or choose_workspace_dir(self, new=new)
        try:
            other = open_workspace_dir(directory, new=new, current=self.home) if directory else None
        except EventDeskError as exc:
            self.notifications.notify("error", exc.describe(), key="workspace")
            return None
        if other is not None:
            self.homeOpened.emit(other)
        return other

    def open_recording(self) -> None:
        """File ▸ Open recording: a stored recording, or an export imported as a new one."""
        self.recordings.choose()

    def _on_recording_imported(self, result: ImportResult) -> None:
        bad = (
            f"; {result.bad_lines:,} bad lines skipped ({result.problems[0].describe()}, …)"
            if result.bad_lines
            else ""
        )
        self.notifications.notify(
            "warning" if bad else "success",
            f"Imported {result.imported:,} events as recording {result.recording.name}{bad}.",
            key="recording",
        )

    # -- runtime callbacks -----------------------------------------------------------------
    def _on_state(self, key: str, change: StateChange) -> None:
        if self._shut_down:
            return
        self.tree.tree_model.set_state(key, change)
        self.state_banners.show(key, change)
        self.tray.on_state(key, change)
        self._update_actions()

    def _on_terminal(self, key: str, error: EventDeskError) -> None:
        log.info("%s stopped: %s", key, error.describe())

    def _task_failed(self, slot: str, exc: BaseException) -> None:
        log.error("task %s failed", slot, exc_info=exc)
        self.notifications.notify("error", f"{slot}: {describe_error(exc)}", key=f"task/{slot}")

    def _on_batch(self, events: list[CapturedEvent]) -> None:
        self.table.model.append(events)

    def _on_filter(self, flt: EventFilter) -> None:
        try:
            self.table.model.set_filter(flt, self.home.capture)
        except FilterError as exc:  # the bar shows its own error; keep the last good filter
            log.debug("filter rejected: %s", exc)

    def _on_selected_event(self, event: CapturedEvent | None) -> None:
        if event is None:
            self.detail.show_event(None)
            return
        self.tasks.start("detail", self._show_detail(event))

    async def _show_detail(self, event: CapturedEvent) -> None:
        env = event.envelope
        previous = await self.runtime.db(
            self.home.capture.previous_revision, str(env["model"]), str(env["key"]), event.pos
        )
        self.detail.show_event(event, previous)

    def _on_tree_selection(self, kind: str, name: str) -> None:
        ws = self.home.workspace
        if kind == "model":
            self.filter_bar.set_model(name)
        elif kind == "route" and name in ws.routes:
            self.filter_bar.set_model(ws.routes[name].model)
        elif kind in ("group", "datasource"):
            self.filter_bar.set_model(None)

    # -- once a second ---------------------------------------------------------------------
    def tick(self) -> None:
        ws = self.home.workspace
        rates = self.runtime.rates()
        for name in ws.models:
            self.tree.tree_model.set_rate(name, rates.get(name, 0.0))
        if rates:
            self.rate_chart.add_sample(time.monotonic(), rates)
        self.refresh_status()

    def refresh_status(self) -> None:
        """Take a new status snapshot (off the loop) and show it in the status bar and the tree."""
        if not self.tasks.running("status"):
            self.tasks.start("status", self._refresh_status())

    async def _refresh_status(self) -> None:
        status = await self.runtime.status()
        for route in status.routes:
            self.tree.tree_model.set_backlog(route.name, route.backlog)
        held = {r.name: r.quarantined for r in status.routes if r.quarantined}
        held.update({i.name: i.quarantined for i in status.invalid if i.quarantined})
        self.tree.tree_model.set_quarantined(held)
        self.total_backlog = status.backlog
        if status.quarantined != self.total_quarantined:
            self.total_quarantined = status.quarantined
            if self.table.model.event_filter.quarantined:
                self.table.model.refresh()
        self.status.show_summary(Summary.of(status))

    def _on_quarantine(self, route: str, pos: int, field: str, reason: str) -> None:
        """A route set an event aside: say so where the user looks (one banner per route)."""
        self.notifications.notify(
            "warning",
            f"route {route!r} quarantined the event at position {pos} ({field}): {reason}",
            "Its other events go on. Fix the route, then retry from the route's menu "
            "(or eventdesk quarantine retry); the status bar's Quarantined button shows them.",
            key=f"quarantine/{route}",
        )

    # -- persistence -----------------------------------------------------------------------
    def save_settings(self) -> None:
        save_layout(self, self._splits(), self._headers())

    def restore_settings(self) -> None:
        restore_layout(self, self._splits(), self._headers())

    def _splits(self) -> dict[str, QSplitter]:
        return {"main_split": self.main_split, "left_split": self.left_split}

    def _headers(self) -> dict[str, QHeaderView]:
        return {"tree_header": self.tree.header(), "table_header": self.table.table.horizontalHeader()}

    # -- closing ---------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._shut_down:
            self.save_settings()
        if self.defer_close and not self._shut_down:
            event.ignore()
            if not self._close_requested:
                self._close_requested = True
                self.closeRequested.emit()
            return
        super().closeEvent(event)

    async def shutdown(self) -> None:
        """Stop everything that runs: timers, tasks, connectors, routes, brokers. Idempotent."""
        if self._shut_down:
            return
        self.save_settings()
        self._shut_down = True
        self._tick.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.feed.stop()
        self.table.model.stop()
        self.tray.hide()
        if self.home.read_only is None:
            remember_running([m for m in self.home.workspace.models if self.runtime.is_running("model", m)])
        for off in self._listening:
            off()
        for dialog in list(self.dialogs):
            dialog.reject()
        if self.menus.fleet_view is not None:  # its own window, reading the bucket every 2 s
            self.menus.fleet_view.close()
        await self.tasks.cancel_all()
        await self.recordings.shutdown()
        await self.runtime.aclose()
