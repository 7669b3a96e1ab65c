"""The runtime wires connectors to capture, routes and live subscribers (docs/architecture.md).

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
from eventdesk.core.errors import (
    BrokerDisconnectedError,
    BrokerError,
    ConnectorError,
    EventDeskError,
    PoisonError,
)
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
# ``listener(route, pos, field, reason)``: the route set the event at capture position ``pos`` aside.
QuarantineListener = Callable[[str, int, str, str], None]
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
# Poison events (see RouteWorker._failed): after this many connection drops with the same first
# unacknowledged event, a route sends one event at a time until it is past what was in flight;
# an event after which the connection drops POISON_DROPS times in a row (each within
# POISON_DROP_S of sending it alone while connected) is quarantined, as is one the broker
# refused POISON_REFUSALS times for a reason it does not call permanent.
ISOLATE_AFTER_DROPS = 2
POISON_DROPS = 3
POISON_DROP_S = 5.0
POISON_REFUSALS = 3
REFUSAL_PAUSE_S = 1.0
QUARANTINE_POLL_S = 1.0  # how often a route looks for quarantined events the user asked to retry
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
    quarantined: int = 0


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
        # The route sending one event at a time to find a poison (RouteWorker._failed): the other
        # routes of this broker send nothing meanwhile, so a drop is that event's doing.
        self.isolating: RouteWorker | None = None

    def release_isolation(self, worker: RouteWorker) -> None:
        if self.isolating is worker:
            self.isolating = None
            for other in self.runtime.routes.values():
                if other.broker == self.name:
                    other.wake.set()

    def alone(self, worker: RouteWorker) -> bool:
        """Whether no other route of this broker has messages in flight."""
        return not any(
            w.inflight for w in self.runtime.routes.values() if w.broker == self.name and w is not worker
        )

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
        self.on_poison: str = cfg.settings.get("on_poison", "quarantine")
        self.quarantined = 0  # events this route set aside since it started
        self.set_aside: set[int] = set()  # their positions, so a resend does not record them again
        self.halt: PoisonError | None = None  # on_poison stop: raised once what precedes it is settled
        self.link: BrokerLink | None = None
        # Poison detection (see _failed): one event at a time up to this position while set.
        self.isolate_to: int | None = None
        self.drop_pos = -1  # the position at the last connection drop, and how many in a row there
        self.drops = 0
        # The lone event in flight, when it was sent, and whether it was alone on the connection.
        self.single: tuple[RouteRow, float, bool] | None = None
        self.suspect = (-1, 0)  # (position, drops right after it was sent alone)
        self.refused = (-1, 0)  # (position, refusals not called permanent)
        # Time for the next look for quarantined entries to retry (set by a timer, as with
        # save_due: under qasync a wake-up can come a little before a clock deadline).
        self.poll_due = True
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
            link = self.link = self.runtime._broker_link(self.broker)
            publisher = await link.acquire()
            stored = await self.runtime.db(self.runtime.capture.route_position, self.name)
            self.position = stored if stored is not None else 0
            self.runtime._set_state(self.key, StateChange(State.CONNECTING))
            await self._publish_forever(publisher)
        except PoisonError as exc:  # on_poison stop: this route stops; the rest runs on
            log.error("%s", exc.describe())
            self.runtime._set_state(self.key, StateChange(State.ERROR, exc.describe()))
        except EventDeskError as exc:  # missing secret, refused credentials, TLS failure, ...
            self.runtime._set_state(self.key, StateChange(State.ERROR, exc.describe()))
            self.runtime._terminal(self.key, exc)
        finally:
            if link is not None:
                link.release_isolation(self)
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
        loop = asyncio.get_running_loop()
        sent = self.position  # the last position handed to the publisher
        try:
            while True:
                self.wake.clear()
                failure = self._collect(inflight)
                if failure is not None:  # resend what followed (or find the poison in it)
                    sent = await self._failed(failure, sent)
                    continue
                if self.halt is not None and not inflight:
                    raise self.halt
                if not publisher.connected:
                    self._abandon(inflight)
                    sent = self.position
                    if self.unsaved:  # what was acknowledged before the drop
                        self._save_position()
                    await publisher.wait_connected()
                    self.runtime._set_state(self.key, StateChange(State.RUNNING))
                    continue
                if self.unsaved and self._save_now():
                    self._save_position()
                if self.poll_due:
                    self.poll_due = False
                    loop.call_later(QUARANTINE_POLL_S, self._mark_poll_due)
                    await self._retry_quarantined(publisher)
                    continue
                room = 0 if self.draining or self.halt else ROUTE_BATCH - self.outstanding - self.unsaved
                link = self.link
                if self.isolate_to is not None or (link is not None and link.isolating is not None):
                    if link is not None and link.isolating is None:
                        link.isolating = self
                    isolating = link is None or link.isolating is self
                    # One event at a time, while the other routes of the broker wait.
                    room = 0 if inflight or self.draining or self.halt or not isolating else 1
                elif inflight and room < ROUTE_READ_MIN:
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
        except PoisonError:  # on_poison stop: record what was acknowledged before it
            with contextlib.suppress(Exception):
                self._collect(inflight)
                self._abandon(inflight)
                if self.unsaved:
                    self._save_position()
            raise

    async def _failed(self, failure: BaseException, sent: int) -> int:
        """A batch failed (everything in flight is abandoned): decide what to send next and
        return the position to resend from.

        A dropped connection is usually the network or a broker restart, and everything is
        resent. But a broker may also drop the connection because of one message (too big for
        MQTT 3.1.1, a topic its ACL denies): after ISOLATE_AFTER_DROPS drops with the same first
        unacknowledged event, the route sends one event at a time up to what was in flight, and
        an event after which the connection drops POISON_DROPS times in a row, right after it
        was sent alone, is a poison. A refused batch is resent one event at a time too, to find
        the event refused: a permanent refusal (PoisonError) makes it a poison at once, any
        other refusal after POISON_REFUSALS tries.
        """
        single, self.single = self.single, None
        if not isinstance(failure, BrokerError):
            raise failure
        if isinstance(failure, BrokerDisconnectedError):
            if single is not None:
                row, at, alone = single
                if alone and asyncio.get_running_loop().time() - at <= POISON_DROP_S:
                    pos, drops = self.suspect
                    drops = drops + 1 if pos == row[0] else 1
                    self.suspect = (row[0], drops)
                    if drops >= POISON_DROPS:
                        topic, payload = self._message(row)
                        self._poisoned(
                            row,
                            "message",
                            f"the broker closed the connection each time this message was sent ({drops} times "
                            f"in a row): too big for it (a payload of {len(payload)} bytes), or a topic it "
                            f"refuses ({topic[:100]!r})",
                        )
                return self.position
            if self.position == self.drop_pos:
                self.drops += 1
            else:
                self.drop_pos, self.drops = self.position, 1
            if self.drops >= ISOLATE_AFTER_DROPS and sent > self.position:
                if self.isolate_to is None:
                    log.warning(
                        "%s: the connection dropped %d times with the event after capture position %d "
                        "first in flight; sending one event at a time up to position %d",
                        self.label,
                        self.drops,
                        self.position,
                        sent,
                    )
                self.isolate_to = max(self.isolate_to or 0, sent)
            return self.position
        if single is None:  # refused somewhere in a batch: find which event
            if sent > self.position:
                self.isolate_to = max(self.isolate_to or 0, sent)
            return self.position
        row = single[0]
        if isinstance(failure, PoisonError):
            self._poisoned(row, failure.field or "message", failure.detail)
            return self.position
        pos, refusals = self.refused
        refusals = refusals + 1 if pos == row[0] else 1
        self.refused = (row[0], refusals)
        if refusals >= POISON_REFUSALS:
            self._poisoned(row, "message", f"refused {refusals} times: {failure.detail}")
        else:
            log.warning(
                "%s: %s; sending it again in %g s", self._describe(row), failure.detail, REFUSAL_PAUSE_S
            )
            await asyncio.sleep(REFUSAL_PAUSE_S)
        return self.position

    @property
    def label(self) -> str:
        return f"route {self.name!r}"

    def _describe(self, row: RouteRow) -> str:
        """The route and the event of ``row`` as a user finds them (a huge key is cut short)."""
        key = row[4]
        shown = repr(key) if len(key) <= 80 else f"{key[:60]!r}... ({len(key)} characters)"
        return f"{self.label}: event {shown} of model {self.model!r} (capture position {row[0]})"

    def _poisoned(
        self, row: RouteRow, field: str, why: str, *, in_order: bool = True, retried: bool = False
    ) -> None:
        """The event of ``row`` can never be published as the route stands: quarantine it (the
        route goes past it) or, with on_poison stop, stop the route (raises PoisonError).

        ``in_order``: ``row`` is the next event after ``position`` (sent alone), so the position
        moves past it here; otherwise the batch it was left out of moves it, or (``retried``) it
        is a quarantined event the user asked to retry."""
        pos = row[0]
        if pos in self.set_aside and not retried and self.on_poison != "stop":
            return  # met again in a resend: recorded already
        if self.on_poison == "stop":
            raise PoisonError(
                f"event {row[4][:80]!r} of model {self.model!r} (capture position {pos}) cannot be published: "
                f"field {field!r}: {why} (on_poison stop; quarantine it with on_poison quarantine, or fix the "
                "route, then start it again)",
                obj=self.label,
                field="on_poison",
            )
        reason = f"field {field!r}: {why}"
        log.warning("%s quarantined: %s", self._describe(row), reason)
        quarantine = self.runtime.capture.quarantine_add
        submitted = self.runtime._executor.submit(quarantine, self.name, pos, field, reason)
        asyncio.wrap_future(submitted).add_done_callback(self._quarantine_saved)
        self.quarantined += 1
        if len(self.set_aside) >= ROUTE_BATCH:  # those behind the position are not met again
            self.set_aside = {p for p in self.set_aside if p > self.position}
        self.set_aside.add(pos)
        self.suspect = self.refused = (-1, 0)
        if in_order and pos > self.position:
            self.position = pos  # saved after the quarantine entry (the capture thread keeps the order)
            self.unsaved += 1
            self._isolated_past()
        self.runtime._quarantined(self.name, pos, field, reason)

    def _quarantine_saved(self, saving: asyncio.Future[None]) -> None:
        if not saving.cancelled() and saving.exception() is not None:
            log.error("%s: could not record a quarantined event: %s", self.label, saving.exception())

    def _isolated_past(self) -> None:
        if self.isolate_to is not None and self.position >= self.isolate_to:
            self.isolate_to = None
            if self.link is not None:
                self.link.release_isolation(self)
            log.info("%s: past the events in flight at the drops; sending in batches again", self.label)

    def _message(self, row: RouteRow) -> tuple[str, bytes]:
        _, raw, datasource, op, key = row
        topic = self.template.render_fields(datasource, self.model, op, key)
        return topic, raw if self.format == "envelope" else encode_payload(json_codec.loads(raw), self.format)

    async def _retry_quarantined(self, publisher: Publisher) -> None:
        """Publish the quarantined events the user asked to retry (``eventdesk quarantine retry``),
        one at a time; one that fails again goes back to the quarantine with the new reason."""
        capture = self.runtime.capture
        rows = await self.runtime.read_for_route(capture.quarantine_due, self.name)
        for row in rows:
            if not publisher.connected:
                return  # they stay marked: retried once connected
            topic, payload = self._message(row)
            problem = publisher.check_message(topic, payload, self.qos)
            if problem is not None:
                self._poisoned(row, problem.field or "message", problem.detail, in_order=False, retried=True)
                continue
            try:
                await asyncio.wait_for(publisher.publish(topic, payload, self.qos, self.retain), 30.0)
            except PoisonError as exc:
                self._poisoned(row, exc.field or "message", exc.detail, in_order=False, retried=True)
            except (BrokerError, TimeoutError) as exc:
                why = exc.detail if isinstance(exc, BrokerError) else "no acknowledgement within 30 s"
                self._poisoned(
                    row, "message", f"retried, and failed again: {why}", in_order=False, retried=True
                )
            else:
                await self.runtime.db(capture.quarantine_release, self.name, row[0])
                log.info("%s published on retry; it left the quarantine", self._describe(row))

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

    def _mark_poll_due(self) -> None:
        self.poll_due = True
        self.wake.set()

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
        messages: list[tuple[str, bytes] | None] = [
            (
                render_fields(datasource, model, op, key),  # from the columns: no JSON parsing
                # The stored bytes are the envelope; other formats are made from it.
                raw if fmt == "envelope" else encode_payload(json_codec.loads(raw), fmt),
            )
            for _, raw, datasource, op, key in rows
        ]
        # Messages no broker or not this one takes are set aside before sending (two length
        # comparisons per message; only the long ones are looked at closer).
        topic_max, payload_max = publisher.message_bounds()
        poisoned = False
        for i, message in enumerate(messages):
            assert message is not None
            if len(message[0]) > topic_max or len(message[1]) > payload_max:
                problem = publisher.check_message(message[0], message[1], self.qos)
                if problem is not None:
                    try:
                        self._poisoned(rows[i], problem.field or "message", problem.detail, in_order=False)
                    except PoisonError as stop:  # on_poison stop: send what precedes it, then stop
                        self.halt = stop
                        rows, messages = rows[:i], messages[:i]
                        break
                    messages[i] = None
                    poisoned = True
        if self.isolate_to is not None and rows and messages[0] is not None and publisher.connected:
            link = self.link
            alone = link is None or link.alone(self)  # else a drop may be another route's doing
            self.single = (rows[0], asyncio.get_running_loop().time(), alone)
        step = ROUTE_SEND_BATCH
        for start in range(0, len(rows), step):
            part = messages[start : start + step]
            batch = [m for m in part if m is not None] if poisoned else part
            try:
                fut = publisher.publish_many(batch, self.qos, self.retain)  # type: ignore[arg-type]
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

    def _collect(
        self, inflight: collections.deque[tuple[int, int, asyncio.Future[None]]]
    ) -> BaseException | None:
        """Advance ``position`` over the acknowledged batches at the head of ``inflight``.

        Returns why the first batch not acknowledged failed (BrokerDisconnectedError when the
        connection dropped; everything in flight is then dropped, to be resent), or None.
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
                    return exc
                inflight.popleft()
                self.outstanding -= count
                self.unsaved += count
                self.position = pos
                acked += count
        finally:
            if acked:
                self.published += acked
                self.meter.add(acked)
                if self.single is not None and self.single[0][0] <= self.position:
                    self.single = None
                    self.suspect = self.refused = (-1, 0)
                self._isolated_past()
        return None

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
        self._quarantine_listeners: list[QuarantineListener] = []
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

    def on_quarantine(self, listener: QuarantineListener) -> None:
        """``listener(route, pos, field, reason)`` each time a route quarantines an event (the
        entries themselves: ``capture.quarantine_entries``; retry and drop: ``capture.quarantine_retry``,
        ``capture.quarantine_drop``, which a running route notices within QUARANTINE_POLL_S)."""
        self._quarantine_listeners.append(listener)

    def _quarantined(self, route: str, pos: int, field: str, reason: str) -> None:
        for listener in self._quarantine_listeners:
            listener(route, pos, field, reason)

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

    def route_status(self, name: str) -> RouteStatus:
        """A route's state, its recorded position, its backlog and how many events it has in
        quarantine (reads capture: call it off the loop when it matters)."""
        route = self.workspace.route(name)
        position = self.capture.route_position(name) or 0
        return RouteStatus(
            name=name,
            model=route.model,
            broker=route.broker,
            enabled=route.enabled,
            state=self.state_of(f"route/{name}"),
            position=position,
            backlog=self.capture.count(route.model, after=position),
            quarantined=self.capture.quarantine_counts().get(name, 0),
        )
