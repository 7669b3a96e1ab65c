"""The host of one running model's connector: starts it, hands its batches to the capture and
reports its states (the :class:`~eventdesk.core.contracts.ConnectorHost` a connector sees).

A batch reaches the runtime's fan-out (routes, live view) only once it is committed with its
checkpoint; after a failed append no later batch of the model is committed, so the checkpoint
never moves past something not captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from eventdesk.core.capture import Appended
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConnectorError, EventDeskError
from eventdesk.core.intake import Intake
from eventdesk.core.rate import RateMeter
from eventdesk.core.registry import connector_class
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.secrets import resolve_secret

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0  # how long stop() waits for a cancelled connector to return
INTAKE_INLINE_MAX = 8  # a connector thread stores batches this small itself (core/intake.py)


class ModelRunner:
    """Runs one model's connector and is its :class:`ConnectorHost`."""

    def __init__(self, hub: RuntimeHub, name: str, on_appended: Callable[[str, Appended], None]) -> None:
        self.hub = hub
        self.name = name
        self.on_appended = on_appended  # the runtime's fan-out to routes and views
        self.loop = asyncio.get_running_loop()
        self.meter = RateMeter()
        self.task: asyncio.Task[None] | None = None
        self.connector: Connector | None = None
        self.error: EventDeskError | None = None
        self.append_failed: BaseException | None = None  # set on the capture thread

    @property
    def key(self) -> str:
        return f"model/{self.name}"

    async def deliver(self, events: list[Event], checkpoint: Any) -> None:
        self._announce(await self.hub.db(self._append, events, checkpoint))

    def intake(self, batch_size: int) -> Intake:
        """An :class:`Intake` for a connector reading in a thread: its batches go straight to
        the capture thread, and the loop hears of each once it is committed."""
        return Intake(
            store=self._store,
            executor=self.hub.executor,
            loop=self.loop,
            batch_size=batch_size,
            inline_max=INTAKE_INLINE_MAX,
        )

    def _store(self, events: list[Event], checkpoint: Any) -> None:
        """[capture or connector thread] Append a batch from an intake and tell the loop."""
        appended = self._append(events, checkpoint)
        self.loop.call_soon_threadsafe(self._announce, appended)

    def _announce(self, appended: Appended) -> None:
        self.meter.add(len(appended.events))
        self.on_appended(self.name, appended)

    def _append(self, events: list[Event], checkpoint: Any) -> Appended:
        """[capture thread] Append a batch, unless an earlier one failed: deliveries may queue
        up behind each other, and a later batch's checkpoint must not skip a lost one."""
        if self.append_failed is not None:
            raise ConnectorError(
                f"not captured: an earlier batch failed ({self.append_failed})", obj=f"model {self.name!r}"
            )
        try:
            return self.hub.capture.append_rows(self.name, events, checkpoint)
        except BaseException as exc:
            self.append_failed = exc
            raise

    def set_state(self, change: StateChange) -> None:
        self.hub.set_state(self.key, change)

    async def start(self) -> None:
        ws = self.hub.workspace
        model = ws.model(self.name)
        ds = ws.datasource(model.datasource)
        cls = connector_class(ds.kind)
        # The keyring may talk D-Bus and block: never on the loop.
        secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
        checkpoint = await self.hub.db(self.hub.capture.checkpoint, self.name)
        # ``since`` is a model setting only of kinds that can start from a point of their feed
        # (cloudant, couchdb); a kind without it (a webhook) has no past to read: "now".
        since = checkpoint if checkpoint is not None else model.settings.get("since", "now")
        self.error = None
        self.append_failed = None
        self.connector = cls(datasource=ds, model=model, secret=secret, host=self)
        self.set_state(StateChange(State.CONNECTING))
        self.task = asyncio.create_task(self._run(self.connector, since), name=f"connector:{self.name}")

    async def _run(self, connector: Connector, since: Any) -> None:
        try:
            await connector.run(since)
            self.set_state(StateChange(State.STOPPED))
        except asyncio.CancelledError:
            raise
        except EventDeskError as exc:
            self.error = exc
            self.set_state(StateChange(State.ERROR, exc.describe()))
            self.hub.terminal(self.key, exc)
        except Exception as exc:  # a connector bug must not take the app down
            log.exception("connector of model %r failed", self.name)
            err = ConnectorError(
                f"unexpected failure: {type(exc).__name__}: {exc}", obj=f"model {self.name!r}"
            )
            self.error = err
            self.set_state(StateChange(State.ERROR, err.describe()))
            self.hub.terminal(self.key, err)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if not task.done():
            self.set_state(StateChange(State.STOPPING))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
            if not task.done():
                log.warning("connector of model %r did not stop within %s s", self.name, STOP_TIMEOUT)
        if self.error is None:
            self.set_state(StateChange(State.STOPPED))
