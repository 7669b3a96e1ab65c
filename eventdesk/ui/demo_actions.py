"""The first-run demo in the window: "Open the demo workspace" and "Send sample events".

Opening the demo creates its objects through :mod:`eventdesk.core.demo` (a webhook
datasource, model ``accounts``, the built-in broker, a route to ``/v1/subutest``), starts the
built-in broker and the model, so the webhook listens at once. Sending samples posts account
changes to that webhook over real HTTP; they come back through capture into the table like
any other events. Both run as owned tasks of the window.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui import icons
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.notifications import NotificationArea

SAMPLE_COUNT = 40


class DemoActions(QObject):
    """The demo's "Send sample events" action and "Open the demo workspace" slot.

    It is handed what it works with: the window puts :attr:`act_send_samples` in its toolbar,
    connects its empty state's button to :meth:`open_demo`, and is told through
    ``workspace_changed`` (the workspace has new objects).
    """

    def __init__(
        self,
        parent: QObject,
        home: Home,
        runtime: Runtime,
        tasks: TaskSlots,
        notifications: NotificationArea,
        workspace_changed: Callable[[], None],
    ) -> None:
        super().__init__(parent)
        self.home = home
        self.runtime = runtime
        self.tasks = tasks
        self.notifications = notifications
        self.workspace_changed = workspace_changed
        self.sample_count = SAMPLE_COUNT
        self.act_send_samples = QAction("Send sample events", self)
        self.act_send_samples.setObjectName("send_samples")
        self.act_send_samples.setIcon(icons.icon("send-samples"))
        self.act_send_samples.triggered.connect(lambda _checked=False: self.send_samples())
        self.act_send_samples.setToolTip(
            "Post sample account changes (creates, updates, deletes) to a webhook model over HTTP"
        )

    def sample_model(self) -> str | None:
        """The model samples go to: the demo's, else the first webhook model."""
        ws = self.home.workspace
        if demo.MODEL in ws.models and ws.datasources[ws.models[demo.MODEL].datasource].kind == "webhook":
            return demo.MODEL
        for name, model in ws.models.items():
            if ws.datasources[model.datasource].kind == "webhook":
                return name
        return None

    # -- open the demo -----------------------------------------------------------------------
    def open_demo(self) -> None:
        self.tasks.start("demo/open", self._open_demo())

    async def _open_demo(self) -> None:
        try:
            info = demo.setup_demo(self.home)
        except EventDeskError as exc:
            self.notifications.notify("error", f"demo: {exc.describe()}", key="demo")
            return
        self.workspace_changed()
        try:
            await self.runtime.start_services()
            await self.runtime.start_model(demo.MODEL)
        except EventDeskError:
            return  # shown on the object's node and in a banner, through its ERROR state
        finally:
            self.workspace_changed()
        self.notifications.notify(
            "info",
            f"Demo ready: POST JSON to {info.webhook_url}; republished on mqtt://{info.broker_host}:"
            f"{info.broker_port} topic {info.topic}. Click “Send sample events”.",
            f"Subscribe: {info.subscribe_command()}\nOr post one yourself: {info.curl_command()}",
            key="demo",
        )

    # -- send samples ------------------------------------------------------------------------
    def send_samples(self) -> None:
        self.tasks.start("demo/send", self._send_samples())

    async def _send_samples(self) -> None:
        model = self.sample_model()
        if model is None:
            self.notifications.notify(
                "warning",
                "Send sample events: there is no webhook model; open the demo workspace first",
                key="demo/send",
            )
            return
        if self.runtime.state_of(f"model/{model}").state is not State.RUNNING:
            try:
                await self.runtime.start_model(model)
            except EventDeskError:
                return
        try:
            result = await demo.send_samples(self.home, self.sample_count, model=model)
        except EventDeskError as exc:
            self.notifications.notify("error", f"Send sample events: {exc.describe()}", key="demo/send")
            return
        level = "success" if not result.rejected else "warning"
        text = f"Sent {result.sent} sample events to model {model}: {result.accepted} captured"
        if result.rejected:
            text += f", {result.rejected} rejected"
        self.notifications.notify(level, text, key="demo/send")
