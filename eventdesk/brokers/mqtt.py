"""MQTT publisher over paho-mqtt 2.x (callback API v2): MQTT 3.1.1 and 5, QoS 0/1/2, TLS.

Each TCP connection is a fresh paho client (:class:`_Connection`) that never reconnects or
resends by itself: when it drops, every unacknowledged future fails with
:class:`BrokerDisconnectedError` and the route resends from its capture position. A
supervisor task on the asyncio loop reconnects with jittered backoff and reports the states;
bad credentials and unusable certificates are terminal. paho's socket is driven by the loop
(only the blocking connect and TLS handshake run on a short-lived thread), QoS 0/1 messages
take a lean path (:meth:`_PahoClient.publish_lean`: one write per loop turn, PUBACKs parsed
from the read buffer) and the in-flight window is kept here, not by paho. Why each of these,
with measurements: docs/performance.md, "The MQTT publisher".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, cast
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from eventdesk.core.contracts import MAX_TOPIC_BYTES, Publisher, State, StateChange
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, PoisonError
from eventdesk.core.settings_schema import Field, Schema, check_pem_file, redact_url
from eventdesk.core.workspace import BrokerConfig

log = logging.getLogger(__name__)

SCHEMA = Schema(
    kind="mqtt",
    title="MQTT",
    description="An MQTT 3.1.1 or 5 broker (mosquitto, EMQX, HiveMQ, ...).",
    fields=(
        Field(
            "url",
            "url",
            label="URL",
            required=True,
            url_schemes=("mqtt", "mqtts"),
            help="mqtt://HOST:PORT (plain, default port 1883) or mqtts://HOST:PORT (TLS, default 8883).",
        ),
        Field("username", "str", default="", help="User name, if the broker wants one."),
        Field("secret", "secret", label="Password", help="Kept in the OS keyring."),
        Field("protocol", "choice", default="3.1.1", choices=("3.1.1", "5"), help="MQTT protocol version."),
        Field(
            "client_id",
            "str",
            label="Client ID",
            default="",
            advanced=True,
            help="Empty: eventdesk-<broker name>-<random>.",
        ),
        Field(
            "keepalive",
            "int",
            default=30,
            minimum=5,
            maximum=3600,
            advanced=True,
            help="Seconds between pings; a dead connection is noticed within 1.5 x this.",
        ),
        Field(
            "ca_file",
            "path",
            label="CA file",
            default="",
            validator=check_pem_file,
            help="PEM file of the CA that signed the broker's certificate.",
        ),
        Field(
            "client_cert",
            "path",
            label="Client certificate",
            default="",
            validator=check_pem_file,
            help="PEM client certificate for mutual TLS.",
        ),
        Field(
            "client_key",
            "path",
            label="Client key",
            default="",
            validator=check_pem_file,
            help="PEM private key of the client certificate.",
        ),
        Field(
            "tls_insecure",
            "bool",
            label="Skip hostname check",
            default=False,
            advanced=True,
            help="Accept a certificate whose name does not match the host. Unsafe; for tests only.",
        ),
    ),
    cross_checks=(
        lambda v: (
            ("client_key", "a client certificate needs its key")
            if bool(v["client_cert"]) != bool(v["client_key"])
            else None
        ),
    ),
)


# CONNACK / DISCONNECT reason codes (MQTT 5 numbering; paho maps 3.1.1 return codes onto it).
_RC_UNSUPPORTED_PROTOCOL = 132
_RC_CLIENT_ID_INVALID = 133
_RC_BAD_CREDENTIALS = 134
_RC_NOT_AUTHORIZED = 135
_RC_BANNED = 138
_RC_BAD_AUTH_METHOD = 140
_RC_SESSION_TAKEN_OVER = 142
_RC_TOPIC_NAME_INVALID = 144
_RC_PACKET_TOO_LARGE = 149
_RC_PAYLOAD_FORMAT_INVALID = 153
_RC_USE_ANOTHER_SERVER = 156
_RC_SERVER_MOVED = 157
# PUBACK reason codes that no resend can change, and the message's part each is about.
_PERMANENT_REFUSALS = {
    _RC_NOT_AUTHORIZED: "topic",
    _RC_TOPIC_NAME_INVALID: "topic",
    _RC_PACKET_TOO_LARGE: "payload",
    _RC_PAYLOAD_FORMAT_INVALID: "payload",
}
# The largest MQTT packet (a 4-byte remaining length of at most 268,435,455, plus its header).
_MAX_PACKET = 268435455 + 5

# OpenSSL X509_V_ERR_HOSTNAME_MISMATCH / X509_V_ERR_IP_ADDRESS_MISMATCH
_VERIFY_NAME_MISMATCH = (62, 64)

_TLS_CLIENT_CERT_REQUIRED = ("CERTIFICATE_REQUIRED", "certificate required")
_TLS_CLIENT_CERT_REJECTED = (
    "UNKNOWN_CA",
    "unknown ca",
    "BAD_CERTIFICATE",
    "bad certificate",
    "CERTIFICATE_UNKNOWN",
    "certificate unknown",
    "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
)
_TLS_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "HTTP_REQUEST")
_TLS_TRANSIENT = ("UNEXPECTED_EOF", "unexpected eof", "EOF occurred", "ECONNRESET")


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails.

    paho opens the TLS socket inside ``reconnect()`` and drops it unclosed when the handshake
    raises (unknown CA, name mismatch, ...), which leaks the descriptor until GC.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _EncryptedKeyError(Exception):
    """The client key file is encrypted (OpenSSL asked for its passphrase)."""


def _refuse_key_passphrase() -> str:
    # Without this, OpenSSL would prompt on the terminal for the passphrase and block.
    raise _EncryptedKeyError


@dataclass(frozen=True)
class _Params:
    """Everything one connection needs, resolved once from the broker's settings."""

    label: str
    url: str  # without credentials
    host: str
    port: int
    tls: bool
    ssl_context: ssl.SSLContext | None
    protocol: MQTTProtocolVersion
    protocol_name: str
    client_id: str
    keepalive: int
    connect_timeout: float
    username: str
    password: str | None
    ca_file: str
    client_cert: str


_READ_SIZE = 256 * 1024
# Shared by every plain acknowledgement (nothing downstream modifies them).
_ACK_OK = ReasonCode(PacketTypes.PUBACK)
_ACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class _Batch:
    """The messages of one :meth:`MqttPublisher.publish_many`: one future for all of them.

    It stands in for each message's future inside a connection (``done``, ``set_result``,
    ``set_exception``): the n-th acknowledgement resolves it, the first failure fails it. A
    thousand messages then cost one future instead of a thousand.
    """

    __slots__ = ("future", "left")

    def __init__(self, future: asyncio.Future[None], count: int) -> None:
        self.future = future
        self.left = count

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, _result: None) -> None:
        self.left -= 1
        if self.left <= 0 and not self.future.done():
            self.future.set_result(None)

    def set_exception(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


_Settle = asyncio.Future[None] | _Batch
"""What a message in a connection settles: its own future, or its batch."""


def _future_of(target: _Settle) -> asyncio.Future[None]:
    return target.future if isinstance(target, _Batch) else target


class _Written:
    """Stands in for paho's MQTTMessageInfo on a chunk of lean publishes: paho calls
    ``_set_as_published`` once the chunk is written, which settles its QoS 0 messages."""

    __slots__ = ("futures", "on_written")

    def __init__(self) -> None:
        self.futures: list[_Settle] = []
        self.on_written: Callable[[], None] | None = None

    def _set_as_published(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)
        if self.on_written is not None:
            self.on_written()


class _PahoClient(mqtt.Client):
    """paho's client driven by the asyncio loop (paho's external-loop API), reading in bulk.

    paho reads every packet with three ``recv`` calls (command byte, length byte, body);
    ``_sock_recv`` here serves them from one large read instead, which matters when a
    thousand PUBACKs arrive at once.
    """

    connect_error: BaseException | None = None
    _rbuf: bytes = b""
    _rpos: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = bytearray()  # PUBLISH packets encoded and not yet queued
        self._lean_props = 1 if self.protocol == mqtt.MQTTv5 else 0  # the empty property length

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except BaseException as exc:
            self.connect_error = exc
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(_READ_SIZE)  # raises BlockingIOError when nothing is there
            if not buf:
                return buf  # end of stream
            pos = 0
        end = pos + bufsize
        self._rbuf, self._rpos = buf, end
        return buf[pos:end]

    def publish_lean(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Encode a QoS 0 or 1 PUBLISH (no properties) into the pending chunk; return its mid
        (0 for QoS 0). The chunk goes out with :meth:`queue_lean`; a QoS 1 message is then
        acknowledged through ``on_publish`` like any other. Raises ValueError for a topic or
        payload no broker would take (paho's own checks)."""
        topic_bytes = topic.encode()
        if not topic_bytes:
            raise ValueError("Invalid topic.")
        if b"+" in topic_bytes or b"#" in topic_bytes:
            raise ValueError("Publish topic cannot contain wildcards.")
        if len(topic_bytes) > 65535:
            raise ValueError("Publish topic is too long.")
        remaining = 2 + len(topic_bytes) + len(payload) + (2 if qos else 0) + self._lean_props
        if remaining > 268435455:
            raise ValueError("Payload too large.")
        buf = self._lean
        buf.append(0x30 | qos << 1 | retain)
        while remaining > 127:
            buf.append((remaining & 0x7F) | 0x80)
            remaining >>= 7
        buf.append(remaining)
        buf += len(topic_bytes).to_bytes(2, "big")
        buf += topic_bytes
        mid = 0
        if qos:
            # paho's _mid_generate() without its lock: every publish happens on the loop thread.
            mid = self._last_mid + 1
            if mid == 65536:
                mid = 1
            self._last_mid = mid
            buf += mid.to_bytes(2, "big")
        if self._lean_props:
            buf.append(0)  # MQTT 5: no properties
        buf += payload
        return mid

    def queue_lean(self, written: _Written) -> None:
        """Hand the pending chunk to paho's write queue; ``written`` is told once it is sent."""
        chunk, self._lean = self._lean, bytearray()
        if chunk:
            # Queued as one QoS 0 PUBLISH with mid 0: paho writes it, then calls on_publish
            # with mid 0 (no message has it) and written._set_as_published().
            self._packet_queue(mqtt.PUBLISH, chunk, 0, 0, written)  # type: ignore[arg-type]

    def read_acks(self) -> None:
        """Hand on the plain PUBACKs at the head of the read buffer without paho's parser."""
        if self._in_packet["command"] != 0:
            return  # paho is in the middle of a packet
        buf, pos = self._rbuf, self._rpos
        end = len(buf) - 3
        on_publish = cast("mqtt.CallbackOnPublish_v2 | None", self.on_publish)  # callback API v2
        if on_publish is None:
            return
        start = pos
        while pos < end and buf[pos] == 0x40 and buf[pos + 1] == 2:
            mid = (buf[pos + 2] << 8) | buf[pos + 3]
            pos += 4
            self._rpos = pos
            on_publish(self, self._userdata, mid, _ACK_OK, _ACK_PROPERTIES)
        if pos != start:
            self._last_bytes_received = mqtt.time_func()

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """Every PUBACK is for a lean QoS 1 message: hand it on without paho's bookkeeping.
        A plain PUBCOMP (QoS 2) shares one ReasonCode and Properties; anything else goes to paho."""
        packet = self._in_packet["packet"]
        if cmd == "PUBACK":
            on_publish = cast("mqtt.CallbackOnPublish_v2 | None", self.on_publish)  # callback API v2
            if on_publish is not None:
                mid = (packet[0] << 8) | packet[1]
                reason = _ACK_OK if len(packet) == 2 else ReasonCode(PacketTypes.PUBACK, identifier=packet[2])
                on_publish(self, self._userdata, mid, reason, _ACK_PROPERTIES)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _ACK_OK, _ACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def buffered(self) -> bool:
        """Bytes read from the socket and not yet handed to paho (or held by the TLS layer)."""
        if self._rpos < len(self._rbuf):
            return True
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


class _Connection:
    """One connection attempt and, if it succeeds, its life until it drops or is stopped.

    The in-flight window (QoS > 0 messages sent but not acknowledged) is kept here rather
    than by paho: paho's own limit rescans every queued message on each acknowledgement
    (quadratic under load) and cannot follow an MQTT 5 Receive Maximum. paho is therefore
    configured without limits and only ever holds the window.

    Only the blocking TCP connect and TLS handshake (paho's ``reconnect()``) run on a
    short-lived thread; once the socket is open, paho is driven by the loop (``add_reader``,
    ``add_writer``, ``loop_misc`` every second) and its callbacks run on the loop thread.
    Methods marked [connect thread] run on that thread and only hand data to the loop.
    """

    def __init__(self, params: _Params, loop: asyncio.AbstractEventLoop, max_inflight: int) -> None:
        self.params = params
        self.loop = loop
        self.connected = False  # CONNACK accepted and not yet disconnected
        self.stopping = False
        self.connected_at = 0.0
        self.window = max_inflight
        self.connack: asyncio.Future[None] = loop.create_future()
        # Why the connection ended (None: we stopped it), set once its socket is closed.
        self.ended: asyncio.Future[BrokerError | None] = loop.create_future()
        # mid -> (future, qos) of every message handed to paho and not yet acknowledged;
        # ``windowed`` counts those with QoS > 0, which is what the window limits.
        self.inflight: dict[int, tuple[_Settle, int]] = {}
        self.windowed = 0
        # Messages whose mid was reused while the earlier message's ack was still on its way.
        self._same_mid: dict[int, collections.deque[tuple[_Settle, int]]] = {}
        # Messages waiting for room in the window, in publish order.
        self.waiting: collections.deque[tuple[str, bytes, int, bool, _Settle]] = collections.deque()
        self._refill_scheduled = False
        # Lean publishes (QoS 0/1): the chunk being encoded this loop turn, and the queued
        # chunks with QoS 0 messages that paho has not written yet (oldest first).
        self._chunk = _Written()
        self._unwritten: collections.deque[_Written] = collections.deque()
        self._flush_scheduled = False
        self._refused: ReasonCode | None = None
        self._receive_maximum: int | None = None
        self.max_packet = _MAX_PACKET  # lowered to an MQTT 5 broker's Maximum Packet Size
        self._disconnect_reason: tuple[bool, ReasonCode] | None = None
        self._handshake_errors: list[str] = []
        self._sock: Any = None  # the socket registered with the loop
        self._writing = False
        self._misc_timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop_error: BaseException | None = None

        client = _PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=params.client_id,
            protocol=params.protocol,
            reconnect_on_failure=False,
        )
        client.connect_timeout = params.connect_timeout
        client.max_inflight_messages_set(0)  # unlimited: the window above is the limit
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
        self._thread = threading.Thread(
            target=self._connect_main, name=f"eventdesk-mqtt-connect-{p.client_id}", daemon=True
        )
        self._thread.start()

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
        client._registered_write = False  # paho private: CONNECT was written by the connect thread
        if client.want_write():
            client._call_socket_register_write()
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
        thread = self._thread
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

    # -- publishing --------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, future: _Settle) -> None:
        if self.waiting or (qos and self.windowed >= self.window):
            self.waiting.append((topic, payload, qos, retain, future))
        else:
            self._send(topic, payload, qos, retain, future)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, future: _Settle) -> None:
        """Hand one message to paho: QoS 0 and 1 the lean way, QoS 2 through paho's publish()."""
        label = self.params.label
        try:
            if self._sock is None:  # the socket closed under us
                raise BrokerDisconnectedError("not connected to the broker", obj=label)
            try:
                mid = (
                    self.client.publish_lean(topic, payload, qos, retain)
                    if qos < 2
                    else self._publish_qos2(topic, payload, retain)
                )
            except ValueError as exc:
                raise PoisonError(
                    f"cannot publish to topic {topic[:200]!r}: {exc}",
                    obj=label,
                    field="payload" if "Payload" in str(exc) else "topic",
                ) from None
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

    def _publish_qos2(self, topic: str, payload: bytes, retain: bool) -> int:
        info = self.client.publish(topic, payload, 2, retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise BrokerDisconnectedError("not connected to the broker", obj=self.params.label)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(
                f"the MQTT client did not take the message: {mqtt.error_string(rc)}", obj=self.params.label
            )
        return info.mid

    def _flush(self) -> None:
        """Queue this loop turn's lean publishes as one write."""
        self._flush_scheduled = False
        if self._sock is None:
            return  # the QoS 0 futures of the chunk were failed with the connection
        chunk, self._chunk = self._chunk, _Written()
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

    def _pending(self) -> list[_Settle]:
        """What every message not yet settled settles (a batch once per message of it)."""
        pending = [f for f, _ in self.inflight.values() if not f.done()]
        pending.extend(f for f in self._chunk.futures if not f.done())
        for chunk in self._unwritten:
            pending.extend(f for f in chunk.futures if not f.done())
        for queue in self._same_mid.values():
            pending.extend(f for f, _ in queue if not f.done())
        pending.extend(w[4] for w in self.waiting if not w[4].done())
        return pending

    def unacked(self) -> list[asyncio.Future[None]]:
        """The futures still waiting for the broker (a batch's once)."""
        return list(dict.fromkeys(_future_of(target) for target in self._pending()))

    def fail_pending(self, why: str) -> int:
        """Fail every message not yet settled; returns how many there were."""
        pending = self._pending()
        self.inflight.clear()
        self.windowed = 0
        self._chunk = _Written()
        self._unwritten.clear()
        self._same_mid.clear()
        self.waiting.clear()
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

    def _outcome(self) -> BrokerError | None:
        p = self.params
        client = self.client
        if self.stopping:
            return None
        if client.connect_error is not None:
            return _connect_error(client.connect_error, p)
        if self._loop_error is not None:
            return BrokerError(f"the MQTT client failed: {self._loop_error!r}", obj=p.label, field="url")
        if self._refused is not None:
            return _refused_error(self._refused, p)
        if self.connack.done():
            from_server, reason = self._disconnect_reason or (False, None)
            if from_server:
                detail = f"the broker closed the connection ({reason})"
                if reason is not None and reason.value == _RC_SESSION_TAKEN_OVER:
                    detail += "; another client connected with the same client ID"
                    return BrokerError(detail, obj=p.label, field="client_id")
            else:
                detail = "the connection to the broker was lost"
                if reason is not None and reason.is_failure:
                    detail += f" ({reason})"
            return BrokerError(detail, obj=p.label, field="url")
        # Closed before CONNACK: TLS 1.3 reports a refused client certificate only here.
        for line in self._handshake_errors:
            tls_error = _tls_alert_error(line, p)
            if tls_error is not None:
                return tls_error
        detail = f"{p.host}:{p.port} closed the connection before accepting the MQTT connection"
        if not p.tls:
            detail += " (if it is a TLS port, use mqtts://)"
        if self._handshake_errors:
            detail += f": {self._handshake_errors[-1]}"
        return BrokerError(detail, obj=p.label, field="url")

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

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        """Acknowledged (QoS > 0) or written (QoS 0): resolve the message's future."""
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return  # the connection dropped meanwhile
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
            why = f"the broker refused the message: {reason_code}"
            part = _PERMANENT_REFUSALS.get(reason_code.value)
            future.set_exception(
                PoisonError(why, obj=self.params.label, field=part)
                if part is not None
                else BrokerError(why, obj=self.params.label)
            )
        else:
            future.set_result(None)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        """Keep errors seen while connecting (paho's messages carry no password)."""
        if level in (LogLevel.MQTT_LOG_ERR, LogLevel.MQTT_LOG_WARNING) and len(self._handshake_errors) < 8:
            self._handshake_errors.append(buf)


def _connect_error(exc: BaseException, p: _Params) -> BrokerError:
    """Say why a TCP or TLS connection to the broker could not be opened."""
    where = f"{p.host}:{p.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _VERIFY_NAME_MISMATCH:
            return BrokerError(
                f"the broker's certificate is not valid for {p.host!r} ({exc.verify_message}); "
                "use the host name the certificate was issued for (or, for tests only, tls_insecure)",
                obj=p.label,
                field="url",
                terminal=True,
            )
        if p.ca_file:
            detail = f"the broker's certificate could not be verified with CA file {p.ca_file!r}"
        else:
            detail = (
                "the broker's certificate could not be verified with the system's CA certificates "
                "(set the CA file to the CA that signed it)"
            )
        return BrokerError(f"{detail}: {exc.verify_message}", obj=p.label, field="ca_file", terminal=True)
    if isinstance(exc, ssl.SSLError):
        text = f"{exc.reason} {exc}"
        tls_error = _tls_alert_error(text, p)
        if tls_error is not None:
            return tls_error
        terminal = not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) and not any(
            s in text for s in _TLS_TRANSIENT
        )
        return BrokerError(
            f"TLS handshake with {where} failed: {exc.reason or exc}",
            obj=p.label,
            field="url",
            terminal=terminal,
        )
    if isinstance(exc, ConnectionRefusedError):
        return BrokerError(
            f"{where} refused the connection (is the broker running?)", obj=p.label, field="url"
        )
    if isinstance(exc, TimeoutError):
        return BrokerError(f"no answer from {where}", obj=p.label, field="url")
    if isinstance(exc, OSError):
        if isinstance(exc, socket.gaierror):
            return BrokerError(f"cannot resolve host {p.host!r}: {exc.strerror}", obj=p.label, field="url")
        detail = f"cannot connect to {where}: {exc.strerror or exc}"
        if p.tls and isinstance(exc, ConnectionResetError):
            detail += " (if it is a plain port, use mqtt://)"
        return BrokerError(detail, obj=p.label, field="url")
    return BrokerError(f"cannot connect to {where}: {exc!r}", obj=p.label, field="url", terminal=True)


def _tls_alert_error(text: str, p: _Params) -> BrokerError | None:
    """Recognise a TLS failure in an SSL error text; None if ``text`` is none of those."""
    if any(s in text for s in _TLS_CLIENT_CERT_REQUIRED):
        if p.client_cert:
            detail = "the broker did not accept the client certificate (it requires one it trusts)"
        else:
            detail = "the broker requires a client certificate (set the client certificate and key)"
        return BrokerError(detail, obj=p.label, field="client_cert", terminal=True)
    if any(s in text for s in _TLS_CLIENT_CERT_REJECTED):
        return BrokerError(
            f"the broker rejected the client certificate ({text.strip()})",
            obj=p.label,
            field="client_cert",
            terminal=True,
        )
    if any(s in text for s in _TLS_NOT_TLS):
        return BrokerError(
            f"{p.host}:{p.port} does not speak TLS (use mqtt:// for a plain port)",
            obj=p.label,
            field="url",
            terminal=True,
        )
    return None


def _refused_error(reason: ReasonCode, p: _Params) -> BrokerError:
    """Say why the broker refused the MQTT connection (CONNACK)."""
    code = reason.value
    if code in (_RC_BAD_CREDENTIALS, _RC_NOT_AUTHORIZED):
        if not p.username:
            return BrokerError(
                f"the broker refused the connection ({reason}); it may want a user name and password",
                obj=p.label,
                field="username",
                terminal=True,
            )
        return BrokerError(
            f"the broker refused user {p.username!r} with this password ({reason})",
            obj=p.label,
            field="secret",
            terminal=True,
        )
    if code == _RC_UNSUPPORTED_PROTOCOL:
        return BrokerError(
            f"the broker does not support MQTT {p.protocol_name} ({reason})",
            obj=p.label,
            field="protocol",
            terminal=True,
        )
    if code == _RC_CLIENT_ID_INVALID:
        return BrokerError(
            f"the broker rejected client ID {p.client_id!r} ({reason})",
            obj=p.label,
            field="client_id",
            terminal=True,
        )
    if code in (_RC_BANNED, _RC_BAD_AUTH_METHOD):
        return BrokerError(
            f"the broker refused the connection ({reason})", obj=p.label, field="username", terminal=True
        )
    if code in (_RC_USE_ANOTHER_SERVER, _RC_SERVER_MOVED):
        return BrokerError(
            f"the broker refused the connection ({reason})", obj=p.label, field="url", terminal=True
        )
    return BrokerError(f"the broker refused the connection ({reason})", obj=p.label, field="url")


def _ssl_context(settings: dict[str, Any], label: str) -> ssl.SSLContext:
    """Build the TLS context from the settings; say which file is wrong if one is."""
    ca_file = str(settings.get("ca_file") or "")
    cert = str(settings.get("client_cert") or "")
    key = str(settings.get("client_key") or "")
    if ca_file:
        path = Path(ca_file).expanduser()
        if not path.is_file():
            raise BrokerError(
                f"CA file {ca_file!r} does not exist", obj=label, field="ca_file", terminal=True
            )
        try:
            context = ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            raise BrokerError(
                f"CA file {ca_file!r} holds no usable PEM certificate ({exc.reason or exc})",
                obj=label,
                field="ca_file",
                terminal=True,
            ) from None
        except OSError as exc:
            raise BrokerError(
                f"cannot read CA file {ca_file!r}: {exc.strerror or exc}",
                obj=label,
                field="ca_file",
                terminal=True,
            ) from None
    else:
        context = ssl.create_default_context()
    if cert or key:
        for name, value in (("client_cert", cert), ("client_key", key)):
            if not value:
                raise BrokerError("a client certificate needs its key", obj=label, field=name, terminal=True)
            if not Path(value).expanduser().is_file():
                raise BrokerError(f"file {value!r} does not exist", obj=label, field=name, terminal=True)
        try:
            context.load_cert_chain(
                str(Path(cert).expanduser()), str(Path(key).expanduser()), password=_refuse_key_passphrase
            )
        except _EncryptedKeyError:
            raise BrokerError(
                f"client key {key!r} is encrypted; EventDesk needs an unencrypted key file",
                obj=label,
                field="client_key",
                terminal=True,
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise BrokerError(
                    f"client key {key!r} does not belong to client certificate {cert!r}",
                    obj=label,
                    field="client_key",
                    terminal=True,
                ) from None
            raise BrokerError(
                f"cannot load client certificate {cert!r} with key {key!r}: {exc.reason or exc}",
                obj=label,
                field="client_cert",
                terminal=True,
            ) from None
        except OSError as exc:
            raise BrokerError(
                f"cannot read client certificate {cert!r}: {exc.strerror or exc}",
                obj=label,
                field="client_cert",
                terminal=True,
            ) from None
    # Hostname verification stays on unless explicitly switched off; the chain is always verified.
    context.check_hostname = not bool(settings.get("tls_insecure"))
    context.sslsocket_class = _ClosingSSLSocket
    return context


class MqttPublisher(Publisher):
    """Publishes to one MQTT broker; see the module docstring for the threading model."""

    kind: ClassVar[str] = "mqtt"
    schema: ClassVar[Schema] = SCHEMA

    # Tunables (instances may override them, e.g. tests shorten the backoff).
    max_inflight: int = 1000  # QoS > 0 messages sent and not yet acknowledged
    connect_timeout: float = 10.0  # TCP connect and TLS handshake, each
    connack_timeout: float = 30.0  # from starting an attempt to CONNACK
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    stable_after: float = 5.0  # a connection that lived this long resets the backoff
    close_grace: float = 1.0  # added to close()'s timeout for the DISCONNECT itself
    test_timeout: ClassVar[float] = 15.0

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        self._label = config.label
        self._client_id = str(config.settings.get("client_id") or "") or (
            f"eventdesk-{config.name}-{secrets.token_hex(4)}"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._changed: asyncio.Future[None] | None = None
        self._closing_event: asyncio.Event | None = None
        self._closing = False
        self._closed = False
        self._terminal: BrokerError | None = None
        self._retry = True
        self._state = State.STOPPED

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
        max_packet = conn.max_packet if conn is not None else _MAX_PACKET
        # A topic of up to MAX_TOPIC_BYTES // 4 characters is at most MAX_TOPIC_BYTES bytes;
        # the rest of a PUBLISH's header (fixed header, topic length, mid, properties) is < 16 bytes.
        return MAX_TOPIC_BYTES // 4, max_packet - MAX_TOPIC_BYTES - 16

    def check_message(self, topic: str, payload: bytes, qos: int) -> PoisonError | None:
        problem = self.validate_topic(topic)
        if problem is not None:
            return PoisonError(problem, obj=self._label, field="topic")
        conn = self._conn
        max_packet = conn.max_packet if conn is not None else _MAX_PACKET
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
        self._task = loop.create_task(self._supervise(), name=f"mqtt-supervisor {self.config.name}")

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected and not self._closing

    async def wait_connected(self) -> None:
        self._ensure_loop()
        while True:
            if self._terminal is not None:
                t = self._terminal
                raise BrokerError(t.detail, obj=t.obj, field=t.field, terminal=t.terminal)
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
            # A lone message settles its own future; more share one through a _Batch.
            target: _Settle = future if len(messages) == 1 else _Batch(future, len(messages))
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

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        publisher = cls(config=config, secret=secret, on_state=lambda change: None)
        publisher._retry = False
        params = publisher._params()  # configuration errors surface here, before any network
        await publisher.start()
        try:
            async with asyncio.timeout(cls.test_timeout):
                await publisher.wait_connected()
        except TimeoutError:
            raise BrokerError(
                f"no answer from {params.host}:{params.port} within {cls.test_timeout:g} s",
                obj=config.label,
                field="url",
            ) from None
        finally:
            await publisher.close(1.0)
        extras = [f"MQTT {params.protocol_name}"]
        if params.tls:
            extras.append("TLS")
        if params.username:
            extras.append(f"user {params.username!r}")
        return f"connected to {params.url} ({', '.join(extras)})"

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

    def _set_state(self, state: State, detail: str | None = None, retry_in: float | None = None) -> None:
        self._state = state
        # ``detail`` is a BrokerError's text, which already names the broker and the field.
        # A one-shot test_connection() raises its error instead: no need to log it loudly.
        if state is State.RETRYING:
            log.warning("retrying in %.1f s: %s", retry_in or 0.0, detail)
        elif state is State.ERROR:
            log.log(logging.ERROR if self._retry else logging.DEBUG, "%s", detail)
        else:
            log.log(logging.INFO if self._retry else logging.DEBUG, "%s: %s", self._label, state.value)
        try:
            self.on_state(StateChange(state, detail, retry_in))
        except Exception:
            log.exception("%s: the state callback failed", self._label)

    def _params(self) -> _Params:
        settings = self.config.settings
        label = self._label
        url = str(settings["url"])
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BrokerError(
                f"expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {redact_url(url)!r}",
                obj=label,
                field="url",
                terminal=True,
            )
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise BrokerError(
                f"invalid port in {redact_url(url)!r}", obj=label, field="url", terminal=True
            ) from None
        tls_fields = [f for f in ("ca_file", "client_cert", "client_key") if settings.get(f)]
        if tls_fields and not tls:
            raise BrokerError(
                f"{', '.join(tls_fields)} set, but the URL is plain mqtt://; use mqtts:// for TLS",
                obj=label,
                field="url",
                terminal=True,
            )
        protocol_name = str(settings.get("protocol") or "3.1.1")
        username = str(settings.get("username") or "")
        if self.secret and not username:
            log.info("%s: a password is stored but no user name is set; connecting without either", label)
        return _Params(
            label=label,
            url=f"{parts.scheme}://{parts.hostname}:{port}",
            host=parts.hostname,
            port=port,
            tls=tls,
            ssl_context=_ssl_context(settings, label) if tls else None,
            protocol=mqtt.MQTTv5 if protocol_name == "5" else mqtt.MQTTv311,
            protocol_name=protocol_name,
            client_id=self._client_id,
            keepalive=int(settings.get("keepalive") or 30),
            connect_timeout=self.connect_timeout,
            username=username,
            password=self.secret if username else None,
            ca_file=str(settings.get("ca_file") or ""),
            client_cert=str(settings.get("client_cert") or ""),
        )

    def _backoff_delay(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 30))
        return min(self.backoff_max, base * random.uniform(0.8, 1.2))

    def _fail(self, error: BrokerError) -> None:
        self._terminal = error
        self._set_state(State.ERROR, str(error))
        self._notify()

    async def _supervise(self) -> None:
        """Connect, and reconnect with backoff, until closed or a terminal error."""
        assert self._loop is not None and self._closing_event is not None
        loop = self._loop
        try:
            try:
                params = self._params()
            except BrokerError as exc:
                self._fail(exc)
                return
            attempt = 0
            while not self._closing:
                conn = _Connection(params, loop, self.max_inflight)
                self._conn = conn
                conn.start()
                first: set[asyncio.Future[Any]] = {conn.connack, conn.ended}
                done, _ = await asyncio.wait(
                    first,
                    timeout=self.connack_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if conn.connack.done() and not conn.ended.done():
                    self._set_state(State.RUNNING)
                    self._notify()
                timed_out = not done
                if timed_out:
                    conn.stop()
                error = await conn.ended
                self._notify()
                await conn.wait_thread_end()
                if self._closing:
                    return
                if timed_out:
                    error = BrokerError(
                        f"{params.host}:{params.port} did not accept the MQTT connection within "
                        f"{self.connack_timeout:g} s",
                        obj=self._label,
                        field="url",
                    )
                if error is None:  # we did not stop it, yet paho ended cleanly
                    error = BrokerError("the connection ended", obj=self._label, field="url")
                if conn.connack.done() and loop.time() - conn.connected_at >= self.stable_after:
                    attempt = 0
                if error.terminal or not self._retry:
                    self._fail(error)
                    return
                delay = self._backoff_delay(attempt)
                attempt += 1
                self._set_state(State.RETRYING, str(error), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing_event.wait(), delay)
        except Exception as exc:
            log.exception("%s: the MQTT supervisor failed", self._label)
            self._fail(BrokerError(f"internal error: {exc!r}", obj=self._label))
