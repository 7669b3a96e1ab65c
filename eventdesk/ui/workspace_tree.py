"""The sidebar: datasources with their models, brokers with their routes, each with live state.

State arrives from the runtime's ``on_state`` callbacks (see ``MainWindow``); rates and
backlogs from the window's once-a-second tick. Context menus only *ask* for things
(``actionRequested``); the window does them, as owned tasks.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QMenu, QStyle, QTreeView, QWidget

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.workspace import Workspace
from eventdesk.ui import icons
from eventdesk.ui.dialog_guidance import label_fields

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
STATE_ROLE = Qt.ItemDataRole.UserRole + 2

INVALID = "invalid"  # the status of an object that does not validate (see Workspace.invalid)

GROUP_DATASOURCES = "group/datasources"
GROUP_BROKERS = "group/brokers"

STATE_COLOURS = {
    State.STOPPED: "#9e9e9e",
    State.CONNECTING: "#fbc02d",
    State.STOPPING: "#fbc02d",
    State.RUNNING: "#43a047",
    State.RETRYING: "#fb8c00",
    State.ERROR: "#e53935",
}
# Which state a datasource shows when its models differ: the most urgent one.
_URGENCY = [State.ERROR, State.RETRYING, State.CONNECTING, State.STOPPING, State.RUNNING, State.STOPPED]


def state_icon(state: State) -> QIcon:
    """The state's disc from eventdesk/ui/icon_files/states: colour and mark differ per state."""
    return icons.state_icon(state)


def split_key(key: str) -> tuple[str, str]:
    kind, _, name = key.partition("/")
    return kind, name


class WorkspaceTreeModel(QStandardItemModel):
    """Two columns (name, status); one item per object, addressed by keys like ``model/NAME``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Name", "Status"])
        self.workspace = Workspace()
        self._items: dict[str, tuple[QStandardItem, QStandardItem]] = {}
        self.states: dict[str, StateChange] = {}
        self.last_error: dict[str, str] = {}
        self.rates: dict[str, float] = {}
        self.backlogs: dict[str, int] = {}
        self.quarantined: dict[str, int] = {}

    # -- structure -------------------------------------------------------------------------
    def rebuild(self, workspace: Workspace) -> None:
        """Mirror ``workspace``; live state already known is kept."""
        self.workspace = workspace
        self.removeRows(0, self.rowCount())
        self._items.clear()
        folder = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon)
        ds_group = self._append(self.invisibleRootItem(), GROUP_DATASOURCES, "Datasources", folder)
        br_group = self._append(self.invisibleRootItem(), GROUP_BROKERS, "Brokers", folder)
        # Invalid objects are shown too (marked), each under its parent if that is shown.
        for parent_type, child_type, parent_key, group in (
            ("datasource", "model", "datasource", ds_group),
            ("broker", "route", "broker", br_group),
        ):
            children = workspace.stored(child_type)
            for parent in sorted(workspace.stored(parent_type)):
                parent_item = self._append(group, f"{parent_type}/{parent}", parent)
                for child in sorted(n for n, c in children.items() if getattr(c, parent_key) == parent):
                    self._append(parent_item, f"{child_type}/{child}", child)
            for child in sorted(children):
                if f"{child_type}/{child}" not in self._items:  # its parent does not exist
                    self._append(group, f"{child_type}/{child}", child)
        self._items[GROUP_DATASOURCES][1].setText(f"{len(workspace.stored('datasource'))}")
        self._items[GROUP_BROKERS][1].setText(f"{len(workspace.stored('broker'))}")
        for key in list(self._items):
            if not key.startswith("group/"):
                self._refresh(key)

    def _append(self, parent: QStandardItem, key: str, text: str, icon: QIcon | None = None) -> QStandardItem:
        item = QStandardItem(text)
        status = QStandardItem("")
        for it in (item, status):
            it.setEditable(False)
            it.setData(key, KEY_ROLE)
        if icon is not None:
            item.setIcon(icon)
        parent.appendRow([item, status])
        self._items[key] = (item, status)
        return item

    def item_of(self, key: str) -> QStandardItem | None:
        pair = self._items.get(key)
        return pair[0] if pair else None

    def status_item(self, key: str) -> QStandardItem | None:
        pair = self._items.get(key)
        return pair[1] if pair else None

    def index_of(self, key: str) -> QModelIndex:
        item = self.item_of(key)
        return item.index() if item is not None else QModelIndex()

    @property
    def keys(self) -> list[str]:
        return list(self._items)

    # -- live state ------------------------------------------------------------------------
    def state(self, key: str) -> StateChange:
        kind, name = split_key(key)
        if kind == "datasource":
            models = [f"model/{m.name}" for m in self.workspace.models_of(name)]
            states = [self.states.get(k, StateChange(State.STOPPED)) for k in models]
            for candidate in _URGENCY:
                for change in states:
                    if change.state is candidate:
                        return change
            return StateChange(State.STOPPED)
        return self.states.get(key, StateChange(State.STOPPED))

    def set_state(self, key: str, change: StateChange) -> None:
        self.states[key] = change
        if change.detail and change.state in (State.ERROR, State.RETRYING):
            self.last_error[key] = change.detail
        self._refresh(key)
        kind, name = split_key(key)
        if kind == "model" and name in self.workspace.models:
            self._refresh(f"datasource/{self.workspace.models[name].datasource}")

    def set_rate(self, model: str, rate: float) -> None:
        if self.rates.get(model) != rate:
            self.rates[model] = rate
            self._refresh(f"model/{model}")

    def set_backlog(self, route: str, backlog: int) -> None:
        if self.backlogs.get(route) != backlog:
            self.backlogs[route] = backlog
            self._refresh(f"route/{route}")

    def set_quarantined(self, counts: dict[str, int]) -> None:
        """Every route's quarantine (routes missing from ``counts`` have none)."""
        for route in set(self.quarantined) | set(counts):
            count = counts.get(route, 0)
            if self.quarantined.get(route, 0) != count:
                self.quarantined[route] = count
                self._refresh(f"route/{route}")

    def status_text(self, key: str) -> str:
        kind, name = split_key(key)
        change = self.state(key)
        parts = [change.state.value]
        if change.state is State.RETRYING and change.retry_in:
            parts[0] = f"retrying in {change.retry_in:.0f} s"
        if kind == "model":
            rate = self.rates.get(name, 0.0)
            if rate or change.state is State.RUNNING:
                parts.append(f"{rate:.1f} ev/s")
            if any(r.enabled for r in self.workspace.routes_of_model(name)):
                parts.append("republishing")
        elif kind == "route":
            route = self.workspace.routes.get(name)
            enabled = route is not None and route.enabled
            parts = [parts[0] if enabled else "disabled"]
            if enabled and change.state is State.STOPPED:
                parts = ["enabled"]
            backlog = self.backlogs.get(name)
            if backlog is not None:
                parts.append(f"backlog {backlog}")
            if self.quarantined.get(name):
                parts.append(f"quarantined {self.quarantined[name]}")
        elif kind == "datasource":
            models = self.workspace.models_of(name)
            running = sum(1 for m in models if self.state(f"model/{m.name}").state is State.RUNNING)
            summary = f"{running}/{len(models)} running"
            parts = [summary] if change.state in (State.RUNNING, State.STOPPED) else [parts[0], summary]
        return " · ".join(parts)

    def tooltip(self, key: str) -> str:
        kind, name = split_key(key)
        bad = self.workspace.invalid.get(key)
        if bad is not None:
            return f"{bad.label} is invalid and does not run:\n{bad.error.describe()}\nEdit it to fix it, or remove it."
        change = self.state(key)
        lines = [f"{kind} {name!r}"]
        if kind == "model" and name in self.workspace.models:
            lines[0] += f" of datasource {self.workspace.models[name].datasource!r}"
        if kind == "route" and name in self.workspace.routes:
            r = self.workspace.routes[name]
            lines[0] += f": {r.model} → {r.broker}, topic {r.typed.topic!r}"
            lines.append("Enabled" if r.enabled else "Disabled")
        lines.append(f"State: {change.state.value}")
        if change.retry_in:
            lines.append(f"Next retry in {change.retry_in:.0f} s")
        if change.detail:
            lines.append(f"Detail: {label_fields(change.detail, self.workspace)}")
        last = self.last_error.get(key)
        if kind == "datasource":
            last = next(
                (
                    self.last_error[f"model/{m.name}"]
                    for m in self.workspace.models_of(name)
                    if f"model/{m.name}" in self.last_error
                ),
                None,
            )
        if last and last != change.detail:
            lines.append(f"Last error: {label_fields(last, self.workspace)}")
        return "\n".join(lines)

    def _refresh(self, key: str) -> None:
        pair = self._items.get(key)
        if pair is None:
            return
        item, status = pair
        tip = self.tooltip(key)
        if key in self.workspace.invalid:
            item.setIcon(state_icon(State.ERROR))
            item.setData(INVALID, STATE_ROLE)
            item.setToolTip(tip)
            status.setText(INVALID)
            status.setToolTip(tip)
            status.setForeground(QColor(STATE_COLOURS[State.ERROR]))
            return
        change = self.state(key)
        kind, name = split_key(key)
        disabled_route = kind == "route" and not (
            name in self.workspace.routes and self.workspace.routes[name].enabled
        )
        item.setIcon(state_icon(State.STOPPED if disabled_route else change.state))
        item.setData(change.state.value, STATE_ROLE)
        item.setToolTip(tip)
        status.setText(self.status_text(key))
        status.setToolTip(tip)
        colour = STATE_COLOURS[change.state] if change.state in (State.ERROR, State.RETRYING) else None
        if colour is None and kind == "route" and self.quarantined.get(name):
            colour = STATE_COLOURS[State.ERROR]
        if colour is not None:
            status.setForeground(QColor(colour))
        else:
            status.setData(None, Qt.ItemDataRole.ForegroundRole)


class WorkspaceTree(QTreeView):
    """The tree view; ``actionRequested(action, object_type, name)`` from its context menus."""

    actionRequested = Signal(str, str, str)
    objectSelected = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree_model = WorkspaceTreeModel(self)
        self.setModel(self.tree_model)
        self.setObjectName("workspace_tree")
        self.setAccessibleName("Workspace")
        self.setAccessibleDescription("Datasources with their models, brokers and routes, with states")
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.setAlternatingRowColors(False)
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 170)
        self._collapsed: set[str] = set()
        self.collapsed.connect(lambda index: self._collapsed.add(str(index.data(KEY_ROLE))))
        self.expanded.connect(lambda index: self._collapsed.discard(str(index.data(KEY_ROLE))))
        self.doubleClicked.connect(self._double_clicked)
        self.menu: QMenu | None = None

    def rebuild(self, workspace: Workspace) -> None:
        selected = self.selected_key()
        self.tree_model.rebuild(workspace)
        for key in self.tree_model.keys:
            index = self.tree_model.index_of(key)
            if self.tree_model.hasChildren(index) and key not in self._collapsed:
                self.setExpanded(index, True)
        needed = self.sizeHintForColumn(0)
        if needed > self.header().sectionSize(0):  # grow for long names; never shrink a user's width
            self.header().resizeSection(0, needed)
        if selected:
            index = self.tree_model.index_of(selected)
            if index.isValid():
                self.setCurrentIndex(index)

    def selected_key(self) -> str | None:
        index = self.currentIndex()
        return str(index.data(KEY_ROLE)) if index.isValid() else None

    def currentChanged(
        self, current: QModelIndex | QPersistentModelIndex, previous: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().currentChanged(current, previous)
        if current.isValid():
            kind, name = split_key(str(current.data(KEY_ROLE)))
            self.objectSelected.emit(kind, name)

    def _double_clicked(self, index: QModelIndex) -> None:
        kind, name = split_key(str(index.data(KEY_ROLE)))
        if kind in ("datasource", "model", "broker", "route"):
            self.actionRequested.emit("edit", kind, name)

    # -- context menus ---------------------------------------------------------------------
    def actions_for(self, key: str) -> list[tuple[str, str, bool]]:
        """(action id, label, enabled) of ``key``'s menu; empty ids are separators."""
        kind, name = split_key(key)
        ws = self.tree_model.workspace
        state = self.tree_model.state(key).state
        active = state in (State.RUNNING, State.CONNECTING, State.RETRYING)
        sep = ("", "", False)
        if key == GROUP_DATASOURCES:
            return [("add-datasource", "Add datasource…", True)]
        if key == GROUP_BROKERS:
            return [("add-broker", "Add broker…", True)]
        if key in ws.invalid:  # it cannot run: fix it or remove it
            return [("edit", "Edit…", True), ("remove", "Remove…", True)]
        if kind == "datasource":
            has_models = bool(ws.models_of(name))
            return [
                ("start", "Start all models", has_models),
                ("stop", "Stop all models", has_models and state is not State.STOPPED),
                sep,
                ("add-model", "Add model…", True),
                ("test", "Test connection", True),
                ("leftovers", "Left on the server…", True),
                ("edit", "Edit…", True),
                ("remove", "Remove…", True),
            ]
        if kind == "model":
            publishing = any(r.enabled for r in ws.routes_of_model(name))
            return [
                ("start", "Start", not active),
                ("stop", "Stop", state is not State.STOPPED and state is not State.STOPPING),
                sep,
                ("republish", "Republish…", True),
                ("unpublish", "Stop republishing", publishing),
                sep,
                ("test", "Test connection", True),
                ("edit", "Edit…", True),
                ("remove", "Remove…", True),
            ]
        if kind == "broker":
            return [
                ("add-route", "Add route…", bool(ws.models)),
                ("test", "Test connection", True),
                ("edit", "Edit…", True),
                ("remove", "Remove…", True),
            ]
        if kind == "route":
            enabled = name in ws.routes and ws.routes[name].enabled
            held = self.tree_model.quarantined.get(name, 0)
            return [
                ("disable", "Disable", True) if enabled else ("enable", "Enable", True),
                sep,
                ("show-quarantined", f"Show quarantined events ({held})", held > 0),
                ("retry-quarantined", "Retry quarantined events", held > 0),
                ("drop-quarantined", "Drop quarantined events…", held > 0),
                sep,
                ("edit", "Edit…", True),
                ("remove", "Remove…", True),
            ]
        return []

    def menu_for(self, key: str) -> QMenu:
        kind, name = split_key(key)
        menu = QMenu(self)
        for action_id, label, enabled in self.actions_for(key):
            if not action_id:
                menu.addSeparator()
                continue
            action = QAction(label, menu)
            action.setObjectName(action_id)
            action.setEnabled(enabled)
            icon_name = "test-connection" if action_id == "test" else action_id
            if icon_name in icons.ACTIONS:
                action.setIcon(icons.icon(icon_name))
            action.triggered.connect(
                lambda _checked=False, a=action_id, k=kind, n=name: self.actionRequested.emit(a, k, n)
            )
            menu.addAction(action)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        if self.menu is not None:
            self.menu.deleteLater()
        self.menu = self.menu_for(str(index.data(KEY_ROLE)))
        self.menu.popup(self.viewport().mapToGlobal(pos))
