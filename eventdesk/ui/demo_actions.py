"""The first-run demo in the window: "Open the demo workspace" and "Send sample events".

Opening the demo creates its objects through :mod:`eventdesk.core.demo` (a webhook
datasource, model ``accounts``, the built-in broker, a route to ``/v1/subutest``), starts the
built-in broker and the model, so the webhook listens at once. Sending samples posts account
changes to that webhook over real HTTP; they come back through capture into the table like
any other events. Both run as owned tasks of the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from eventdesk.core import demo
from eventdesk.core.contracts import State
from eventdesk.core.errors import EventDeskError

if TYPE_CHECKING:
    from eventdesk.ui.main_window import MainWindow

SAMPLE_COUNT = 40


class DemoActions(QObject):
    """Adds the demo's button and action to ``window`` and runs them."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.sample_count = SAMPLE_COUNT
        self.act_send_samples: QAction = window._action(
            "send_samples", "Send sample events", self.send_samples, icon="send-samples"
        )
        self.act_send_samples.setToolTip(
            "Post sample account changes (creates, updates, deletes) to a webhook model over HTTP"
        )
        window.toolbar.addSeparator()
        window.toolbar.addAction(self.act_send_samples)
        window.empty_state.open_demo.clicked.connect(self.open_demo)

    def sample_model(self) -> str | None:
        """The model samples go to: the demo's, else the first webhook model."""
        ws = self.window.home.workspace
        if demo.MODEL in ws.models and ws.datasources[ws.models[demo.MODEL].datasource].kind == "webhook":
            return demo.MODEL
        for name, model in ws.models.items():
            if ws.datasources[model.datasource].kind == "webhook":
                return name
        return None

    # -- open the demo -----------------------------------------------------------------------
    def open_demo(self) -> None:
        self.window.tasks.start("demo/open", self._open_demo())

    async def _open_demo(self) -> None:
        w = self.window
        try:
            info = demo.setup_demo(w.home)
        except EventDeskError as exc:
            w.notifications.notify("error", f"demo: {exc.describe()}", key="demo")
            return
        w.workspace_changed()
        try:
            await w.runtime.start_services()
            await w.runtime.start_model(demo.MODEL)
        except EventDeskError:
            return  # shown on the object's node and in a banner, through its ERROR state
        finally:
            w._watch_routes()
            w.workspace_changed()
        w.notifications.notify(
            "info",
            f"Demo ready: POST JSON to {info.webhook_url}; republished on mqtt://{info.broker_host}:"
            f"{info.broker_port} topic {info.topic}. Click “Send sample events”.",
            f"Subscribe: {info.subscribe_command()}\nOr post one yourself: {info.curl_command()}",
            key="demo",
        )

    # -- send samples ------------------------------------------------------------------------
    def send_samples(self) -> None:
        self.window.tasks.start("demo/send", self._send_samples())

    async def _send_samples(self) -> None:
        w = self.window
        model = self.sample_model()
        if model is None:
            w.notifications.notify(
                "warning",
                "Send sample events: there is no webhook model; open the demo workspace first",
                key="demo/send",
            )
            return
        if w.runtime.state_of(f"model/{model}").state is not State.RUNNING:
            try:
                await w.runtime.start_model(model)
            except EventDeskError:
                return
            finally:
                w._watch_routes()
        try:
            result = await demo.send_samples(w.home, self.sample_count, model=model)
        except EventDeskError as exc:
            w.notifications.notify("error", f"Send sample events: {exc.describe()}", key="demo/send")
            return
        level = "success" if not result.rejected else "warning"
        text = f"Sent {result.sent} sample events to model {model}: {result.accepted} captured"
        if result.rejected:
            text += f", {result.rejected} rejected"
        w.notifications.notify(level, text, key="demo/send")
