"""Replay: republish a chosen range of captured or imported events to a broker, for testing consumers.

Pacing is the events' original one (``received_at`` deltas, optionally sped up), a fixed rate,
or as fast as the broker acknowledges. Sends are scheduled against absolute times from the
start, so pacing does not drift. Every message is awaited (acknowledged at QoS >= 1, accepted
at QoS 0) before the replay counts it; messages lost to a dropped connection are sent again
in order after reconnecting (at-least-once). The capture is read in a worker thread, in
batches, so the loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.contracts import MessageFields, Publisher, StateChange
from eventdesk.core.envelope import encode_payload, payload_format
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, ConfigError, JobCancelledError
from eventdesk.core.registry import broker_class
from eventdesk.core.scope import EventScope, Selection
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.topic_template import TopicTemplate, check_template
from eventdesk.core.workspace import BrokerConfig, Workspace

READ_BATCH = 1000
IN_FLIGHT = 1000
PROGRESS_INTERVAL = 0.2
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/s)?$")
_SPEED = re.compile(r"^(\d+(?:\.\d+)?)\s*x$", re.IGNORECASE)


@dataclass(frozen=True)
class Pace:
    """``original`` (times ``speed``), ``rate`` (events per second) or ``fast``."""

    mode: Literal["original", "rate", "fast"]
    value: float = 1.0

    @classmethod
    def parse(cls, text: str, *, obj: str = "replay") -> Pace:
        """``original``, ``fast``, a rate (``50`` or ``50/s``) or a speed-up of the original (``10x``)."""
        raw = text.strip().lower()
        if raw == "original":
            return cls("original")
        if raw == "fast":
            return cls("fast")
        for pattern, mode in ((_RATE, "rate"), (_SPEED, "original")):
            match = pattern.match(raw)
            if match:
                value = float(match.group(1))
                if value <= 0:
                    raise ConfigError("must be more than 0", obj=obj, field="pace")
                return cls(mode, value)  # type: ignore[arg-type]
        raise ConfigError(
            f"{text!r} is not a pace; use original, fast, a rate in events/s (50) or a speed-up (10x)",
            obj=obj,
            field="pace",
        )

    def describe(self) -> str:
        if self.mode == "fast":
            return "as fast as possible"
        if self.mode == "rate":
            return f"{self.value:g} events/s"
        return "original pacing" + (f" x{self.value:g}" if self.value != 1 else "")


@dataclass(frozen=True)
class ReplayTarget:
    """Where and how to publish: a broker, a topic template, a payload format, QoS and retain."""

    broker: BrokerConfig
    topic: str
    format: str = "envelope"
    qos: int = 1
    retain: bool = False

    @classmethod
    def for_route(cls, workspace: Workspace, route: str) -> ReplayTarget:
        """Publish as route ``route`` does (its broker, topic template, format, QoS and retain)."""
        cfg = workspace.route(route)
        s = cfg.settings
        return cls.for_broker(
            workspace,
            cfg.broker,
            topic=str(s["topic"]),
            fmt=str(s["format"]),
            qos=int(s["qos"]),
            retain=bool(s.get("retain", False)),
        )

    @classmethod
    def for_broker(
        cls,
        workspace: Workspace,
        broker: str,
        *,
        topic: str,
        fmt: str = "envelope",
        qos: int = 1,
        retain: bool = False,
    ) -> ReplayTarget:
        cfg = workspace.broker(broker)
        obj = "replay"
        try:
            fmt = payload_format(fmt)
        except ValueError as exc:
            raise ConfigError(str(exc), obj=obj, field="format") from None
        if qos not in (0, 1, 2):
            raise ConfigError("QoS is 0, 1 or 2", obj=obj, field="qos")
        problem = check_template(topic, broker_class(cfg.kind).validate_topic)
        if problem:
            raise ConfigError(problem, obj=obj, field="topic")
        return cls(cfg, topic, fmt, qos, retain)


@dataclass(frozen=True)
class ReplayProgress:
    published: int  # acknowledged (or accepted, at QoS 0)
    sent: int
    total: int  # rows in range (an upper bound when a text/JMESPath filter is set)
    elapsed: float

    @property
    def rate(self) -> float:
        return self.published / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.published <= 0 or self.total <= 0:
            return None
        return max(0.0, self.elapsed * (self.total - self.published) / self.published)


@dataclass(frozen=True)
class ReplayResult:
    published: int
    resent: int
    elapsed: float
    first_sent: float | None  # time.monotonic() of the first send, for the pacing record
    last_sent: float | None

    @property
    def rate(self) -> float:
        span = (self.last_sent or 0) - (self.first_sent or 0)
        return (self.published - 1) / span if self.published > 1 and span > 0 else 0.0


ReplayProgressCallback = Callable[[ReplayProgress], None]


def _timestamp(received_at: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(received_at)).timestamp()
    except ValueError:
        return None


@dataclass
class _InFlight:
    topic: str
    payload: bytes
    future: asyncio.Future[None]
    fields: MessageFields | None = None


class _Replayer:
    def __init__(
        self,
        publisher: Publisher,
        target: ReplayTarget,
        connect_timeout: float,
    ) -> None:
        self.publisher = publisher
        self.target = target
        self.connect_timeout = connect_timeout
        self.pending: collections.deque[_InFlight] = collections.deque()
        self.published = 0
        self.sent = 0
        self.resent = 0

    def _publish(
        self, topic: str, payload: bytes, fields: MessageFields | None = None
    ) -> asyncio.Future[None]:
        try:
            if fields is not None:  # a kind that carries them (NATS: headers, the de-duplication id)
                return self.publisher.publish_with_fields(
                    [(topic, payload)], [fields], self.target.qos, self.target.retain
                )
            return self.publisher.publish(topic, payload, self.target.qos, self.target.retain)
        except BrokerDisconnectedError as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    def send(self, topic: str, payload: bytes, env: dict[str, Any]) -> None:
        fields = None
        if self.publisher.wants_fields:
            rev = env.get("rev")
            fields = MessageFields(
                str(env.get("datasource", "")),
                str(env.get("model", "")),
                str(env.get("op", "")),
                str(env.get("key", "")),
                None if rev is None else str(rev),
                str(env.get("id", "")),
            )
        self.pending.append(_InFlight(topic, payload, self._publish(topic, payload, fields), fields))
        self.sent += 1

    async def drain(self, keep: int) -> None:
        """Await acknowledgements, oldest first, until at most ``keep`` are outstanding."""
        while len(self.pending) > keep:
            head = self.pending[0]
            try:
                await head.future
            except BrokerDisconnectedError:
                await self._resend()
                continue
            self.pending.popleft()
            self.published += 1

    def collect(self) -> None:
        """Count what is already acknowledged, without waiting."""
        while self.pending:
            fut = self.pending[0].future
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                return
            self.pending.popleft()
            self.published += 1

    async def wait_connected(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.publisher.wait_connected()
        except TimeoutError:
            raise BrokerError(
                f"not connected within {self.connect_timeout:g} s", obj=self.target.broker.label
            ) from None

    async def _resend(self) -> None:
        for entry in self.pending:
            if not entry.future.done():
                entry.future.cancel()
            elif not entry.future.cancelled():
                entry.future.exception()  # consumed: it is sent again below
        await self.wait_connected()
        for entry in self.pending:
            entry.future = self._publish(entry.topic, entry.payload, entry.fields)
            self.resent += 1


def _take(
    it: Iterator[tuple[int, bytes, dict[str, Any] | None]], n: int
) -> list[tuple[bytes, dict[str, Any]]]:
    out = []
    for _pos, raw, env in it:
        out.append((raw, env if env is not None else json_codec.loads(raw)))
        if len(out) >= n:
            break
    return out


async def replay(
    capture: Capture,
    target: ReplayTarget,
    scope: EventScope | None = None,
    pace: Pace | None = None,
    *,
    publisher: Publisher | None = None,
    progress: ReplayProgressCallback | None = None,
    cancel: threading.Event | None = None,
    connect_timeout: float = 10.0,
) -> ReplayResult:
    """Republish the events of ``scope`` in ``capture`` to ``target`` at ``pace``; returns once
    every message is acknowledged. Without ``publisher``, one is made for the target's broker
    (secret from the keyring or environment) and closed at the end.

    Raises :class:`ConfigError` for a bad scope or template, :class:`BrokerError` when the broker
    cannot be reached, :class:`JobCancelledError` when ``cancel`` is set (task cancellation also works).
    """
    pace = pace or Pace("fast")
    selection = Selection(capture, scope or EventScope())
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventdesk-replay")
    own = publisher is None
    if publisher is None:
        secret = await loop.run_in_executor(
            executor, resolve_secret, target.broker.secret, target.broker.label
        )

        def on_state(change: StateChange) -> None:
            del change  # the replay reports through its own progress and errors

        publisher = broker_class(target.broker.kind)(config=target.broker, secret=secret, on_state=on_state)
    template = TopicTemplate(target.topic, publisher.topic_separator)  # NATS subjects escape their own way
    worker = _Replayer(publisher, target, connect_timeout)
    started = time.monotonic()
    first_sent: float | None = None
    last_sent: float | None = None
    try:
        total = await loop.run_in_executor(executor, selection.total)
        if own:
            await publisher.start()
        await worker.wait_connected()
        rows = iter(selection)
        base_ts: float | None = None
        last_ts = 0.0
        index = 0
        next_report = time.monotonic() + PROGRESS_INTERVAL
        while True:
            batch = await loop.run_in_executor(executor, _take, rows, READ_BATCH)
            if not batch:
                break
            for raw, env in batch:
                if cancel is not None and cancel.is_set():
                    raise JobCancelledError(f"replay cancelled after {worker.published} events", obj="replay")
                if pace.mode != "fast":
                    if pace.mode == "rate":
                        offset = index / pace.value
                    else:
                        ts = _timestamp(env.get("received_at"))
                        if ts is not None and base_ts is None:
                            base_ts = ts
                        if ts is not None and base_ts is not None:
                            last_ts = max(last_ts, ts - base_ts)
                        offset = last_ts / pace.value
                    if first_sent is not None:
                        delay = first_sent + offset - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                payload = raw if target.format == "envelope" else encode_payload(env, target.format)
                worker.send(template.render(env), payload, env)
                last_sent = time.monotonic()
                if first_sent is None:
                    first_sent = last_sent
                index += 1
                if len(worker.pending) > IN_FLIGHT:
                    await worker.drain(IN_FLIGHT // 2)
                else:
                    worker.collect()
                if progress is not None and last_sent >= next_report:
                    next_report = last_sent + PROGRESS_INTERVAL
                    progress(ReplayProgress(worker.published, worker.sent, total, last_sent - started))
        await worker.drain(0)
        elapsed = time.monotonic() - started
        if progress is not None:
            progress(ReplayProgress(worker.published, worker.sent, total, elapsed))
        return ReplayResult(worker.published, worker.resent, elapsed, first_sent, last_sent)
    finally:
        for entry in worker.pending:
            if not entry.future.done():
                entry.future.cancel()
            elif not entry.future.cancelled():
                entry.future.exception()
        if own:
            with contextlib.suppress(Exception):
                await publisher.close()
        executor.shutdown(wait=False, cancel_futures=True)
