"""The ``nats`` broker kind's publisher: one NATS connection, kept open by a supervisor task
that reconnects with the shared backoff (core/retry_policy.py). JetStream publishes (the
default) carry a reply inbox; a batch's future resolves once the stream's PubAck for every one
of its messages came back, so a route's position never moves without them. Each message
carries a deterministic ``Nats-Msg-Id`` (connection.py), so a batch sent again after a crash or
a dropped connection is dropped by the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from eventdesk.brokers.nats.connection import check_stream, headers_for
from eventdesk.brokers.nats.errors import no_stream_error, permission_error, puback_error
from eventdesk.brokers.nats.settings import SCHEMA, NatsSettings
from eventdesk.clients.nats.connection import open_connection, where
from eventdesk.core.contracts import MAX_TOPIC_BYTES, MessageFields, State, StateChange
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, BrokerNoAckError, PoisonError
from eventdesk.core.reconnecting_publisher import ReconnectingPublisher
from eventdesk.core.retry_policy import Backoff
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import BrokerConfig

log = logging.getLogger(__name__)

_PERMISSION = re.compile(r"Permissions Violation for Publish to \"?([^\"']+)", re.IGNORECASE)
_DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default, until the server says otherwise


class _Batch:
    """One future for several messages: resolved when all are acknowledged, failed on the first failure."""

    __slots__ = ("future", "remaining", "timer", "tokens")

    def __init__(self, future: asyncio.Future[None], count: int) -> None:
        self.future = future
        self.remaining = count
        self.tokens: list[str] = []
        self.timer: asyncio.TimerHandle | None = None

    def done_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)
            if self.timer is not None:
                self.timer.cancel()

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        if self.timer is not None:
            self.timer.cancel()


class NatsPublisher(ReconnectingPublisher):
    """Publishes to a NATS JetStream stream (or to core NATS subjects, ``delivery = core``)."""

    kind: ClassVar[str] = "nats"
    settings_type: ClassVar[type[NatsSettings]] = NatsSettings
    schema: ClassVar[Schema] = SCHEMA
    log: ClassVar[logging.Logger] = log
    topic_separator: ClassVar[str] = "."
    wants_fields: ClassVar[bool] = True

    # Tunables (instances may override them, e.g. tests shorten the backoff).
    connect_timeout: float = 5.0
    ack_timeout: float = 15.0  # a batch without every PubAck by then fails (and is resent)
    leaderless_retry: float = 1.0  # a batch refused while its stream has no leader is resent after this

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        self.settings = NatsSettings.from_validated(config.settings)
        self._jetstream = self.settings.delivery == "jetstream"
        self._nc: Client | None = None
        self._inbox = ""
        self._ids = itertools.count()
        self._pending: dict[str, tuple[_Batch, str]] = {}  # reply token -> (its batch, subject)
        self._outbox: collections.deque[tuple[str, bytes, dict[str, str] | None, str, _Batch]] = (
            collections.deque()
        )
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended: asyncio.Future[BrokerError | None] | None = None
        self._changed: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._running = False
        self._max_payload = _DEFAULT_MAX_PAYLOAD
        self.summary = ""  # what the last connection found (the stream), for test_connection
        self._checks: set[asyncio.Task[None]] = set()  # a 503's stream lookups (_no_responders)
        self._checking: set[int] = set()  # the batches (ids) being looked up

    # -- topics and limits ----------------------------------------------------------------

    @staticmethod
    def validate_topic(topic: str) -> str | None:
        if not topic:
            return "the subject is empty"
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in topic):
            return "a NATS subject may not contain whitespace or control characters"
        tokens = topic.split(".")
        if any(not t for t in tokens):
            return "a NATS subject may not have an empty token (a leading, trailing or doubled '.')"
        if "*" in topic or ">" in topic:
            return "a publish subject may not contain the wildcards * or >"
        if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
            return f"a subject may be at most {MAX_TOPIC_BYTES} bytes"
        return None

    def message_bounds(self) -> tuple[int, int]:
        # The headers (ids and envelope fields) count toward the server's max_payload too.
        return MAX_TOPIC_BYTES // 4, self._max_payload - 4096

    def check_message(self, topic: str, payload: bytes, qos: int) -> PoisonError | None:
        problem = self.validate_topic(topic)
        if problem is not None:
            return PoisonError(problem, obj=self._label, field="topic")
        if len(payload) > self._max_payload - 4096:
            return PoisonError(
                f"the payload is {len(payload)} bytes; the server takes messages of at most "
                f"{self._max_payload} bytes (its max_payload), headers included",
                obj=self._label,
                field="payload",
            )
        return None

    # -- the Publisher contract -----------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._terminal = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._set_state(State.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(self._closing), name=f"nats-supervisor {self.config.name}"
        )

    @property
    def connected(self) -> bool:
        return self._running and self._nc is not None and self._nc.is_connected

    async def wait_connected(self) -> None:
        while True:
            self._raise_terminal()
            if self._closing is None or self._closing.is_set():
                raise BrokerError("the publisher is closed", obj=self._label, terminal=True)
            if self.connected:
                return
            assert self._changed is not None
            self._changed.clear()
            await self._changed.wait()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        return self._enqueue([(topic, payload)], None)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        return self._enqueue(messages, None)

    def publish_with_fields(
        self,
        messages: Sequence[tuple[str, bytes]],
        fields: Sequence[MessageFields],
        qos: int,
        retain: bool,
    ) -> asyncio.Future[None]:
        return self._enqueue(messages, fields)

    async def close(self, timeout: float = 2.0) -> None:
        task = self._task
        if task is None:
            return
        assert self._closing is not None
        self._set_state(State.STOPPING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Let what is in flight be acknowledged first (its position moves only then).
        unsettled = {batch.future for batch, _ in self._pending.values()}
        unsettled.update(entry[4].future for entry in self._outbox)
        if unsettled and self.connected:
            await asyncio.wait(unsettled, timeout=timeout)
        if self._pending or self._outbox:
            log.warning(
                "%s: closing with %d message(s) not acknowledged",
                self._label,
                len(self._pending) + len(self._outbox),
            )
        self._closing.set()
        if self._wake is not None:
            self._wake.set()
        try:
            await asyncio.wait_for(task, max(0.5, deadline - loop.time()) + 1.0)
        except TimeoutError:
            log.warning("%s: the NATS connection did not end in time", self._label)
        finally:
            self._task = None
            self._fail_all(
                BrokerDisconnectedError("the publisher was closed before the PubAck", obj=self._label)
            )
            self._set_state(State.STOPPED)
            self._notify()

    # -- publishing -----------------------------------------------------------------------

    def _enqueue(
        self, messages: Sequence[tuple[str, bytes]], fields: Sequence[MessageFields] | None
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not messages:
            future.set_result(None)
            return future
        if not self.connected:
            future.set_exception(BrokerDisconnectedError("not connected to the NATS server", obj=self._label))
            return future
        batch = _Batch(future, len(messages))
        stream = self.settings.stream
        outbox = self._outbox
        for i, (topic, payload) in enumerate(messages):
            headers = headers_for(fields[i], stream, topic) if fields is not None else None
            token = str(next(self._ids)) if self._jetstream else ""
            outbox.append((topic, payload, headers, token, batch))
        if self._jetstream:
            batch.timer = loop.call_later(self.ack_timeout, self._ack_timed_out, batch)
        assert self._wake is not None
        self._wake.set()
        return future

    def _ack_timed_out(self, batch: _Batch) -> None:
        self._resend(batch, f"no PubAck from the stream within {self.ack_timeout:g} s")

    def _resend(self, batch: _Batch, why: str) -> None:
        """Fail ``batch`` so that its route sends it again; the duplicate window drops what the
        stream had stored. Not a drop (BrokerNoAckError): the route must not take it for a
        message the broker chokes on."""
        for token in batch.tokens:
            self._pending.pop(token, None)
        batch.fail(BrokerNoAckError(why, obj=self._label))

    async def _on_leader_elected(self, msg: Msg) -> None:
        """A stream elected a leader (a node was lost, or its leader stepped down): what the old
        leader took and had not acknowledged may never be, so send it again now rather than
        after the PubAck timeout."""
        stream = msg.subject.rsplit(".", 1)[-1]
        batches = {id(batch): batch for batch, _ in self._pending.values()}
        if batches:
            log.info(
                "%s: stream %r elected a new leader; %d batch(es) sent again",
                self._label,
                stream,
                len(batches),
            )
        for batch in batches.values():
            self._resend(batch, f"stream {stream!r} elected a new leader before acknowledging")

    async def _send_loop(self, nc: Client) -> None:
        """Send the outbox in order (nc.publish only buffers, except when its buffer is full)."""
        assert self._wake is not None
        outbox, pending, inbox = self._outbox, self._pending, self._inbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                subject, payload, headers, token, batch = outbox.popleft()
                if batch.future.done():  # failed already (timed out, refused): the rest is resent
                    continue
                if token:
                    pending[token] = (batch, subject)
                    batch.tokens.append(token)
                    await nc.publish(subject, payload, reply=inbox + token, headers=headers)
                else:
                    await nc.publish(subject, payload, headers=headers)
                    batch.done_one()

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox) :]
        entry = self._pending.pop(token, None)
        if entry is None:
            return  # a batch that already failed
        batch, subject = entry
        if msg.headers and msg.headers.get("Status") == "503":
            # No responder: no stream binds the subject (poison), or its stream has no leader
            # right now (a cluster electing one after losing a node): then the batch is sent
            # again shortly.
            self._no_responders(batch, subject)
            return
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            batch.fail(BrokerError(f"an unreadable PubAck: {msg.data[:100]!r}", obj=self._label))
            return
        if "error" in reply:
            batch.fail(puback_error(reply, subject, self._label))
        else:
            batch.done_one()

    def _no_responders(self, batch: _Batch, subject: str) -> None:
        nc = self._nc
        if batch.future.done() or nc is None or id(batch) in self._checking:
            return  # one lookup per batch
        self._checking.add(id(batch))

        async def check() -> None:
            try:
                stream = await nc.jetstream(timeout=2.0).find_stream_name_by_subject(subject)
                why = f"stream {stream!r} has no leader (NATS is electing one)"
            except nats.js.errors.NotFoundError:
                batch.fail(no_stream_error(subject, self._label))
                return
            except Exception:  # JetStream itself is not answering: not the message's fault
                why = "JetStream did not answer (NATS is electing a leader)"
            # Paced: sent again at once, it would be refused at once, until the election ends.
            asyncio.get_running_loop().call_later(self.leaderless_retry, self._resend, batch, why)

        task = asyncio.get_running_loop().create_task(check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        task.add_done_callback(lambda _: self._checking.discard(id(batch)))

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        match = _PERMISSION.search(text)
        if match is None:
            log.debug("%s: %s", self._label, text)
            return
        subject = match.group(1)
        for token, (batch, pending_subject) in list(self._pending.items()):
            if pending_subject == subject:
                self._pending.pop(token, None)
                denied = permission_error(text, self._label)
                batch.fail(PoisonError(denied.detail, obj=self._label, field="topic"))
                break

    def _fail_all(self, error: BrokerError) -> None:
        for batch, _ in list(self._pending.values()):
            batch.fail(error)
        self._pending.clear()
        while self._outbox:
            self._outbox.popleft()[4].fail(error)

    # -- the connection -------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _connect_once(self, loop: asyncio.AbstractEventLoop) -> Client:
        ended: asyncio.Future[BrokerError | None] = loop.create_future()
        self._ended = ended

        async def closed() -> None:
            if not ended.done():
                ended.set_result(None)

        nc = await open_connection(
            self.settings,
            self.secret,
            self._label,
            self.connect_timeout,
            error_cb=self._on_error,
            closed_cb=closed,
            disconnected_cb=closed,
        )
        try:
            self.summary = await check_stream(nc, self.settings, self._label)
            self._inbox = nc.new_inbox() + "."
            await nc.subscribe(
                self._inbox + "*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            if self._jetstream:
                # Without leave to read JetStream's advisories, the server says so (to _on_error)
                # and only the PubAck timeout sends again what an old leader left unanswered.
                elected = f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{self.settings.stream or '*'}"
                await nc.subscribe(elected, cb=self._on_leader_elected)
            self._max_payload = nc.max_payload or _DEFAULT_MAX_PAYLOAD
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        return nc

    async def _serve_once(self, backoff: Backoff) -> BrokerError:
        try:
            nc = await self._connect_once(asyncio.get_running_loop())
        except BrokerError as exc:
            return exc
        error = await self._run_connection(nc, backoff)
        return error or BrokerError(
            f"the connection to {where(self.settings)} ended", obj=self._label, field="url"
        )

    def _target(self) -> str:
        return where(self.settings)

    def _test_summary(self) -> str:
        return f"connected to {where(self.settings)} ({self.summary})"

    async def _run_connection(self, nc: Client, backoff: Backoff) -> BrokerError | None:
        """Publish over ``nc`` until it ends or the publisher closes."""
        assert self._closing is not None and self._ended is not None and self._wake is not None
        self._nc = nc
        self._running = True
        backoff.connected()
        self._set_state(State.RUNNING)
        self._notify()
        sender = asyncio.get_running_loop().create_task(
            self._send_loop(nc), name=f"nats-sender {self.config.name}"
        )
        closing = asyncio.ensure_future(self._closing.wait())
        error: BrokerError | None = None
        try:
            waits: set[asyncio.Future[Any]] = {sender, closing, self._ended}
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is not None:
                exc = sender.exception()
                error = BrokerError(
                    f"the connection failed: {exc or type(exc).__name__}", obj=self._label, field="url"
                )
        finally:
            self._running = False
            self._nc = None
            closing.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self._fail_all(
                BrokerDisconnectedError(
                    "the connection to the NATS server dropped before the PubAck", obj=self._label
                )
            )
            self._notify()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2.0)
            self._wake.set()  # wake the next connection's sender for anything queued meanwhile
        return error
