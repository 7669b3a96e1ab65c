"""A route at work: publishes one model's captured events to one broker, in capture order, from
the route's recorded position (step 6 of the event's path in docs/architecture.md, and
docs/architecture.md, "The delivery promise").

This is the pipeline's hot path: ``offer`` keeps the rows just committed in a bounded tail,
``_take_tail``/``_send`` publish them in batches of ROUTE_SEND_BATCH with at most ROUTE_BATCH
events outstanding, and ``_collect`` moves the position over a contiguous run of acknowledged
batches. Finding and setting aside poison events is in core/route_poison.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

from eventdesk.core import json_codec
from eventdesk.core.broker_link import BrokerLink
from eventdesk.core.capture import Appended, RouteRow
from eventdesk.core.contracts import Publisher, State, StateChange
from eventdesk.core.envelope import encode_payload
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, EventDeskError, PoisonError
from eventdesk.core.rate import RateMeter
from eventdesk.core.route_poison import RoutePoison, message_fields
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.topic_template import TopicTemplate
from eventdesk.core.workspace import RouteConfig, RouteSettings

log = logging.getLogger(__name__)

ROUTE_BATCH = 1000  # events a route has outstanding at most (sent, or acked and not yet recorded)
ROUTE_READ_MIN = 250  # while events are in flight, read more only once this many fit
# Events published as one batch (one future): small enough that acknowledged batches free room
# for the next read while later ones are still in flight.
ROUTE_SEND_BATCH = 100
# A route records its position once this many acknowledged events wait to be recorded, or this
# long after the first of them (a save per acknowledged batch costs a transaction and two thread
# hand-offs). Both count against ROUTE_BATCH, so a crash still resends at most ROUTE_BATCH events.
ROUTE_SAVE_EVERY = 250
ROUTE_SAVE_S = 0.02
ROUTE_DRAIN_S = 2.0  # on stop, how long a connected route waits for its in-flight acknowledgements
# Rows (and bytes of envelopes) a route keeps from the batches just committed, so that while it
# keeps up it publishes them without reading capture; beyond that it reads capture.
ROUTE_TAIL = 2 * ROUTE_BATCH
ROUTE_TAIL_BYTES = 8 * 1024 * 1024
QUARANTINE_POLL_S = 1.0  # how often a route looks for quarantined events the user asked to retry


class RouteWorker(RoutePoison):
    """Publishes one model's captured events to one broker, in order, from its position."""

    outstanding_max = ROUTE_BATCH

    def __init__(self, hub: RuntimeHub, cfg: RouteConfig, link_for: Callable[[str], BrokerLink]) -> None:
        self.hub = hub
        self.link_for = link_for  # the shared link of a broker (made on first use)
        self.name = cfg.name
        self.model = cfg.model
        self.broker = cfg.broker
        settings = RouteSettings.from_validated(cfg.settings)
        self.template = TopicTemplate(settings.topic)
        self.format = settings.format
        self.qos = settings.qos
        self.retain = settings.retain
        self.on_poison = settings.on_poison
        self.quarantined = 0  # events this route set aside since it started
        self.set_aside: set[int] = set()  # their positions, so a resend does not record them again
        self.halt: PoisonError | None = None  # on_poison stop: raised once what precedes it is settled
        self.error: EventDeskError | None = None  # what the route stopped on (kept as its state)
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
            self.hub.set_state(
                self.key,
                StateChange(State.RETRYING, f"broker {self.broker!r}: {change.detail or change.state.value}"),
            )
        elif change.state is State.RUNNING:
            self.hub.set_state(self.key, StateChange(State.RUNNING))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"route:{self.name}")

    async def _run(self) -> None:
        link: BrokerLink | None = None
        acquired = False
        try:
            link = self.link = self.link_for(self.broker)
            publisher = await link.acquire()
            acquired = True
            if self.template.separator != publisher.topic_separator:  # NATS subjects: their own escaping
                self.template = TopicTemplate(self.template.template, publisher.topic_separator)
            stored = await self.hub.db(self.hub.capture.route_position, self.name)
            self.position = stored if stored is not None else 0
            self.hub.set_state(self.key, StateChange(State.CONNECTING))
            await self._publish_forever(publisher)
        except PoisonError as exc:  # on_poison stop: this route stops; the rest runs on
            log.error("%s", exc.describe())
            self.error = exc
            self.hub.set_state(self.key, StateChange(State.ERROR, exc.describe()))
        except EventDeskError as exc:  # missing secret, refused credentials, TLS failure, ...
            self.error = exc
            self.hub.set_state(self.key, StateChange(State.ERROR, exc.describe()))
            self.hub.terminal(self.key, exc)
        except Exception as exc:  # a bug (ours or a broker kind's) must show, not end the task silently
            log.exception("%s failed", self.label)
            err = self.error = BrokerError(f"unexpected failure: {type(exc).__name__}: {exc}", obj=self.label)
            self.hub.set_state(self.key, StateChange(State.ERROR, err.describe()))
            self.hub.terminal(self.key, err)
        finally:
            if link is not None:
                link.release_isolation(self)
                if acquired:
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
        capture = self.hub.capture
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
                    self.hub.set_state(self.key, StateChange(State.RUNNING))
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
                        rows = await self.hub.read_for_route(capture.read_route_rows, self.model, sent, room)
                    if rows:
                        sent = self._send(publisher, rows, inflight, sent)
                        continue
                if not inflight and self.hub.state_of(self.key).state is not State.RUNNING:
                    self.hub.set_state(self.key, StateChange(State.RUNNING))
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
            self.hub.executor.submit(self.hub.capture.set_route_position, self.name, self.position)
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
        fields = [message_fields(raw, model) for _, raw, *_ in rows] if publisher.wants_fields else None
        step = ROUTE_SEND_BATCH
        for start in range(0, len(rows), step):
            part = messages[start : start + step]
            batch = [m for m in part if m is not None] if poisoned else part
            try:
                if fields is None:
                    fut = publisher.publish_many(batch, self.qos, self.retain)  # type: ignore[arg-type]
                else:
                    fpart = fields[start : start + step]
                    if poisoned:
                        fpart = [f for f, m in zip(fpart, part, strict=True) if m is not None]
                    fut = publisher.publish_with_fields(batch, fpart, self.qos, self.retain)  # type: ignore[arg-type]
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

    def collect_acknowledged(self) -> None:
        """Move ``position`` over the batches acknowledged since the route last ran (for a halt,
        when the loop will not turn again)."""
        self._collect(self.inflight)

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
            self.hub.set_state(self.key, StateChange(State.STOPPING))
            self.draining = True
            pending = [fut for _, _, fut in self.inflight if not fut.done()]
            link = self.link
            if pending and drain > 0 and link is not None and link.connected:
                await asyncio.wait(pending, timeout=drain)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.saving is not None:  # the last position save (the capture thread runs them in order)
            await asyncio.wait({self.saving})
        if self.error is None:  # a route stopped on an error keeps showing it, as a model does
            self.hub.set_state(self.key, StateChange(State.STOPPED))
