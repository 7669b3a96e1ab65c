"""An MQTT connection's publishing: the lean QoS 0/1 path, paho's publish() for QoS 2, and the
in-flight window.

Each TCP connection is a fresh paho client that never reconnects or resends by itself: when it
drops, every unacknowledged future fails with BrokerDisconnectedError and the route resends
from its capture position (the publisher's supervisor makes the next connection).
:class:`Connection` publishes every QoS through paho's public ``publish()``;
:class:`LeanConnection`, the one used unless the installed paho lacks what paho_private.py
needs, sends QoS 0 and 1 the lean way.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eventdesk.brokers.mqtt.batch import Settle, future_of
from eventdesk.brokers.mqtt.errors import refusal_error, unpublishable_error
from eventdesk.brokers.mqtt.link import Link
from eventdesk.brokers.mqtt.paho_private import LeanClient, Written, lean_path_available
from eventdesk.brokers.mqtt.transport import Params
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError


class Connection(Link):
    """A connection that publishes through paho's public ``publish()``, and its in-flight window.

    The in-flight window (QoS > 0 messages sent but not acknowledged) is kept here rather
    than by paho: paho's own limit rescans every queued message on each acknowledgement
    (quadratic under load) and cannot follow an MQTT 5 Receive Maximum. paho is therefore
    configured without limits and only ever holds the window.
    """

    def __init__(self, params: Params, loop: asyncio.AbstractEventLoop, max_inflight: int) -> None:
        # mid -> (future, qos) of every message handed to paho and not yet acknowledged (or,
        # at QoS 0 through paho's publish(), written); ``windowed`` counts those with QoS > 0,
        # which is what the window limits.
        self.inflight: dict[int, tuple[Settle, int]] = {}
        self.windowed = 0
        # Messages whose mid was reused while the earlier message's ack was still on its way.
        self._same_mid: dict[int, collections.deque[tuple[Settle, int]]] = {}
        # Messages waiting for room in the window, in publish order.
        self.waiting: collections.deque[tuple[str, bytes, int, bool, Settle]] = collections.deque()
        self._refill_scheduled = False
        super().__init__(params, loop, max_inflight)

    # -- publishing --------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, future: Settle) -> None:
        if self.waiting or (qos and self.windowed >= self.window):
            self.waiting.append((topic, payload, qos, retain, future))
        else:
            self._send(topic, payload, qos, retain, future)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, future: Settle) -> None:
        """Hand one message to paho's publish(); paho calls on_publish once it is written (QoS 0)
        or acknowledged (QoS 1 and 2)."""
        label = self.params.label
        try:
            if self._sock is None:  # the socket closed under us
                raise BrokerDisconnectedError("not connected to the broker", obj=label)
            try:
                mid = self._publish_public(topic, payload, qos, retain)
            except ValueError as exc:
                raise unpublishable_error(exc, topic, label) from None
        except BrokerError as exc:
            future.set_exception(exc)
            return
        if mid in self.inflight:  # reused mid; the earlier message's ack is still on its way
            self._same_mid.setdefault(mid, collections.deque()).append((future, qos))
        else:
            self.inflight[mid] = (future, qos)
        if qos:
            self.windowed += 1

    def _publish_public(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Hand one message to paho's public publish(); return its mid."""
        info = self.client.publish(topic, payload, qos, retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise BrokerDisconnectedError("not connected to the broker", obj=self.params.label)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(
                f"the MQTT client did not take the message: {mqtt.error_string(rc)}", obj=self.params.label
            )
        return info.mid

    def _pending(self) -> list[Settle]:
        """What every message not yet settled settles (a batch once per message of it)."""
        pending = [f for f, _ in self.inflight.values() if not f.done()]
        for queue in self._same_mid.values():
            pending.extend(f for f, _ in queue if not f.done())
        pending.extend(w[4] for w in self.waiting if not w[4].done())
        return pending

    def _forget(self) -> None:
        """Drop every message (fail_pending() has taken what they settle)."""
        self.inflight.clear()
        self.windowed = 0
        self._same_mid.clear()
        self.waiting.clear()

    def unacked(self) -> list[asyncio.Future[None]]:
        """The futures still waiting for the broker (a batch's once)."""
        return list(dict.fromkeys(future_of(target) for target in self._pending()))

    def fail_pending(self, why: str) -> int:
        """Fail every message not yet settled; returns how many there were."""
        pending = self._pending()
        self._forget()
        for target in pending:
            target.set_exception(BrokerDisconnectedError(why, obj=self.params.label))
        return len(pending)

    def _refill(self) -> None:
        """Move waiting messages into the window freed by acknowledgements."""
        self._refill_scheduled = False
        waiting = self.waiting
        while waiting and self.connected and (not waiting[0][2] or self.windowed < self.window):
            topic, payload, qos, retain, future = waiting.popleft()
            if not future.done():
                self._send(topic, payload, qos, retain, future)

    # -- paho's callback (on the loop thread, inside paho's read and write calls) --------

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        """Acknowledged (QoS > 0) or written (QoS 0): resolve the message's future."""
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return  # the connection dropped meanwhile (or a lean chunk, mid 0, was written)
        same_mid = self._same_mid
        if same_mid:
            queue = same_mid.get(mid)
            if queue:
                self.inflight[mid] = queue.popleft()
                if not queue:
                    del same_mid[mid]
        future, qos = entry
        if qos:
            self.windowed -= 1
        if self.waiting and not self._refill_scheduled:
            self._refill_scheduled = True
            self.loop.call_soon(self._refill)
        if future.done():
            return  # cancelled by its caller
        if reason_code.is_failure:
            future.set_exception(refusal_error(reason_code, self.params.label))
        else:
            future.set_result(None)


class LeanConnection(Connection):
    """A connection that sends QoS 0 and 1 the lean way (paho_private.py): the PUBLISH packets
    of one loop turn go out as one write, and QoS 0 messages settle once it is written."""

    client_type = LeanClient
    client: LeanClient

    def __init__(self, params: Params, loop: asyncio.AbstractEventLoop, max_inflight: int) -> None:
        # The chunk being encoded this loop turn, and the queued chunks with QoS 0 messages
        # that paho has not written yet (oldest first).
        self._chunk = Written()
        self._unwritten: collections.deque[Written] = collections.deque()
        self._flush_scheduled = False
        super().__init__(params, loop, max_inflight)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, future: Settle) -> None:
        """Hand one message to paho: QoS 0 and 1 the lean way, QoS 2 through paho's publish()."""
        label = self.params.label
        try:
            if self._sock is None:  # the socket closed under us
                raise BrokerDisconnectedError("not connected to the broker", obj=label)
            try:
                mid = (
                    self.client.publish_lean(topic, payload, qos, retain)
                    if qos < 2
                    else self._publish_public(topic, payload, qos, retain)
                )
            except ValueError as exc:
                raise unpublishable_error(exc, topic, label) from None
        except BrokerError as exc:
            future.set_exception(exc)
            return
        if qos:
            if mid in self.inflight:  # reused mid; the earlier message's ack is still on its way
                self._same_mid.setdefault(mid, collections.deque()).append((future, qos))
            else:
                self.inflight[mid] = (future, qos)
            self.windowed += 1
        else:
            self._chunk.futures.append(future)  # settled once its chunk is written
        if qos < 2 and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Queue this loop turn's lean publishes as one write."""
        self._flush_scheduled = False
        if self._sock is None:
            return  # the QoS 0 futures of the chunk were failed with the connection
        chunk, self._chunk = self._chunk, Written()
        if chunk.futures:
            chunk.on_written = self._on_chunk_written
            self._unwritten.append(chunk)
        idle = not self._writing  # nothing of an earlier write is waiting for the socket
        self.client.queue_lean(chunk)
        if idle:
            # Write now rather than on the loop's next turn (when the writer callback would),
            # so a lone live change goes out at once. What the socket does not take stays
            # queued and the writer callback sends it.
            self._guard(self.client.loop_write)

    def _on_chunk_written(self) -> None:
        """paho wrote the oldest chunk of lean publishes (its QoS 0 messages are settled)."""
        if self._unwritten:
            self._unwritten.popleft()

    def _pending(self) -> list[Settle]:
        pending = super()._pending()
        pending.extend(f for f in self._chunk.futures if not f.done())
        for chunk in self._unwritten:
            pending.extend(f for f in chunk.futures if not f.done())
        return pending

    def _forget(self) -> None:
        super()._forget()
        self._chunk = Written()
        self._unwritten.clear()


def connection_type() -> type[Connection]:
    """The lean connection, or the public one if the installed paho does not allow the lean path."""
    return LeanConnection if lean_path_available() else Connection
