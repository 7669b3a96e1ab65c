"""The runtime wires connectors to capture, routes and live subscribers (DESIGN.md, Architecture).

Everything here runs on one asyncio loop (Qt's, through qasync, in the app). SQLite work runs
on one dedicated thread so the loop never waits on the disk. Every background task is owned:
one named slot per model and per route, cancelled and awaited on stop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from eventdesk.core import json_codec
from eventdesk.core.capture import Appended, Capture, CapturedEvent, RouteRow
from eventdesk.core.contracts import Connector, Publisher, State, StateChange
from eventdesk.core.envelope import Event, encode_payload
from eventdesk.core.errors import BrokerDisconnectedError, ConnectorError, EventDeskError
from eventdesk.core.intake import Intake
from eventdesk.core.rate import RateMeter
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.topic_template import TopicTemplate
from eventdesk.core.workspace import RouteConfig, Workspace

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

StateListener = Callable[[str, StateChange], None]
BatchListener = Callable[[str, list[CapturedEvent]], None]

ROUTE_BATCH = 1000  # events a route has outstanding at most (sent, or acked and not yet recorded)
ROUTE_READ_MIN = 250  # while events are in flight, read more only once this many fit
# Events published as one batch (one future): small enough that acknowledged batches free room
# for the next read while later ones are still in flight.
ROUTE_SEND_BATCH = 100
# A route records its position once this many acknowledged events wait to be recorded, or this
# long after the first of them: a position save per acknowledged batch was a transaction (and
# two thread hand-offs) per dozen events in a fast live stream. Both count against ROUTE_BATCH,
# so a crash still resends at most ROUTE_BATCH events.
ROUTE_SAVE_EVERY = 250
ROUTE_SAVE_S = 0.02
ROUTE_DRAIN_S = 2.0  # on stop, how long a connected route waits for its in-flight acknowledgements
# Rows (and bytes of envelopes) a route keeps from the batches just committed, so that while it
# keeps up it publishes them without reading capture; beyond that it reads capture.
ROUTE_TAIL = 2 * ROUTE_BATCH
ROUTE_TAIL_BYTES = 8 * 1024 * 1024
STOP_TIMEOUT = 2.0
INTAKE_INLINE_MAX = 8  # a connector thread stores batches this small itself (core/intake.py)


@dataclass
class ModelStatus:
    name: str
    datasource: str
    state: StateChange
    checkpoint: Any
    events: int
    rate: float


@dataclass
class RouteStatus:
    name: str
    model: str
    broker: str
    enabled: bool
    state: StateChange
    position: int
    backlog: int


class ModelRunner:
    """Runs one model's connector and is its :class:`ConnectorHost`."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
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
        self._announce(await self.runtime.db(self._append, events, checkpoint))

    def intake(self, batch_size: int) -> Intake:
        """An :class:`Intake` for a connector reading in a thread: its batches go straight to
        the capture thread, and the loop hears of each once it is committed."""
        return Intake(
            store=self._store,
            executor=self.runtime._executor,
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
        self.runtime._appended(self.name, appended)

    def _append(self, events: list[Event], checkpoint: Any) -> Appended:
        """[capture thread] Append a batch, unless an earlier one failed: deliveries may queue
        up behind each other, and a later batch's checkpoint must not skip a lost one."""
        if self.append_failed is not None:
            raise ConnectorError(
                f"not captured: an earlier batch failed ({self.append_failed})", obj=f"model {self.name!r}"
            )
        try:
            return self.runtime.capture.append_rows(self.name, events, checkpoint)
        except BaseException as exc:
            self.append_failed = exc
            raise

    def set_state(self, change: StateChange) -> None:
        self.runtime._set_state(self.key, change)

    async def start(self) -> None:
        ws = self.runtime.workspace
        model = ws.model(self.name)
        ds = ws.datasource(model.datasource)
        cls = connector_class(ds.kind)
        secret = resolve_secret(ds.secret, ds.label)
        checkpoint = await self.runtime.db(self.runtime.capture.checkpoint, self.name)
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
            self.runtime._terminal(self.key, exc)
        except Exception as exc:  # a connector bug must not take the app down
            log.exception("connector of model %r failed", self.name)
            err = ConnectorError(
                f"unexpected failure: {type(exc).__name__}: {exc}", obj=f"model {self.name!r}"
            )
            self.error = err
            self.set_state(StateChange(State.ERROR, err.describe()))
            self.runtime._terminal(self.key, err)

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


class BrokerLink:
    """One publisher per broker, shared by its routes and started on first use."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.users = 0
        cfg = runtime.workspace.broker(name)
        cls = broker_class(cfg.kind)
        secret = resolve_secret(cfg.secret, cfg.label)
        self.publisher: Publisher = cls(config=cfg, secret=secret, on_state=self._on_state)
        self.started = False

    @property
    def key(self) -> str:
        return f"broker/{self.name}"

    def _on_state(self, change: StateChange) -> None:
        self.runtime._set_state(self.key, change)
        for worker in self.runtime.routes.values():
            if worker.broker == self.name:
                worker.broker_state(change)

    async def acquire(self) -> Publisher:
        self.users += 1
        if not self.started:
            self.started = True
            await self.publisher.start()
        return self.publisher

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.started:
            self.started = False
            await self.publisher.close()


class RouteWorker:
    """Publishes one model's captured events to one broker, in order, from its position."""

    def __init__(self, runtime: Runtime, cfg: RouteConfig) -> None:
        self.runtime = runtime
        self.name = cfg.name
        self.model = cfg.model
        self.broker = cfg.broker
        self.template = TopicTemplate(cfg.settings["topic"])
        self.format: str = cfg.settings["format"]
        self.qos: int = cfg.settings["qos"]
        self.retain: bool = cfg.settings["retain"]
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.position = 0
        self.published = 0
        self.meter = RateMeter()
        # Batches handed to the publisher and not yet settled, oldest first:
        # (position of the batch's last event, its event count, its future).
        self.inflight: collections.deque[tuple[int, int, asyncio.Future[None]]] = collections.deque()
        self.outstanding = 0  # events in those batches
        self.unsaved = 0  # events acknowledged since the last position save
        # The timer that marks ``position`` due for saving ROUTE_SAVE_S after the first unsaved
        # acknowledgement, and whether it has fired.
        self.save_timer: asyncio.TimerHandle | None = None
        self.save_due = False
        self.draining = False  # set by stop(): send nothing new, let what is in flight settle
        self.saving: asyncio.Future[None] | None = None  # the last position save submitted
        # The rows of this model just committed: exactly the model's rows after ``tail_after``
        # (None: nothing known yet), see offer().
        self.tail: collections.deque[RouteRow] = collections.deque()
        self.tail_after: int | None = None
        self.tail_bytes = 0

    @property
    def key(self) -> str:
        return f"route/{self.name}"

    def broker_state(self, change: StateChange) -> None:
        if self.task is None:
            return
        if change.state in (State.RETRYING, State.ERROR, State.CONNECTING):
            self.runtime._set_state(
                self.key,
                StateChange(State.RETRYING, f"broker {self.broker!r}: {change.detail or change.state.value}"),
            )
        elif change.state is State.RUNNING:
            self.runtime._set_state(self.key, StateChange(State.RUNNING))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"route:{self.name}")

    async def _run(self) -> None:
        link: BrokerLink | None = None
        try:
            link = self.runtime._broker_link(self.broker)
            publisher = await link.acquire()
            stored = await self.runtime.db(self.runtime.capture.route_position, self.name)
            self.position = stored if stored is not None else 0
            self.runtime._set_state(self.key, StateChange(State.CONNECTING))
            await self._publish_forever(publisher)
        except EventDeskError as exc:  # missing secret, refused credentials, TLS failure, ...
            self.runtime._set_state(self.key, StateChange(State.ERROR, exc.describe()))
            self.runtime._terminal(self.key, exc)
        finally:
            if link is not None:
                await link.release()

    async def _publish_forever(self, publisher: Publisher) -> None:
        """Publish from capture in order with up to ROUTE_BATCH events outstanding.

        Reading and publishing go on while earlier events wait for their acknowledgement;
        ``position`` advances only over a contiguous run of acknowledged batches (of up to
        ROUTE_SEND_BATCH events, one future each), and what follows it is sent again after a reconnect
        (at-least-once). The events in flight and those acknowledged but not yet recorded
        (positions are saved every ROUTE_SAVE_EVERY events or ROUTE_SAVE_S) together stay
        within ROUTE_BATCH, so a crash resends at most ROUTE_BATCH events (plus those whose
        position save had not committed yet).
        """
        capture = self.runtime.capture
        inflight = self.inflight
        sent = self.position  # the last position handed to the publisher
        try:
            while True:
                if not publisher.connected:
                    self._abandon(inflight)
                    sent = self.position
                    if self.unsaved:  # what was acknowledged before the drop
                        self._save_position()
                    await publisher.wait_connected()
                    self.runtime._set_state(self.key, StateChange(State.RUNNING))
                self.wake.clear()
                if not self._collect(inflight):  # the connection dropped: resend what followed
                    sent = self.position
                    continue
                if self.unsaved and self._save_now():
                    self._save_position()
                room = 0 if self.draining else ROUTE_BATCH - self.outstanding - self.unsaved
                if inflight and room < ROUTE_READ_MIN:
                    room = 0  # wait for a larger gap rather than read a handful
                if room:
                    rows = self._take_tail(sent, room)
                    if rows is None:  # not (all) kept: read them from capture
                        rows = await self.runtime.read_for_route(
                            capture.read_route_rows, self.model, sent, room
                        )
                    if rows:
                        sent = self._send(publisher, rows, inflight, sent)
                        continue
                if not inflight and self.runtime.state_of(self.key).state is not State.RUNNING:
                    self.runtime._set_state(self.key, StateChange(State.RUNNING))
                await self.wake.wait()
        except asyncio.CancelledError:
            # Record what was acknowledged meanwhile; stop() waits for it.
            with contextlib.suppress(Exception):
                self._collect(inflight)
                if self.unsaved:
                    self._save_position()
            raise

    def offer(self, appended: Appended) -> None:
        """A batch of this route's model was committed: keep its rows and wake up.

        While the route keeps up, it publishes these rows without reading capture, which
        saves a thread hand-off and a query per batch on the live path. The tail stays exactly
        the model's rows after ``tail_after``: a batch that does not follow it (``after``
        differs, say after a reader-side gap) starts it over; it is trimmed from the front.
        """
        rows = appended.rows
        tail = self.tail
        end = tail[-1][0] if tail else self.tail_after
        if end is None or appended.after != end:
            tail.clear()
            self.tail_bytes = 0
            self.tail_after = appended.after
        tail.extend(rows)
        self.tail_bytes += sum(len(row[1]) for row in rows)
        while tail and (len(tail) > ROUTE_TAIL or self.tail_bytes > ROUTE_TAIL_BYTES):
            dropped = tail.popleft()
            self.tail_bytes -= len(dropped[1])
            self.tail_after = dropped[0]
        self.wake.set()

    def _take_tail(self, sent: int, room: int) -> list[RouteRow] | None:
        """Up to ``room`` of the model's rows after ``sent`` from the tail ([] if none are
        known); None if the tail does not reach back to ``sent`` (they are in capture)."""
        after = self.tail_after
        if after is None or sent < after:
            return None
        tail = self.tail
        while tail and tail[0][0] <= sent:  # already read from capture
            self.tail_bytes -= len(tail.popleft()[1])
        count = min(room, len(tail))
        rows = [tail.popleft() for _ in range(count)]
        self.tail_bytes -= sum(len(row[1]) for row in rows)
        self.tail_after = rows[-1][0] if rows else max(after, sent)
        return rows

    def _save_now(self) -> bool:
        """Whether the acknowledged position is to be saved now (ROUTE_SAVE_EVERY, ROUTE_SAVE_S);
        if not, the route is woken when it is due.

        The timer itself marks the save due rather than the route comparing clocks when woken:
        qasync rounds a delay down to whole milliseconds and Qt's coarse timers may fire early,
        so a wake-up can come a little before the deadline (the save was then never made)."""
        if self.unsaved >= ROUTE_SAVE_EVERY or self.draining or self.save_due:
            return True
        if self.save_timer is None:
            self.save_timer = asyncio.get_running_loop().call_later(ROUTE_SAVE_S, self._mark_save_due)
        return False

    def _mark_save_due(self) -> None:
        self.save_timer = None
        self.save_due = True
        self.wake.set()

    def _save_position(self) -> None:
        """Record ``position`` on the capture thread, in order, without waiting for it."""
        self.unsaved = 0
        self.save_due = False
        if self.save_timer is not None:
            self.save_timer.cancel()
            self.save_timer = None
        saving = asyncio.wrap_future(
            self.runtime._executor.submit(self.runtime.capture.set_route_position, self.name, self.position)
        )
        saving.add_done_callback(self._saved)
        self.saving = saving

    def _saved(self, saving: asyncio.Future[None]) -> None:
        if not saving.cancelled() and saving.exception() is not None:
            # Not fatal: the route resends from the last position recorded (at-least-once).
            log.warning("%s: could not record its position: %s", f"route {self.name!r}", saving.exception())

    def _send(
        self,
        publisher: Publisher,
        rows: list[RouteRow],
        inflight: collections.deque[tuple[int, int, asyncio.Future[None]]],
        sent: int,
    ) -> int:
        """Publish ``rows`` in order, in batches of ROUTE_SEND_BATCH; returns the last position
        handed over."""
        fmt, model = self.format, self.model
        render_fields = self.template.render_fields
        messages = [
            (
                render_fields(datasource, model, op, key),  # from the columns: no JSON parsing
                # The stored bytes are the envelope; other formats are made from it.
                raw if fmt == "envelope" else encode_payload(json_codec.loads(raw), fmt),
            )
            for _, raw, datasource, op, key in rows
        ]
        step = ROUTE_SEND_BATCH
        for start in range(0, len(rows), step):
            try:
                fut = publisher.publish_many(messages[start : start + step], self.qos, self.retain)
            except BrokerDisconnectedError:
                break
            chunk = rows[start : start + step]
            inflight.append((chunk[-1][0], len(chunk), fut))
            self.outstanding += len(chunk)
            sent = chunk[-1][0]
            fut.add_done_callback(self._settled)  # wakes the route once the batch is settled
        return sent

    def _settled(self, _fut: asyncio.Future[None]) -> None:
        self.wake.set()

    def _collect(self, inflight: collections.deque[tuple[int, int, asyncio.Future[None]]]) -> bool:
        """Advance ``position`` over the acknowledged batches at the head of ``inflight``.

        False if the connection dropped (everything in flight is then dropped, to be resent);
        a publish the broker refused raises its BrokerError.
        """
        acked = 0
        try:
            while inflight:
                pos, count, fut = inflight[0]
                if not fut.done():
                    break
                exc = BrokerDisconnectedError("cancelled") if fut.cancelled() else fut.exception()
                if exc is not None:
                    self._abandon(inflight)
                    if isinstance(exc, BrokerDisconnectedError):
                        return False
                    raise exc
                inflight.popleft()
                self.outstanding -= count
                self.unsaved += count
                self.position = pos
                acked += count
        finally:
            if acked:
                self.published += acked
                self.meter.add(acked)
        return True

    def _abandon(self, inflight: collections.deque[tuple[int, int, asyncio.Future[None]]]) -> None:
        """Forget everything in flight: it is sent again from ``position``."""
        for _, _, fut in inflight:
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # consume, so nothing is reported as "never retrieved"
        inflight.clear()
        self.outstanding = 0

    async def stop(self, drain: float = ROUTE_DRAIN_S) -> None:
        """Stop publishing; wait up to ``drain`` seconds for what is in flight to be acknowledged.

        What is still unacknowledged then stays in capture and is sent again on the next start.
        """
        task, self.task = self.task, None
        if task is not None and not task.done():
            self.runtime._set_state(self.key, StateChange(State.STOPPING))
            self.draining = True
            pending = [fut for _, _, fut in self.inflight if not fut.done()]
            link = self.runtime.brokers.get(self.broker)
            if pending and drain > 0 and link is not None and link.publisher.connected:
                await asyncio.wait(pending, timeout=drain)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.saving is not None:  # the last position save (the capture thread runs them in order)
            await asyncio.wait({self.saving})
        self.runtime._set_state(self.key, StateChange(State.STOPPED))


class Runtime:
    """Starts and stops models and routes of a workspace; emits state changes and batches."""

    def __init__(self, workspace: Workspace, capture: Capture) -> None:
        self.workspace = workspace
        self.capture = capture
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventdesk-capture")
        self._route_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventdesk-route-read")
        self.models: dict[str, ModelRunner] = {}
        self.routes: dict[str, RouteWorker] = {}
        self.brokers: dict[str, BrokerLink] = {}
        self.services: set[str] = set()  # hosted brokers held open for the runtime's life
        self.states: dict[str, StateChange] = {}
        self._state_listeners: list[StateListener] = []
        self._batch_listeners: list[BatchListener] = []
        self._terminal_listeners: list[Callable[[str, EventDeskError], None]] = []
        self.total = RateMeter()

    # -- plumbing --------------------------------------------------------------------------
    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a capture call on the capture thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def read_for_route(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a route's capture read on the route-reading thread (it never waits for appends)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._route_reader, lambda: fn(*args, **kwargs))

    def on_state(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def on_batch(self, listener: BatchListener) -> None:
        """``listener(model, events)`` after each committed batch (only the new events)."""
        self._batch_listeners.append(listener)

    def on_terminal(self, listener: Callable[[str, EventDeskError], None]) -> None:
        self._terminal_listeners.append(listener)

    def _set_state(self, key: str, change: StateChange) -> None:
        if self.states.get(key) == change:
            return
        self.states[key] = change
        self._executor.submit(self.capture.set_state, key, change.state.value, change.detail)
        for listener in self._state_listeners:
            listener(key, change)

    def _terminal(self, key: str, error: EventDeskError) -> None:
        for listener in self._terminal_listeners:
            listener(key, error)

    def _appended(self, model: str, appended: Appended) -> None:
        added = appended.events
        if not added:
            return
        self.total.add(len(added))
        for worker in self.routes.values():
            if worker.model == model:
                worker.offer(appended)
        for listener in self._batch_listeners:
            listener(model, added)

    def _broker_link(self, name: str) -> BrokerLink:
        link = self.brokers.get(name)
        if link is None:
            link = self.brokers[name] = BrokerLink(self, name)
        return link

    def state_of(self, key: str) -> StateChange:
        return self.states.get(key, StateChange(State.STOPPED))

    # -- control ---------------------------------------------------------------------------
    async def start_model(self, name: str) -> None:
        runner = self.models.get(name)
        if runner is not None and runner.running:
            return
        runner = self.models[name] = ModelRunner(self, name)
        try:
            await runner.start()
        except EventDeskError as exc:
            runner.error = exc
            runner.set_state(StateChange(State.ERROR, exc.describe()))
            raise
        for route in self.workspace.routes_of_model(name):
            if route.enabled:
                await self.start_route(route.name)

    async def stop_model(self, name: str) -> None:
        runner = self.models.get(name)
        if runner is not None:
            await runner.stop()

    async def start_route(self, name: str) -> None:
        worker = self.routes.get(name)
        if worker is not None and worker.task is not None and not worker.task.done():
            return
        worker = self.routes[name] = RouteWorker(self, self.workspace.route(name))
        worker.start()

    async def stop_route(self, name: str) -> None:
        worker = self.routes.pop(name, None)
        if worker is not None:
            await worker.stop()

    async def start(self, models: list[str] | None = None) -> None:
        await self.start_services()
        for name in models if models is not None else list(self.workspace.models):
            await self.start_model(name)

    async def start_services(self) -> None:
        """Start every hosted broker (the built-in one) not yet running, routes or not."""
        for name, cfg in list(self.workspace.brokers.items()):
            if name in self.services or not broker_class(cfg.kind).hosted:
                continue
            link = self._broker_link(name)
            self.services.add(name)
            try:
                await link.acquire()
            except BaseException:
                self.services.discard(name)
                link.users -= 1
                link.started = False
                raise

    async def stop_service(self, name: str) -> None:
        """Let go of a hosted broker (it stops once no route uses it either)."""
        if name in self.services:
            self.services.discard(name)
            await self.brokers[name].release()

    async def stop(self) -> None:
        """Stop connectors first (no new events), then routes; brokers close with their last route."""
        await asyncio.gather(*(r.stop() for r in self.models.values()))
        await asyncio.gather(*(w.stop() for w in list(self.routes.values())))
        self.routes.clear()

    async def aclose(self) -> None:
        await self.stop()
        for name in list(self.services):
            await self.stop_service(name)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._route_reader.shutdown)
        await loop.run_in_executor(None, self._executor.shutdown)

    def halt(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop without the event loop, which will not turn again (the app lost its display).

        Waits up to ``timeout`` for the batches connectors already handed to the capture thread
        (each commits with its checkpoint), then records every route's acknowledged position and
        every object as stopped. Connector and broker threads end with the process; what they
        had not handed over is read again from the checkpoint (at-least-once).
        """
        with contextlib.suppress(Exception):  # the capture thread runs its queue in order
            self._executor.submit(lambda: None).result(timeout)
        capture = self.capture
        for worker in self.routes.values():
            with contextlib.suppress(Exception):
                worker._collect(worker.inflight)  # batches acknowledged since the route last ran
            stored = capture.route_position(worker.name)
            if stored is None or worker.position > stored:  # positions only move forward
                capture.set_route_position(worker.name, worker.position)
        for key, change in list(self.states.items()):
            if change.state is not State.STOPPED and change.state is not State.ERROR:
                self.states[key] = StateChange(State.STOPPED)
                capture.set_state(key, State.STOPPED.value, None)
        self._route_reader.shutdown(wait=False)
        self._executor.shutdown(wait=False)

    # -- status ----------------------------------------------------------------------------
    def model_status(self, name: str) -> ModelStatus:
        model = self.workspace.model(name)
        runner = self.models.get(name)
        return ModelStatus(
            name=name,
            datasource=model.datasource,
            state=self.state_of(f"model/{name}"),
            checkpoint=self.capture.checkpoint(name),
            events=runner.meter.total if runner else 0,
            rate=runner.meter.rate() if runner else 0.0,
        )
