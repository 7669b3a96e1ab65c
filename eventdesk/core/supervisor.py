"""The runtime's running objects: one :class:`ModelRunner` per started model, one
:class:`RouteWorker` per started route, one :class:`BrokerLink` per broker in use, and the hosted
brokers held open. It starts, stops and forgets them, and fans each committed batch out to the
routes of its model and to the batch listeners.

Only :class:`eventdesk.core.runtime.Runtime` (and tests of the parts) use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from eventdesk.core.broker_link import BrokerLink
from eventdesk.core.capture import Appended
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import BrokerError, EventDeskError
from eventdesk.core.model_runner import STOP_TIMEOUT, ModelRunner
from eventdesk.core.registry import broker_class
from eventdesk.core.route_worker import RouteWorker
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.workspace import Removal

log = logging.getLogger(__name__)


class Supervisor:
    """Owns every background task of a runtime: each is cancelled and awaited when it stops."""

    def __init__(self, hub: RuntimeHub) -> None:
        self.hub = hub
        self.models: dict[str, ModelRunner] = {}
        self.routes: dict[str, RouteWorker] = {}
        self.brokers: dict[str, BrokerLink] = {}
        self.services: set[str] = set()  # hosted brokers held open for the runtime's life

    # -- the fan-out ---------------------------------------------------------------------------
    def appended(self, model: str, appended: Appended) -> None:
        """[loop] A batch of ``model`` was committed: to its routes, then to the batch listeners."""
        added = appended.events
        if not added:
            return
        self.hub.total.add(len(added))
        for worker in self.routes.values():
            if worker.model == model:
                worker.offer(appended)
        for listener in self.hub.batch_listeners.items:
            listener(model, added)

    def broker_link(self, name: str) -> BrokerLink:
        link = self.brokers.get(name)
        if link is None:
            link = self.brokers[name] = BrokerLink(self.hub, name, self.routes)
        return link

    # -- queries -------------------------------------------------------------------------------
    def model_running(self, name: str) -> bool:
        runner = self.models.get(name)
        return runner is not None and runner.running

    def route_running(self, name: str) -> bool:
        worker = self.routes.get(name)
        return worker is not None and worker.task is not None and not worker.task.done()

    # -- control -------------------------------------------------------------------------------
    async def start_model(self, name: str) -> None:
        if self.model_running(name):
            return
        runner = self.models[name] = ModelRunner(self.hub, name, self.appended)
        try:
            await runner.start()
        except EventDeskError as exc:
            runner.error = exc
            runner.set_state(StateChange(State.ERROR, exc.describe()))
            raise
        for route in self.hub.workspace.routes_of_model(name):
            if route.enabled:
                await self.start_route(route.name)

    async def stop_model(self, name: str) -> None:
        runner = self.models.get(name)
        if runner is not None:
            await runner.stop()

    async def start_route(self, name: str) -> None:
        if self.route_running(name):
            return
        worker = self.routes[name] = RouteWorker(self.hub, self.hub.workspace.route(name), self.broker_link)
        worker.start()

    async def stop_route(self, name: str) -> None:
        worker = self.routes.pop(name, None)
        if worker is not None:
            await worker.stop()

    async def restart_route(self, name: str) -> None:
        """A route worker keeps the settings it started with: after an edit, a route the runtime
        has (running, or stopped on an error) is stopped and, if enabled, started again."""
        if name not in self.routes:
            return
        await self.stop_route(name)
        if self.hub.workspace.route(name).enabled:
            await self.start_route(name)

    async def start(self, models: list[str] | None = None) -> None:
        await self.start_services()
        for name in models if models is not None else list(self.hub.workspace.models):
            await self.start_model(name)

    def services_pending(self) -> bool:
        """Whether a hosted broker of the workspace is not held open yet."""
        return any(
            name not in self.services and broker_class(cfg.kind).hosted
            for name, cfg in self.hub.workspace.brokers.items()
        )

    async def start_services(self) -> None:
        """Start every hosted broker (the built-in one) not yet running, routes or not. A failure
        is the broker's ERROR state (and raised as a BrokerError naming it)."""
        for name, cfg in list(self.hub.workspace.brokers.items()):
            if name in self.services or not broker_class(cfg.kind).hosted:
                continue
            link = self.broker_link(name)
            self.services.add(name)
            try:
                await link.acquire()
            except EventDeskError as exc:
                self.services.discard(name)
                self.hub.set_state(link.key, StateChange(State.ERROR, exc.describe()))
                raise
            except Exception as exc:  # a kind's bug: the broker shows it, as any other failure
                self.services.discard(name)
                log.exception("broker %r failed to start", name)
                err = BrokerError(f"unexpected failure: {type(exc).__name__}: {exc}", obj=cfg.label)
                self.hub.set_state(link.key, StateChange(State.ERROR, err.describe()))
                raise err from exc
            except BaseException:
                self.services.discard(name)
                raise

    async def stop_service(self, name: str) -> None:
        """Let go of a hosted broker (it stops once no route uses it either)."""
        if name in self.services:
            self.services.discard(name)
            await self.brokers[name].release()

    async def forget(self, plan: Removal) -> None:
        """Stop everything ``plan`` removes (its models, routes and, for a broker, its link) and
        forget it, with its states: what to do before ``Home.remove`` carries the plan out."""
        for model in plan.models:
            await self.stop_model(model)
            self.models.pop(model, None)
        for route in plan.routes:
            await self.stop_route(route)
        keys = [f"model/{m}" for m in plan.models] + [f"route/{r}" for r in plan.routes]
        if plan.object_type == "broker":
            await self.stop_service(plan.name)
            self.brokers.pop(plan.name, None)
        keys.append(f"{plan.object_type}/{plan.name}")
        for key in keys:
            self.hub.forget_state(key)

    async def stop(self) -> None:
        """Stop connectors first (no new events), then routes; brokers close with their last route."""
        await asyncio.gather(*(r.stop() for r in self.models.values()))
        await asyncio.gather(*(w.stop() for w in list(self.routes.values())))
        self.routes.clear()

    async def aclose(self) -> None:
        await self.stop()
        for name in list(self.services):
            await self.stop_service(name)
        await self.hub.close()

    def halt(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop without the event loop, which will not turn again (the app lost its display).

        Waits up to ``timeout`` for the batches connectors already handed to the capture thread
        (each commits with its checkpoint), then records every route's acknowledged position and
        every object as stopped. Connector and broker threads end with the process; what they
        had not handed over is read again from the checkpoint (at-least-once).
        """
        hub = self.hub
        with contextlib.suppress(Exception):  # the capture thread runs its queue in order
            hub.executor.submit(lambda: None).result(timeout)
        capture = hub.capture
        for worker in self.routes.values():
            with contextlib.suppress(Exception):
                worker.collect_acknowledged()  # batches acknowledged since the route last ran
            stored = capture.route_position(worker.name)
            if stored is None or worker.position > stored:  # positions only move forward
                capture.set_route_position(worker.name, worker.position)
        for key, change in list(hub.states.items()):
            if change.state is not State.STOPPED and change.state is not State.ERROR:
                hub.states[key] = StateChange(State.STOPPED)
                capture.set_state(key, State.STOPPED.value, None)
        hub.route_reader.shutdown(wait=False)
        hub.executor.shutdown(wait=False)
