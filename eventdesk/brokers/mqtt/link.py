"""An MQTT connection's life on the asyncio loop, apart from publishing: the paho client, the
short-lived connect thread, the loop-driven socket I/O and keepalive, CONNACK, and why the
connection ended. :class:`~eventdesk.brokers.mqtt.connection.Connection` adds the publishing
and the in-flight window on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eventdesk.brokers.mqtt.errors import (
    closed_before_connack_error,
    connect_error,
    dropped_error,
    refused_error,
)
from eventdesk.brokers.mqtt.paho_private import PahoClient
from eventdesk.brokers.mqtt.transport import Params
from eventdesk.core.errors import BrokerError

log = logging.getLogger(__name__)

# The largest MQTT packet (a 4-byte remaining length of at most 268,435,455, plus its header).
MAX_PACKET = 268435455 + 5


class Link:
    """One connection attempt and, if it succeeds, its life until it drops or is stopped.

    Only the blocking TCP connect and TLS handshake (paho's ``reconnect()``) run on a
    short-lived thread; once the socket is open, paho is driven by the loop (``add_reader``,
    ``add_writer``, ``loop_misc`` every second) and its callbacks run on the loop thread.
    Methods marked [connect thread] run on that thread and only hand data to the loop.
    A subclass handles the messages: ``_on_publish`` (paho's callback) and ``fail_pending``.
    """

    client_type: type[PahoClient] = PahoClient

    def __init__(self, params: Params, loop: asyncio.AbstractEventLoop, max_inflight: int) -> None:
        self.params = params
        self.loop = loop
        self.connected = False  # CONNACK accepted and not yet disconnected
        self.stopping = False
        self.connected_at = 0.0
        self.window = max_inflight  # QoS > 0 messages in flight at most (CONNACK may lower it)
        self.connack: asyncio.Future[None] = loop.create_future()
        # Why the connection ended (None: we stopped it), set once its socket is closed.
        self.ended: asyncio.Future[BrokerError | None] = loop.create_future()
        self._refused: ReasonCode | None = None
        self._receive_maximum: int | None = None
        self.max_packet = MAX_PACKET  # lowered to an MQTT 5 broker's Maximum Packet Size
        self._disconnect_reason: tuple[bool, ReasonCode] | None = None
        self._handshake_errors: list[str] = []
        self._sock: Any = None  # the socket registered with the loop
        self._writing = False
        self._misc_timer: asyncio.TimerHandle | None = None
        self.thread: threading.Thread | None = None  # the connect thread
        self._loop_error: BaseException | None = None

        client = self.client_type(
            CallbackAPIVersion.VERSION2,
            client_id=params.client_id,
            protocol=params.protocol,
            reconnect_on_failure=False,
        )
        client.connect_timeout = params.connect_timeout
        client.max_inflight_messages_set(0)  # unlimited: ``window`` is the limit
        client.max_queued_messages_set(0)
        if params.username:
            client.username_pw_set(params.username, params.password)
        if params.ssl_context is not None:
            client.tls_set_context(params.ssl_context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log  # removed once connected: it costs a format per packet
        self.client = client

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        p = self.params
        if p.protocol == mqtt.MQTTv5:
            self.client.connect_async(p.host, p.port, keepalive=p.keepalive, clean_start=True)
        else:  # MQTT 3.1.1: clean_session is the client's default
            self.client.connect_async(p.host, p.port, keepalive=p.keepalive)
        self.thread = threading.Thread(
            target=self._connect_main, name=f"eventdesk-mqtt-connect-{p.client_id}", daemon=True
        )
        self.thread.start()

    def _connect_main(self) -> None:
        """[connect thread] Open the TCP/TLS connection and send CONNECT (paho blocks here)."""
        try:
            self.client.reconnect()
        except BaseException:  # recorded in client.connect_error; reported by _outcome()
            self._to_loop(self._socket_closed)
            return
        self._to_loop(self._attach)

    def _to_loop(self, callback: Callable[[], None]) -> None:
        """[connect thread] Run ``callback`` on the loop; quietly drop it if the loop is gone."""
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(callback)

    def _attach(self) -> None:
        """The socket is open: from now on the loop drives paho."""
        client = self.client
        sock = client.socket()
        if sock is None:  # pragma: no cover - paho closed it already
            self._socket_closed()
            return
        self._sock = sock
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self.loop.add_reader(sock, self._on_readable)
        # The connect thread wrote CONNECT before these callbacks were set; if paho still holds
        # part of it, watch for writability now (paho's later loop_write() unregisters it).
        if client.want_write():
            self._on_register_write(client, None, sock)
        self._misc_timer = self.loop.call_later(1.0, self._misc)
        if self.stopping:
            client.disconnect()
        elif self.client.buffered():  # pragma: no cover - TLS may hold the CONNACK already
            self._on_readable()

    def stop(self) -> None:
        """Send DISCONNECT if connected and close; ``ended`` resolves once the socket is closed."""
        if self.stopping:
            return
        self.stopping = True
        self.connected = False
        if self._sock is not None and not self.ended.done():
            self.client.disconnect()
        # Still connecting: _attach() disconnects as soon as the connect thread is done.

    async def wait_thread_end(self, timeout: float = 2.0) -> None:
        thread = self.thread
        deadline = self.loop.time() + timeout
        while thread is not None and thread.is_alive():
            if self.loop.time() > deadline:
                log.warning(
                    "%s: the MQTT connect thread did not end within %.1f s", self.params.label, timeout
                )
                return
            await asyncio.sleep(0.002)
        # Break the client <-> callbacks cycle so nothing waits for the next GC.
        client = self.client
        client.on_connect = client.on_disconnect = client.on_publish = client.on_log = None
        client.on_socket_close = client.on_socket_register_write = client.on_socket_unregister_write = None

    # -- loop-driven I/O ---------------------------------------------------------------

    def _on_readable(self) -> None:
        self._guard(self._read)

    def _read(self) -> None:
        client = self.client
        rc = client.loop_read()  # reads the socket into the client's buffer: one packet via paho
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and client.buffered():
            client.read_acks()  # a run of PUBACKs, parsed here
            if self._sock is None or not client.buffered():
                break
            rc = client.loop_read()

    def _on_writable(self) -> None:
        self._guard(self.client.loop_write)

    def _misc(self) -> None:
        self._misc_timer = None
        if self._sock is None:
            return
        self._guard(self.client.loop_misc)  # keepalive: sends PINGREQ, or closes a silent connection
        if self._sock is not None:
            self._misc_timer = self.loop.call_later(1.0, self._misc)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not self._writing and self._sock is not None:
            self._writing = True
            self.loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._writing:
            self._writing = False
            self.loop.remove_writer(sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """paho is about to close the socket: stop watching it; the end is reported next."""
        if self.loop.is_closed():  # the client is being collected after its loop: nobody listens
            self._sock = None
            return
        if self._writing:
            self._writing = False
            self.loop.remove_writer(sock)
        self.loop.remove_reader(sock)
        self._sock = None
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None
        # paho calls on_disconnect around the close; report the end after both.
        self.loop.call_soon(self._socket_closed)

    def _socket_closed(self) -> None:
        self.connected = False
        n = self.fail_pending("the connection to the broker ended before the broker acknowledged the message")
        if n and not self.stopping:
            log.info("%s: %d message(s) in flight when the connection dropped", self.params.label, n)
        if not self.ended.done():
            self.ended.set_result(self._outcome())

    def _outcome(self) -> BrokerError | None:
        p = self.params
        client = self.client
        if self.stopping:
            return None
        if client.connect_error is not None:
            return connect_error(client.connect_error, p)
        if self._loop_error is not None:
            return BrokerError(f"the MQTT client failed: {self._loop_error!r}", obj=p.label, field="url")
        if self._refused is not None:
            return refused_error(self._refused, p)
        if self.connack.done():
            from_server, reason = self._disconnect_reason or (False, None)
            return dropped_error(from_server, reason, p)
        return closed_before_connack_error(self._handshake_errors, p)

    # -- paho callbacks (on the loop thread, inside paho's read/write calls) -------------

    def _guard(self, step: Callable[[], object]) -> None:
        """Run one paho step; a failure inside paho ends the connection instead of the loop."""
        try:
            step()
        except Exception as exc:
            log.debug("%s: the MQTT client failed", self.params.label, exc_info=True)
            if self._loop_error is None:
                self._loop_error = exc
            sock, self._sock = self._sock, None
            if sock is not None:
                if self._writing:
                    self._writing = False
                    self.loop.remove_writer(sock)
                self.loop.remove_reader(sock)
                with contextlib.suppress(Exception):
                    sock.close()
            self._socket_closed()

    def _connected(self) -> None:
        if self.stopping or self.ended.done():
            return
        if self._receive_maximum is not None and self._receive_maximum < self.window:
            log.info(
                "%s: the broker takes at most %d messages in flight", self.params.label, self._receive_maximum
            )
            self.window = self._receive_maximum
        self.connected = True
        self.connected_at = self.loop.time()
        if not self.connack.done():
            self.connack.set_result(None)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        client.on_log = None
        if reason_code.is_failure:
            self._refused = reason_code
            return
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            self._receive_maximum = receive_maximum
        max_packet = getattr(properties, "MaximumPacketSize", None)
        if isinstance(max_packet, int) and max_packet > 0:
            self.max_packet = max_packet
        if self.stopping:
            client.disconnect()
            return
        self._connected()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Only noted: the socket's closing reports the end (this may run on the connect thread)."""
        self._disconnect_reason = (flags.is_disconnect_packet_from_server, reason_code)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        """Keep errors seen while connecting (paho's messages carry no password)."""
        if level in (LogLevel.MQTT_LOG_ERR, LogLevel.MQTT_LOG_WARNING) and len(self._handshake_errors) < 8:
            self._handshake_errors.append(buf)

    # -- what the subclass that publishes provides ---------------------------------------

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        """A message was acknowledged (QoS > 0) or written (QoS 0)."""
        raise NotImplementedError

    def fail_pending(self, why: str) -> int:
        """Fail every message not yet settled; returns how many there were."""
        raise NotImplementedError
