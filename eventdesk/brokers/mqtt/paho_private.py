"""The one module that touches paho-mqtt's private names: the lean QoS 0/1 path.

paho's public ``publish()`` costs a message object, a lock and a ``send`` per message, and its
reader three ``recv`` calls per packet. :class:`LeanClient` encodes the PUBLISH packets of a
loop turn into one chunk, serves paho's reads from one large read and hands runs of PUBACKs on
without paho's parser (docs/performance.md, "The MQTT publisher"). It relies on the paho
internals listed in :data:`PRIVATE_NAMES`; :func:`lean_path_available` checks they are all
there, and when one is not (paho changed), connections use :class:`PahoClient`, which keeps
to paho's public API, and one warning says so.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Literal, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from eventdesk.brokers.mqtt.batch import Settle

log = logging.getLogger(__name__)

# paho's private names the lean path uses. All are looked up on a paho Client instance (most
# are set in its __init__), except _set_as_published, on MQTTMessageInfo: paho calls it on the
# ``info`` of a QoS 0 packet once written, and :class:`Written` stands in for that info.
PRIVATE_NAMES: tuple[str, ...] = (
    "_sock",  # the socket (buffered(): does TLS hold decrypted bytes?)
    "_sock_recv",  # every read of the socket goes through it (overridden)
    "_in_packet",  # the packet paho is parsing: its "command" and "packet" keys
    "_handle_pubackcomp",  # PUBACK/PUBCOMP handling (overridden)
    "_do_on_publish",  # paho's bookkeeping for a QoS 2 PUBCOMP
    "_out_message_mutex",
    "_out_messages",
    "_userdata",  # passed to on_publish
    "_last_bytes_received",  # keepalive: when the broker was last heard
    "_last_mid",  # the packet id counter, shared with paho's own publish()
    "_packet_queue",  # paho's write queue
    "_set_as_published",  # on MQTTMessageInfo
)
_ON_MESSAGE_INFO = frozenset({"_set_as_published"})
_IN_PACKET_KEYS = ("command", "packet")

_READ_SIZE = 256 * 1024
# Shared by every plain acknowledgement (nothing downstream modifies them).
_ACK_OK = ReasonCode(PacketTypes.PUBACK)
_ACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


def missing_private_names() -> list[str]:
    """The names of :data:`PRIVATE_NAMES` the installed paho lacks (empty: the lean path works)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    info = mqtt.MQTTMessageInfo(0)
    missing = [n for n in PRIVATE_NAMES if not hasattr(info if n in _ON_MESSAGE_INFO else client, n)]
    in_packet = getattr(client, "_in_packet", None)
    if isinstance(in_packet, dict):
        missing += [f"_in_packet[{key!r}]" for key in _IN_PACKET_KEYS if key not in in_packet]
    elif "_in_packet" not in missing:
        missing.append("_in_packet (no longer a dict)")
    return missing


@functools.cache
def lean_path_available() -> bool:
    """True if the installed paho has every private name the lean path uses. Checked once per
    process; if not, one warning names what is missing (publishing then takes paho's public,
    slower path)."""
    missing = missing_private_names()
    if missing:
        log.warning(
            "paho-mqtt %s lacks %s, which EventDesk's fast MQTT publishing relies on: publishing "
            "through paho's public publish() instead, which is slower",
            version("paho-mqtt"),
            ", ".join(missing),
        )
    return not missing


class Written:
    """Stands in for paho's MQTTMessageInfo on a chunk of lean publishes: paho calls
    ``_set_as_published`` once the chunk is written, which settles its QoS 0 messages."""

    __slots__ = ("futures", "on_written")

    def __init__(self) -> None:
        self.futures: list[Settle] = []
        self.on_written: Callable[[], None] | None = None

    def _set_as_published(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)
        if self.on_written is not None:
            self.on_written()


class PahoClient(mqtt.Client):
    """paho's client as a connection drives it, through paho's public API only: the fallback
    when the lean path is not available, and the base of :class:`LeanClient`."""

    connect_error: BaseException | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except BaseException as exc:
            self.connect_error = exc
            raise

    def read_acks(self) -> None:
        """Nothing here: paho parses every packet itself."""

    def buffered(self) -> bool:
        """Bytes read from the socket and not yet handed to paho (held by the TLS layer)."""
        sock = self.socket()
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


class LeanClient(PahoClient):
    """paho's client driven by the asyncio loop (paho's external-loop API), reading in bulk.

    paho reads every packet with three ``recv`` calls (command byte, length byte, body);
    ``_sock_recv`` here serves them from one large read instead, which matters when a
    thousand PUBACKs arrive at once.
    """

    _rbuf: bytes = b""
    _rpos: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = bytearray()  # PUBLISH packets encoded and not yet queued
        self._lean_props = 1 if self.protocol == mqtt.MQTTv5 else 0  # the empty property length

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

    def queue_lean(self, written: Written) -> None:
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
