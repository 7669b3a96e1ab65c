"""The Fleet window's "Watch live": the desk follows what every agent publishes into one of the
workspace's nats brokers, as a ``nats`` datasource and model that eventdesk/fleet/watch.py
plans (named ``fleet-<broker>``, created once and reused after), started at once, so the
fleet's events arrive in the main table like any model's.

The datasource takes the broker's connection settings and its secret: an environment variable
is named again (removing the datasource never touches it), a keyring secret is copied to the
datasource's own keyring entry (removing the datasource never deletes the broker's), and one
this host lacks is asked for once in the secret dialog. The model reads the broker's stream
through an ephemeral consumer (or its subjects on core NATS): nothing stays on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QWidget

from eventdesk.core.errors import SecretStoreError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.secrets import SecretRef, resolve_secret
from eventdesk.fleet.watch import WatchPlan, watch_plan
from eventdesk.ui.async_tasks import dialog_result
from eventdesk.ui.secret_dialog import SecretDialog


class FleetWatch:
    """``await FleetWatch(home, runtime, parent, workspace_changed)(broker)``: the plan it
    carried out; raises an EventDeskError saying why not (shown by the Fleet window)."""

    def __init__(
        self, home: Home, runtime: Runtime, parent: QWidget, workspace_changed: Callable[[], None]
    ) -> None:
        self.home = home
        self.runtime = runtime
        self.parent = parent
        self.workspace_changed = workspace_changed
        self.secret_dialog: SecretDialog | None = None

    async def __call__(self, broker: str) -> WatchPlan:
        home = self.home
        plan = watch_plan(home.workspace, broker)
        if not plan.has_datasource:
            ref, ask = await self._secret_ref(plan)
            home.add_datasource(plan.datasource, "nats", dict(plan.datasource_settings), secret_ref=ref)
        else:  # made before, the secret dialog cancelled then: asked again
            ds = home.workspace.datasource(plan.datasource)
            ask = ds.secret is None and home.workspace.broker(broker).secret is not None
        if not plan.has_model:
            home.add_model(plan.model, plan.datasource, dict(plan.model_settings))
        if not (plan.has_datasource and plan.has_model):
            self.workspace_changed()
        if ask and not await self._ask_secret(plan):
            raise SecretStoreError(
                "not started: it needs the broker's password or token, which this host does not "
                "have (give it in the datasource's secret and start the model)",
                obj=f"datasource {plan.datasource!r}",
                field="secret",
            )
        if not self.runtime.is_running("model", plan.model):
            await self.runtime.start_model(plan.model)
        return plan

    async def _secret_ref(self, plan: WatchPlan) -> tuple[SecretRef | None, bool]:
        """The new datasource's secret reference, and whether the user must be asked for it."""
        cfg = self.home.workspace.broker(plan.broker)
        if cfg.secret is None or cfg.secret.store == "env":
            return cfg.secret, False
        try:  # the keyring blocks: off the loop
            secret = await asyncio.to_thread(resolve_secret, cfg.secret, cfg.label)
        except SecretStoreError:
            return None, True
        assert secret is not None
        ref = await asyncio.to_thread(self.home.keep_secret, "datasource", plan.datasource, secret)
        return ref, False

    async def _ask_secret(self, plan: WatchPlan) -> bool:
        self.secret_dialog = SecretDialog(self.home, "datasource", plan.datasource, self.parent)
        try:
            result = await dialog_result(self.secret_dialog)
        finally:
            self.secret_dialog = None
        return result == QDialog.DialogCode.Accepted.value
