"""The ``mqtt`` broker kind's publisher: one connection to one broker, kept open by a
supervisor task on the asyncio loop that reconnects with the shared backoff policy
(core/retry_policy.py) and reports the states; bad credentials and unusable certificates are
terminal. Routes publish through :meth:`MqttPublisher.publish_many`, one future per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self

import paho.mqtt.client as mqtt

from eventdesk.brokers.mqtt.batch import Batch, Settle
from eventdesk.brokers.mqtt.connection import Connection, connection_type
from eventdesk.brokers.mqtt.link import MAX_PACKET
from eventdesk.brokers.mqtt.settings import SCHEMA, MqttSettings
from eventdesk.brokers.mqtt.transport import Params, resolve_params
from eventdesk.core.contracts import MAX_TOPIC_BYTES, State, StateChange
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, PoisonError
from eventdesk.core.reconnecting_publisher import ReconnectingPublisher
from eventdesk.core.retry_policy import Backoff
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import BrokerConfig

log = logging.getLogger(__name__)


class MqttPublisher(ReconnectingPublisher):
    """Publishes to one MQTT broker (the threads and the socket: link.py, ``Link``)."""

    kind: ClassVar[str] = "mqtt"
    settings_type: ClassVar[type[MqttSettings]] = MqttSettings
    schema: ClassVar[Schema] = SCHEMA
    log: ClassVar[logging.Logger] = log

    # Tunables (instances may override them, e.g. tests shorten the backoff).
    max_inflight: int = 1000  # QoS > 0 messages sent and not yet acknowledged
    connack_timeout: float = 30.0  # from starting an attempt to CONNACK
    close_grace: float = 1.0  # added to close()'s timeout for the DISCONNECT itself

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        self.settings = MqttSettings.from_validated(config.settings)
        self._client_id = self.settings.client_id or f"eventdesk-{config.name}-{secrets.token_hex(4)}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._changed: asyncio.Future[None] | None = None
        self._closing_event: asyncio.Event | None = None
        self._closing = False
        self._closed = False

    @staticmethod
    def validate_topic(topic: str) -> str | None:
        if not topic:
            return "the topic is empty"
        if "+" in topic or "#" in topic:
            return "a publish topic may not contain the wildcards + or #"
        if "\x00" in topic:
            return "a topic may not contain the NUL character"
        if topic[0] == "$":
            return (
                "topics starting with $ belong to the broker ($SYS/...); MQTT clients may not publish to them"
            )
        if len(topic.encode("utf-8")) > 65535:
            return "a topic may be at most 65535 bytes"
        return None

    # -- the Publisher contract -----------------------------------------------------------

    def message_bounds(self) -> tuple[int, int]:
        conn = self._conn
        max_packet = conn.max_packet if conn is not None else MAX_PACKET
        # A topic of up to MAX_TOPIC_BYTES // 4 characters is at most MAX_TOPIC_BYTES bytes;
        # the rest of a PUBLISH's header (fixed header, topic length, mid, properties) is < 16 bytes.
        return MAX_TOPIC_BYTES // 4, max_packet - MAX_TOPIC_BYTES - 16

    def check_message(self, topic: str, payload: bytes, qos: int) -> PoisonError | None:
        problem = self.validate_topic(topic)
        if problem is not None:
            return PoisonError(problem, obj=self._label, field="topic")
        conn = self._conn
        max_packet = conn.max_packet if conn is not None else MAX_PACKET
        remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
        if conn is not None and conn.params.protocol == mqtt.MQTTv5:
            remaining += 1  # the (empty) property length
        size = 2 + remaining + (remaining > 127) + (remaining > 16383) + (remaining > 2097151)
        if size > max_packet:
            return PoisonError(
                f"the message is {size} bytes (a payload of {len(payload)}); the broker takes packets of at "
                f"most {max_packet} bytes",
                obj=self._label,
                field="payload",
            )
        return None

    async def start(self) -> None:
        """Begin connecting in the background; problems are reported through ``on_state``.

        A closed publisher (or one stopped by a terminal error) starts afresh.
        """
        loop = self._ensure_loop()
        while self._closing and not self._closed:  # a close() is under way: let it finish
            assert self._changed is not None
            await asyncio.shield(self._changed)
        if self._task is not None and not self._task.done():
            return
        self._closing = self._closed = False
        self._terminal = None
        self._conn = None
        self._closing_event = asyncio.Event()
        self._set_state(State.CONNECTING)
        self._task = loop.create_task(
            self._supervise(self._closing_event), name=f"mqtt-supervisor {self.config.name}"
        )

    @property
    def connection(self) -> Connection | None:
        """The current connection (or attempt); None before the first one and once closed."""
        return self._conn

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected and not self._closing

    async def wait_connected(self) -> None:
        self._ensure_loop()
        while True:
            self._raise_terminal()
            if self._closing or self._closed:
                raise BrokerError("the publisher is closed", obj=self._label, terminal=True)
            if self.connected:
                return
            assert self._changed is not None
            await asyncio.shield(self._changed)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        return self.publish_many(((topic, payload),), qos, retain)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
        conn = self._conn
        loop = conn.loop if conn is not None else self._ensure_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not messages:
            future.set_result(None)
        elif conn is None or not conn.connected or self._closing:
            future.set_exception(BrokerDisconnectedError("not connected to the broker", obj=self._label))
        else:
            # A lone message settles its own future; more share one through a Batch.
            target: Settle = future if len(messages) == 1 else Batch(future, len(messages))
            publish = conn.publish
            for topic, payload in messages:
                publish(topic, payload, qos, retain, target)
                if future.done():  # refused (a topic no broker takes): the rest is not sent
                    break
        return future

    async def close(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` for in-flight messages, then disconnect (plus a short grace)."""
        if self._closed:
            return
        if self._closing:  # a concurrent close(): wait for the first one
            while not self._closed:
                assert self._changed is not None
                await asyncio.shield(self._changed)
            return
        loop = self._ensure_loop()
        self._closing = True
        self._set_state(State.STOPPING)
        self._notify()
        assert self._closing_event is not None
        self._closing_event.set()
        deadline = loop.time() + timeout
        conn = self._conn
        try:
            if conn is not None and conn.connected:
                unacked = conn.unacked()
                if unacked:
                    _, not_done = await asyncio.wait(unacked, timeout=max(0.0, deadline - loop.time()))
                    if not_done:
                        log.warning(
                            "%s: closing with %d message(s) not acknowledged within %.1f s",
                            self._label,
                            len(not_done),
                            timeout,
                        )
            conn = self._conn  # the supervisor may have moved on meanwhile
            if conn is not None:
                conn.stop()
            task = self._task
            if task is not None and not task.done():
                _, running = await asyncio.wait(
                    {task}, timeout=max(0.0, deadline - loop.time()) + self.close_grace
                )
                if running:
                    log.warning("%s: the MQTT connection did not end in time", self._label)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            if conn is not None:
                conn.fail_pending("the publisher was closed before the broker acknowledged the message")
            self._closed = True
            self._conn = None
            self._task = None
            self._notify()
            self._set_state(State.STOPPED)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._task is not None and not self._task.done():
                raise RuntimeError(f"{self._label}: the publisher is running on another event loop")
            self._loop = loop
            self._changed = loop.create_future()
            self._closing_event = asyncio.Event()
        return loop

    def _notify(self) -> None:
        """Wake wait_connected() and concurrent close() callers."""
        assert self._loop is not None and self._changed is not None
        if not self._changed.done():
            self._changed.set_result(None)
        self._changed = self._loop.create_future()

    def _params(self) -> Params:
        return resolve_params(
            self.settings,
            label=self._label,
            secret=self.secret,
            client_id=self._client_id,
            connect_timeout=self.connect_timeout,
        )

    async def _serve_once(self, backoff: Backoff) -> BrokerError:
        assert self._loop is not None
        try:
            params = self._params()
        except BrokerError as exc:  # the configuration cannot connect: no use retrying
            return BrokerError(exc.detail, obj=exc.obj, field=exc.field, terminal=True)
        conn = connection_type()(params, self._loop, self.max_inflight)
        self._conn = conn
        conn.start()
        first: set[asyncio.Future[Any]] = {conn.connack, conn.ended}
        done, _ = await asyncio.wait(first, timeout=self.connack_timeout, return_when=asyncio.FIRST_COMPLETED)
        if conn.connack.done() and not conn.ended.done():
            backoff.connected()
            self._set_state(State.RUNNING)
            self._notify()
        timed_out = not done
        if timed_out:
            conn.stop()
        error = await conn.ended
        self._notify()
        await conn.wait_thread_end()
        if timed_out:
            return BrokerError(
                f"{params.host}:{params.port} did not accept the MQTT connection within "
                f"{self.connack_timeout:g} s",
                obj=self._label,
                field="url",
            )
        # None: we did not stop it, yet paho ended cleanly
        return error or BrokerError("the connection ended", obj=self._label, field="url")

    def _target(self) -> str:
        params = self._params()
        return f"{params.host}:{params.port}"

    def _test_summary(self) -> str:
        params = self._params()
        extras = [f"MQTT {params.protocol_name}"]
        if params.tls:
            extras.append("TLS")
        if params.username:
            extras.append(f"user {params.username!r}")
        return f"connected to {params.url} ({', '.join(extras)})"
