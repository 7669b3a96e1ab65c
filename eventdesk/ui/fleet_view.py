"""The Fleet window (View ▸ Fleet…): the agents running this workspace with ``eventdesk run
--fleet`` and each model's lease, as the fleet bucket shows them (eventdesk/fleet/status.py, the
same figures as ``eventdesk fleet status``), read again every 2 s by an asyncio task on the
app's loop, so the window never blocks. A read that fails says why in the window (no server, no
bucket for this workspace). The field takes the agents' ``--fleet``: URLs, or the name of a nats
broker or datasource (its connection and this host's secret, eventdesk/fleet/reach.py). What
last worked is kept per workspace in the app's QSettings (unless a URL carries a password or
token). "Watch live" makes the desk follow what the agents publish into a nats broker of the
routes (ui/fleet_watch.py), picked from a menu when there are several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.settings_schema import redact_url
from eventdesk.fleet.reach import fleet_object, is_urls
from eventdesk.fleet.settings import FleetSettings
from eventdesk.fleet.status import FleetStatus, lag_text, read_fleet_status, reader_settings
from eventdesk.fleet.watch import WatchPlan, fleet_models, watched_brokers
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.object_dialog import describe_error
from eventdesk.ui.window_layout import app_settings

REFRESH_MS = 2000
READ_TIMEOUT = 5.0  # seconds for each request to the bucket
AGENT_COLUMNS = ("Agent", "Host", "Models held", "Heartbeat", "State")
MODEL_COLUMNS = ("Model", "Holder", "Lease age", "Renewed", "State", "Source lag", "Backlog per route")


def url_setting(home: Home) -> str:
    return f"fleet/{home.workspace.workspace_id}/url"


def _servers(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def has_credentials(url: str) -> bool:
    """Whether a server of ``url`` carries a user, password or token (never kept in QSettings)."""
    return any(urlsplit(u).username or urlsplit(u).password for u in _servers(url))


def redact_servers(text: str, url: str) -> str:
    """``text`` with each server of ``url`` shown without its password or token."""
    for server in _servers(url):
        parts = urlsplit(server)
        if parts.password is not None:
            text = text.replace(server, redact_url(server))
        elif parts.username:  # nats://TOKEN@host
            text = text.replace(
                server, parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
            )
    return text


def _age(seconds: Any) -> str:
    return "—" if seconds is None else f"{float(seconds):.1f} s"


def agent_rows(status: FleetStatus) -> list[tuple[str, ...]]:
    """(agent, host, models, heartbeat age, alive or silent) per agent."""
    rows: list[tuple[str, ...]] = []
    for agent, a in status.agents.items():
        silent = a["ttl"] is not None and a["seen_ago"] > float(a["ttl"])
        rows.append(
            (
                agent,
                str(a["host"] or ""),
                ", ".join(str(m) for m in a["models"]) or "(none)",
                _age(a["seen_ago"]) + " ago",
                "silent past its TTL" if silent else "alive",
            )
        )
    return rows


def model_rows(status: FleetStatus) -> list[tuple[str, ...]]:
    """(model, holder, lease age, renewed, state, source lag, backlog per route) per model."""
    rows: list[tuple[str, ...]] = []
    for name, m in status.models.items():
        backlog = ", ".join(f"{route}: {r.get('backlog')}" for route, r in m["routes"].items())
        rows.append(
            (
                name,
                m["agent"] or "free",
                _age(m["lease_age"]),
                _age(m["renewed_ago"]) + (" ago" if m["renewed_ago"] is not None else ""),
                str(m["state"] or ""),
                lag_text(m["source_lag"]),
                backlog or "(no routes)",
            )
        )
    return rows


def _fill(table: QTableWidget, rows: list[tuple[str, ...]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))


def _table(columns: tuple[str, ...], name: str) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setObjectName(name)
    table.setAccessibleName(name.replace("_", " "))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class FleetView(QWidget):
    """``FleetView(home, watch, parent)``: a window of its own; ``await watch(broker)`` makes the
    desk follow what the fleet publishes into that nats broker ("Watch live"). ``reads``
    counts the reads that succeeded."""

    def __init__(
        self,
        home: Home,
        watch: Callable[[str], Awaitable[WatchPlan]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setWindowTitle("Fleet")
        self.setObjectName("fleet_view")
        self.home = home
        self.watch = watch
        self.tasks = TaskSlots(on_error=self._task_failed)
        self.reads = 0
        self.status: FleetStatus | None = None
        self._reading = ""
        # The last settings resolved, with what they were resolved from (the field's text and
        # the object it names): a read every 2 s need not ask the keyring each time.
        self._resolved: tuple[tuple[str, object], FleetSettings] | None = None

        self.url_edit = QLineEdit(str(app_settings().value(url_setting(home), "") or ""))
        self.url_edit.setObjectName("fleet_url")
        self.url_edit.setPlaceholderText(
            "nats://HOST:4222[,nats://…], or a nats broker's or datasource's name (the agents' --fleet)"
        )
        self.url_edit.editingFinished.connect(self.refresh)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("fleet_refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.watch_button = QPushButton("Watch live")
        self.watch_button.setObjectName("fleet_watch")
        self.watch_button.setToolTip(
            "Show what every agent publishes into the routes' nats broker in the event table, live "
            "from now (a nats datasource and model named fleet-BROKER, made once and started)"
        )
        self.watch_button.clicked.connect(self.watch_clicked)
        self.watch_menu = QMenu(self)
        self.watch_menu.setObjectName("fleet_watch_menu")
        top = QHBoxLayout()
        top.addWidget(QLabel("Fleet:"))
        top.addWidget(self.url_edit, 1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.watch_button)

        self.message = QLabel("")
        self.message.setObjectName("fleet_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.watch_status = QLabel("")  # what "Watch live" did: kept across reads
        self.watch_status.setObjectName("fleet_watch_status")
        self.watch_status.setWordWrap(True)
        self.watch_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.watch_status.hide()
        self.agents_table = _table(AGENT_COLUMNS, "fleet_agents")
        self.models_table = _table(MODEL_COLUMNS, "fleet_models")

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(self.watch_status)
        layout.addWidget(QLabel("Agents"))
        layout.addWidget(self.agents_table, 1)
        layout.addWidget(QLabel("Models"))
        layout.addWidget(self.models_table, 2)
        self.resize(820, 480)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)

    @property
    def url(self) -> str:
        return self.url_edit.text().strip()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.start()
        self.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        self.tasks.cancel("read")
        super().closeEvent(event)

    def refresh(self) -> None:
        """Read the bucket now, unless a read of this URL is under way (a slow server never
        piles reads up; a read of another URL is dropped)."""
        url = self.url
        if self.tasks.running("read") and url == self._reading:
            return
        if not url:
            self.tasks.cancel("read")
            self.message.setText(
                "Give the fleet's NATS URL, or the nats broker or datasource the agents' --fleet "
                "names, to see its agents and models."
            )
            return
        self._reading = url
        self.tasks.start("read", self._read(url))

    async def _read(self, url: str) -> None:
        ws = self.home.workspace
        source = (url, None if is_urls(url) else fleet_object(ws, url))
        if self._resolved is not None and self._resolved[0] == source:
            settings = self._resolved[1]
        else:  # a name resolves to its object's secret: the keyring blocks, so off the loop
            settings = await asyncio.to_thread(reader_settings, ws, url, "eventdesk-desk")
            self._resolved = (source, settings)
        status = await read_fleet_status(settings, ws.workspace_id, fleet_models(ws), timeout=READ_TIMEOUT)
        self.show_status(status)
        # Kept once it worked; not when it carries a secret (QSettings is a plain file).
        if not has_credentials(url) and app_settings().value(url_setting(self.home)) != url:
            s = app_settings()
            s.setValue(url_setting(self.home), url)
            s.sync()

    def show_status(self, status: FleetStatus) -> None:
        self.status = status
        self.reads += 1
        _fill(self.agents_table, agent_rows(status))
        _fill(self.models_table, model_rows(status))
        self.message.setText(
            f"{len(status.agents)} agent(s), {sum(1 for m in status.models.values() if m['agent'])} of "
            f"{len(status.models)} model(s) held; read every {REFRESH_MS // 1000} s."
        )

    def _read_failed(self, _slot: str, exc: BaseException) -> None:
        self.status = None  # rows of another URL, or of a while ago, would mislead
        self._resolved = None  # a secret put right in the keyring is read at the next try
        _fill(self.agents_table, [])
        _fill(self.models_table, [])
        if isinstance(exc, EventDeskError) and exc.obj == "fleet":  # the field is this window's
            reason = f"Fleet: {exc.detail}"
        else:
            reason = describe_error(exc)
        self.message.setText(redact_servers(f"Cannot read the fleet. {reason}", self._reading))

    def _task_failed(self, slot: str, exc: BaseException) -> None:
        if slot == "read":
            self._read_failed(slot, exc)
        else:
            self.show_watch(f"Cannot watch the fleet's stream. {describe_error(exc)}")

    # -- Watch live -------------------------------------------------------------------------
    def watch_clicked(self) -> None:
        """Watch the one broker the routes publish to, or offer a menu of them."""
        brokers = watched_brokers(self.home.workspace)
        if not brokers:
            self.show_watch(
                "Nothing to watch: no route publishes to a nats broker (the fleet republishes into "
                "the streams of the workspace's nats brokers)."
            )
            return
        if len(brokers) == 1:
            self.watch_broker(brokers[0])
            return
        self.watch_menu.clear()
        for broker in brokers:
            action = self.watch_menu.addAction(f"Broker {broker}")
            action.setObjectName(f"fleet_watch_{broker}")
            action.triggered.connect(lambda _checked=False, b=broker: self.watch_broker(b))
        self.watch_menu.popup(self.watch_button.mapToGlobal(self.watch_button.rect().bottomLeft()))

    def watch_broker(self, broker: str) -> None:
        self.show_watch(f"Starting to watch broker {broker}'s stream…")
        self.tasks.start("watch", self._watch(broker))

    def show_watch(self, text: str) -> None:
        self.watch_status.setText(text)
        self.watch_status.show()

    async def _watch(self, broker: str) -> None:
        plan = await self.watch(broker)
        stream = plan.model_settings.get("stream")
        how = (
            f"reads stream {stream} ({plan.subject}) from now on through an ephemeral consumer"
            if stream
            else f"follows subject {plan.subject} from now on, on core NATS,"
        )
        self.show_watch(
            f"Watching live what the fleet publishes into broker {plan.broker}: model {plan.model} "
            f"(datasource {plan.datasource}) {how} so nothing is kept on the server; its events are "
            "in the main window's table (source.model names the fleet's model)."
        )
