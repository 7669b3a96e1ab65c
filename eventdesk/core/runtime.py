"""The runtime's public API: what the app and ``eventdesk run`` use to run a workspace's models,
routes and hosted brokers, watch their states and read one status snapshot.

Everything runs on one asyncio loop (Qt's, through qasync, in the app); capture work runs on the
capture thread, so the loop never waits on the disk. Its parts: core/runtime_hub.py (what they
share), core/supervisor.py (the running objects), core/model_runner.py, core/route_worker.py,
core/broker_link.py, and core/runtime_status.py (the snapshot). docs/architecture.md, "The
runtime's API", lists the methods and the listener contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from eventdesk.core.capture import Capture
from eventdesk.core.connection_test import TEST_TIMEOUT, check_connection, release_model
from eventdesk.core.contracts import Connector, StateChange
from eventdesk.core.model_runner import STOP_TIMEOUT
from eventdesk.core.runtime_hub import (
    BatchListener,
    QuarantineListener,
    RuntimeHub,
    StateListener,
    TerminalListener,
    Unsubscribe,
)
from eventdesk.core.runtime_status import Status, build_status
from eventdesk.core.supervisor import Supervisor
from eventdesk.core.workspace import Removal, Workspace

P = ParamSpec("P")
T = TypeVar("T")


class Runtime:
    """``Runtime(workspace, capture)`` runs the objects of ``workspace``; ``await aclose()`` once.

    Objects are named by kind and name (``"model"``, ``"accounts"``); states are keyed
    ``"<kind>/<name>"`` as in the capture and ``eventdesk status``.
    """

    def __init__(self, workspace: Workspace, capture: Capture) -> None:
        self._hub = RuntimeHub(workspace, capture)
        self._sup = Supervisor(self._hub)

    # -- the workspace -----------------------------------------------------------------------
    @property
    def workspace(self) -> Workspace:
        return self._hub.workspace

    @property
    def capture(self) -> Capture:
        return self._hub.capture

    def set_workspace(self, workspace: Workspace) -> None:
        """Use ``workspace`` (the home's, after an edit) for what starts from now on; what runs
        keeps the settings it started with (``restart_route`` applies a route's)."""
        self._hub.workspace = workspace

    # -- listeners: each returns a callable that unsubscribes ---------------------------------
    def on_state(self, listener: StateListener) -> Unsubscribe:
        """``listener(key, change)`` on the loop each time an object's state changes."""
        return self._hub.state_listeners.add(listener)

    def on_batch(self, listener: BatchListener) -> Unsubscribe:
        """``listener(model, events)`` after each committed batch (only the new events)."""
        return self._hub.batch_listeners.add(listener)

    def on_terminal(self, listener: TerminalListener) -> Unsubscribe:
        """``listener(key, error)`` when a model, route or broker stops for good on an error."""
        return self._hub.terminal_listeners.add(listener)

    def on_quarantine(self, listener: QuarantineListener) -> Unsubscribe:
        """``listener(route, pos, field, reason)`` each time a route quarantines an event (the
        entries themselves: ``capture.quarantine_entries``; retry and drop: ``capture.quarantine_retry``,
        ``capture.quarantine_drop``, which a running route notices within a second)."""
        return self._hub.quarantine_listeners.add(listener)

    # -- control -------------------------------------------------------------------------------
    async def start(self, models: list[str] | None = None) -> None:
        """Start the hosted brokers, then ``models`` (default: all) with their enabled routes."""
        await self._sup.start(models)

    async def start_model(self, name: str) -> None:
        """Start a model's connector and its enabled routes (raises, and shows as its ERROR
        state, if it cannot start)."""
        await self._sup.start_model(name)

    async def stop_model(self, name: str) -> None:
        await self._sup.stop_model(name)

    async def start_route(self, name: str) -> None:
        await self._sup.start_route(name)

    async def stop_route(self, name: str) -> None:
        """Stop publishing; what is in flight gets up to 2 s to be acknowledged."""
        await self._sup.stop_route(name)

    async def restart_route(self, name: str) -> None:
        """After a route was edited: stop it if the runtime has it, start it again if enabled."""
        await self._sup.restart_route(name)

    def services_pending(self) -> bool:
        """Whether a hosted broker (the built-in one) of the workspace is not started yet."""
        return self._sup.services_pending()

    async def start_services(self) -> None:
        """Start every hosted broker not yet running, routes or not."""
        await self._sup.start_services()

    async def stop_service(self, name: str) -> None:
        await self._sup.stop_service(name)

    async def forget(self, plan: Removal) -> None:
        """Stop and forget everything a removal plan (``Home.removal``) names, with their states;
        then ``home.remove`` removes it from the workspace and the capture."""
        await self._sup.forget(plan)

    async def stop(self) -> None:
        """Stop connectors first (no new events), then routes; brokers close with their last route."""
        await self._sup.stop()

    async def aclose(self) -> None:
        """Stop everything, hosted brokers too, and end the capture threads."""
        await self._sup.aclose()

    def halt(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop without the event loop, which will not turn again (the app lost its display)."""
        self._sup.halt(timeout)

    # -- queries -------------------------------------------------------------------------------
    def state_of(self, key: str) -> StateChange:
        """The state of ``"<kind>/<name>"`` (stopped if never started)."""
        return self._hub.state_of(key)

    def states(self) -> dict[str, StateChange]:
        """Every known object's state, by key (a copy)."""
        return dict(self._hub.states)

    def is_running(self, kind: str, name: str | None = None) -> bool:
        """Whether the model or route ``name`` runs in this process (a route that stopped on an
        error does not); without ``name``, whether any of that kind does."""
        if kind not in ("model", "route"):
            raise ValueError(f"is_running: kind {kind!r} is not model or route")
        running = self._sup.model_running if kind == "model" else self._sup.route_running
        names = self._sup.models if kind == "model" else self._sup.routes
        if name is not None:
            return running(name)
        return any(running(n) for n in list(names))

    def connector_of(self, model: str) -> Connector | None:
        """The connector running ``model`` here, if any (for diagnostics and tests)."""
        runner = self._sup.models.get(model)
        return runner.connector if runner is not None else None

    def rates(self) -> dict[str, float]:
        """Events per second of each model running here."""
        return {name: runner.meter.rate() for name, runner in self._sup.models.items()}

    async def status(self) -> Status:
        """The status snapshot (core/runtime_status.py), its capture reads on the capture thread."""
        rates = self.rates()
        events = {name: runner.meter.total for name, runner in self._sup.models.items()}
        return await self._hub.db(
            build_status,
            self._hub.workspace,
            self._hub.capture,
            dict(self._hub.states),
            rates,
            events=events,
            total_rate=self._hub.total.rate(),
        )

    def show_foreign(self, states: dict[str, StateChange], events: int = 0) -> None:
        """Show what another process holding the home does (the app read only): its recorded
        ``states`` go to the state listeners and ``events`` it captured count in the total rate.
        Nothing runs or is written here."""
        if events:
            self._hub.total.add(events)
        for key, change in states.items():
            self._hub.show_state(key, change)

    # -- capture access ------------------------------------------------------------------------
    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a capture call on the capture thread (in order with the runtime's writes)."""
        return await self._hub.db(fn, *args, **kwargs)

    # -- testing a connection ------------------------------------------------------------------
    async def test_connection(self, kind: str, name: str, timeout: float = TEST_TIMEOUT) -> str:
        """Connect once to the saved datasource, model or broker ``name``: the summary, or an
        EventDeskError naming the object and field (core/connection_test.py)."""
        return await check_connection(self._hub.workspace, kind, name, timeout)

    async def release_model(self, name: str, timeout: float = TEST_TIMEOUT) -> str:
        """Drop what model ``name`` keeps on its source server (a removal's ``held``); a summary."""
        return await release_model(self._hub.workspace, name, timeout)


__all__ = ["TEST_TIMEOUT", "Runtime", "Status"]
