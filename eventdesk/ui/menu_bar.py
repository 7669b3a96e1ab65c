"""The main window's menu bar: every command where people look for it.

File (new or open a workspace, the demo workspace, open a recording, export, quit), Edit (add an object), View (the
panes, follow, pause, filter, the Fleet window of ui/fleet_view.py), Run (start and stop all,
or one model from a submenu rebuilt each time it opens) and Help (the keyboard shortcuts, the documentation, versions). It holds
no logic of its own: its entries are the window's actions (the same objects as the toolbar's,
so they share their enabled and checked state) or call the window's commands.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar, QWidget

from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui.demo_actions import DemoActions
from eventdesk.ui.event_table import EventTableView
from eventdesk.ui.fleet_view import FleetView
from eventdesk.ui.fleet_watch import FleetWatch
from eventdesk.ui.help_dialogs import AboutDialog, ShortcutsDialog, documentation_url
from eventdesk.ui.notifications import NotificationArea
from eventdesk.ui.object_commands import ObjectCommands
from eventdesk.ui.session_restore import restart_enabled, set_restart_enabled


class DeskWindow(Protocol):
    """What the menus use of the main window (its actions, panes and model commands)."""

    @property
    def home(self) -> Home: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def demo(self) -> DemoActions: ...
    @property
    def notifications(self) -> NotificationArea: ...
    @property
    def toolbar(self) -> QToolBar: ...
    @property
    def table(self) -> EventTableView: ...
    @property
    def tree(self) -> QWidget: ...
    @property
    def rate_chart(self) -> QWidget: ...
    @property
    def detail(self) -> QWidget: ...
    @property
    def commands(self) -> ObjectCommands: ...
    @property
    def act_add_datasource(self) -> QAction: ...
    @property
    def act_add_model(self) -> QAction: ...
    @property
    def act_add_broker(self) -> QAction: ...
    @property
    def act_add_route(self) -> QAction: ...
    @property
    def act_start_all(self) -> QAction: ...
    @property
    def act_stop_all(self) -> QAction: ...
    @property
    def act_pause(self) -> QAction: ...
    @property
    def act_focus_filter(self) -> QAction: ...
    @property
    def act_export(self) -> QAction: ...
    @property
    def act_open_recording(self) -> QAction: ...

    def start_model(self, name: str) -> None: ...
    def stop_model(self, name: str) -> None: ...
    def open_workspace(self, directory: str | None = None, *, new: bool = False) -> Home | None: ...


class DeskMenus(QObject):
    """``DeskMenus(window, main)`` fills ``main.menuBar()`` (``main`` is ``window`` itself, as a
    QMainWindow); ``menus[title]`` is each top menu."""

    def __init__(self, window: DeskWindow, main: QMainWindow) -> None:
        super().__init__(main)
        self.main = main
        self.window = window
        bar = main.menuBar()
        self.menus: dict[str, QMenu] = {}
        for title in ("File", "Edit", "View", "Run", "Help"):
            menu = bar.addMenu(f"&{title}")
            menu.setObjectName(f"menu_{title.lower()}")
            self.menus[title] = menu
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.about_dialog: AboutDialog | None = None
        self.fleet_view: FleetView | None = None

        file = self.menus["File"]
        self.act_new_workspace = self._action(
            "new_workspace", "New workspace…", lambda: window.open_workspace(new=True), "Ctrl+N"
        )
        self.act_new_workspace.setToolTip(
            "Start an empty workspace in a directory you choose, and switch to it"
        )
        self.act_open_workspace = self._action(
            "open_workspace", "Open workspace…", lambda: window.open_workspace(), "Ctrl+Shift+O"
        )
        self.act_open_workspace.setToolTip(
            "Switch to the workspace (and its capture) in another directory; this one's models stop"
        )
        file.addAction(self.act_new_workspace)
        file.addAction(self.act_open_workspace)
        file.addSeparator()
        self.act_open_demo = self._action("open_demo", "Open the demo workspace", window.demo.open_demo)
        self.act_open_demo.setToolTip(
            "Create the demo's webhook, model, built-in broker and route, and start them"
        )
        file.addAction(self.act_open_demo)
        file.addAction(window.act_open_recording)
        file.addAction(window.act_export)
        file.addSeparator()
        self.act_quit = self._action("quit", "Quit", main.close, "Ctrl+Q")
        self.act_quit.setMenuRole(QAction.MenuRole.QuitRole)
        file.addAction(self.act_quit)

        edit = self.menus["Edit"]
        for action in (
            window.act_add_datasource,
            window.act_add_model,
            window.act_add_broker,
            window.act_add_route,
        ):
            edit.addAction(action)

        view = self.menus["View"]
        self.act_show_tree = self._toggle("show_tree", "Workspace tree", window.tree)
        self.act_show_rates = self._toggle("show_rates", "Rate chart", window.rate_chart)
        self.act_show_detail = self._toggle("show_detail", "Event detail", window.detail)
        self.act_show_toolbar = window.toolbar.toggleViewAction()
        self.act_show_toolbar.setText("Toolbar")
        for action in (self.act_show_tree, self.act_show_rates, self.act_show_detail, self.act_show_toolbar):
            view.addAction(action)
        view.addSeparator()
        view.addAction(window.table.follow_action)
        view.addAction(window.table.newest_first_action)
        view.addAction(window.table.goto_action)
        view.addAction(window.act_pause)
        view.addAction(window.act_focus_filter)
        view.addAction(window.table.clear_action)
        view.addSeparator()
        self.act_fleet = self._action("fleet", "Fleet…", self.show_fleet)
        self.act_fleet.setToolTip(
            "The agents running this workspace with eventdesk run --fleet, and their models"
        )
        view.addAction(self.act_fleet)

        run = self.menus["Run"]
        run.addAction(window.act_start_all)
        run.addAction(window.act_stop_all)
        self.models_menu = run.addMenu("Model")
        self.models_menu.setObjectName("menu_run_model")
        self.models_menu.aboutToShow.connect(self.rebuild_models_menu)
        run.addSeparator()
        self.act_restart_running = QAction("Restart running models at launch", self.main)
        self.act_restart_running.setObjectName("restart_running")
        self.act_restart_running.setCheckable(True)
        self.act_restart_running.setChecked(restart_enabled())
        self.act_restart_running.setToolTip(
            "Start again, when EventDesk opens, the models that were running when it was closed"
        )
        self.act_restart_running.toggled.connect(set_restart_enabled)
        run.addAction(self.act_restart_running)
        run.addSeparator()
        run.addAction(window.act_pause)
        run.addAction(window.demo.act_send_samples)

        help_menu = self.menus["Help"]
        self.act_shortcuts = self._action("shortcuts", "Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_docs = self._action("documentation", "Documentation", self.open_documentation)
        self.act_about = self._action("about", "About EventDesk", self.show_about)
        self.act_about.setMenuRole(QAction.MenuRole.AboutRole)
        for action in (self.act_shortcuts, self.act_docs, self.act_about):
            help_menu.addAction(action)
        self.rebuild_models_menu()

    def _action(
        self,
        name: str,
        text: str,
        slot: object,
        shortcut: str | None = None,
    ) -> QAction:
        action = QAction(text, self.main)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())  # type: ignore[operator]
        self.main.addAction(action)
        return action

    def _toggle(self, name: str, text: str, widget: QWidget) -> QAction:
        action = QAction(text, self.main)
        action.setObjectName(name)
        action.setCheckable(True)
        action.setChecked(True)
        action.toggled.connect(widget.setVisible)
        return action

    # -- Run ▸ Model -------------------------------------------------------------------------
    def rebuild_models_menu(self) -> None:
        """One submenu per model with Start and Stop, each enabled only when it would act."""
        window = self.window
        for old in self.models_menu.findChildren(QMenu):  # clear() keeps submenus: drop them now
            old.setParent(None)
            old.deleteLater()
        self.models_menu.clear()
        self.model_actions: dict[str, tuple[QAction, QAction]] = {}
        models = list(window.home.workspace.models)
        self.models_menu.setEnabled(bool(models))
        read_only = window.home.read_only is not None
        for name in models:
            state = window.runtime.state_of(f"model/{name}").state
            sub = self.models_menu.addMenu(f"{name} ({state.value})")
            sub.setObjectName(f"menu_model_{name}")
            start = sub.addAction("Start")
            start.setObjectName(f"start_model_{name}")
            start.setEnabled(not read_only and state in (State.STOPPED, State.ERROR))
            start.triggered.connect(lambda _checked=False, n=name: window.start_model(n))
            stop = sub.addAction("Stop")
            stop.setObjectName(f"stop_model_{name}")
            stop.setEnabled(not read_only and state is not State.STOPPED)
            stop.triggered.connect(lambda _checked=False, n=name: window.stop_model(n))
            self.model_actions[name] = (start, stop)

    # -- View ▸ Fleet… ------------------------------------------------------------------------
    def show_fleet(self) -> FleetView:
        if self.fleet_view is None:
            w = self.window
            watch = FleetWatch(w.home, w.runtime, self.main, w.commands.workspace_changed)
            self.fleet_view = FleetView(w.home, watch, self.main)
        self.fleet_view.show()
        self.fleet_view.raise_()
        return self.fleet_view

    # -- Help --------------------------------------------------------------------------------
    def show_shortcuts(self) -> ShortcutsDialog:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self.main.findChildren(QAction), self.main)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()
        return self.shortcuts_dialog

    def open_documentation(self) -> bool:
        """Open the README (docs/ is linked from it) with the desktop's viewer."""
        url = documentation_url()
        if url is None:
            self.window.notifications.notify(
                "info", "This installation has no README; run eventdesk --help for the commands", key="docs"
            )
            return False
        return QDesktopServices.openUrl(url)

    def show_about(self) -> AboutDialog:
        if self.about_dialog is None:
            self.about_dialog = AboutDialog(self.main)
        self.about_dialog.show()
        self.about_dialog.raise_()
        return self.about_dialog
