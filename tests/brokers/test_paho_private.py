"""The lean MQTT path and the paho internals it relies on (brokers/mqtt/paho_private.py).

What fails first when paho changes is the first test here. The lean path's packets are
compared byte for byte with what paho's own ``publish()`` sends, both captured on a loopback
socket by a minimal broker; and with a private name missing, publishing still works through
paho's public API against a real mosquitto, with one warning.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from eventdesk.brokers.mqtt import paho_private
from eventdesk.brokers.mqtt.paho_private import (
    PRIVATE_NAMES,
    LeanClient,
    PahoClient,
    Written,
    lean_path_available,
    missing_private_names,
)
from tests.brokers.conftest import MakePublisher, broker_config
from tests.peers.servers import MqttBroker, Subscriber

Message = tuple[str, bytes, int, bool]  # topic, payload, qos, retain
PROTOCOLS = pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])


# -- 1. the private names -------------------------------------------------------------------


def test_every_private_name_the_lean_path_uses_exists_in_the_installed_paho() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    info = mqtt.MQTTMessageInfo(0)
    for name in PRIVATE_NAMES:
        owner = info if name == "_set_as_published" else client
        assert hasattr(owner, name), f"paho-mqtt {version('paho-mqtt')} has no {name}"
    assert missing_private_names() == []
    assert lean_path_available()


# -- 2. the lean path's bytes are paho's ------------------------------------------------------


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the client closed the connection")
        data += chunk
    return bytes(data)


def _read_packet(sock: socket.socket) -> bytes:
    header = _read_exactly(sock, 1)
    length = shift = 0
    while True:
        byte = _read_exactly(sock, 1)
        header += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            return header + _read_exactly(sock, length)


class FakeBroker:
    """One MQTT connection on loopback: answers CONNECT with CONNACK, then records every byte
    the client sends until it closes the connection, and sends the client what a test asks."""

    def __init__(self, protocol: MQTTProtocolVersion) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connack = b"\x20\x03\x00\x00\x00" if protocol == mqtt.MQTTv5 else b"\x20\x02\x00\x00"
        self.received = bytearray()
        self.conn: socket.socket | None = None
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conn = conn
        _read_packet(conn)  # CONNECT
        conn.sendall(self.connack)
        self.accepted.set()
        while chunk := conn.recv(1 << 20):
            self.received += chunk

    def send(self, data: bytes) -> None:
        assert self.accepted.wait(5) and self.conn is not None
        self.conn.sendall(data)

    def close(self) -> bytes:
        """Wait until the client closed the connection; return what it sent after CONNECT."""
        self.thread.join(10)
        assert not self.thread.is_alive(), "the client did not close the connection"
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        return bytes(self.received)


def connected_client(
    client_type: type[PahoClient], broker: FakeBroker, protocol: MQTTProtocolVersion
) -> PahoClient:
    """A client connected to ``broker`` through paho's public API, with the connection's limits."""
    client = client_type(CallbackAPIVersion.VERSION2, client_id="same-client", protocol=protocol)
    client.max_inflight_messages_set(0)  # as the connection sets it: no limit of paho's
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port, keepalive=60)
    for _ in range(200):
        if client.is_connected():
            return client
        client.loop(0.05)
    raise TimeoutError("no CONNACK from the fake broker")


def flush_and_disconnect(client: PahoClient) -> None:
    for _ in range(10_000):
        if not client.want_write():
            break
        client.loop(0.05)
    assert not client.want_write()
    client.disconnect()


def sent_by_paho(messages: Sequence[Message], protocol: MQTTProtocolVersion) -> bytes:
    broker = FakeBroker(protocol)
    client = connected_client(PahoClient, broker, protocol)
    for topic, payload, qos, retain in messages:
        assert client.publish(topic, payload, qos, retain).rc == MQTTErrorCode.MQTT_ERR_SUCCESS
    flush_and_disconnect(client)
    return broker.close()


def sent_lean(messages: Sequence[Message], protocol: MQTTProtocolVersion) -> bytes:
    broker = FakeBroker(protocol)
    client = connected_client(LeanClient, broker, protocol)
    assert isinstance(client, LeanClient)
    for topic, payload, qos, retain in messages:
        client.publish_lean(topic, payload, qos, retain)
    client.queue_lean(Written())  # one loop turn's messages, one chunk
    flush_and_disconnect(client)
    return broker.close()


def length_bytes(stream: bytes) -> list[int]:
    """How many bytes each packet's remaining length takes, packet by packet."""
    sizes, pos = [], 0
    while pos < len(stream):
        pos += 1
        length = shift = size = 0
        while True:
            byte = stream[pos]
            pos, size = pos + 1, size + 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        sizes.append(size)
        pos += length
    return sizes


CASES: dict[str, tuple[list[Message], int]] = {
    # name: (messages, how many bytes the first one's remaining length takes)
    "empty payload": ([("t/empty", b"", 0, False)], 1),
    "utf-8 topic": ([("capteurs/température/温度/🙂", b'{"v": 1}', 0, True)], 1),
    "length 2 bytes": ([("t/two", b"x" * 200, 0, False)], 2),
    "over 16 KiB": ([("t/16k", bytes(range(256)) * 65, 0, False)], 3),
    "over 2 MiB": ([("t/2m", b"\xff" * (2 * 1024 * 1024 + 10), 0, True)], 4),
    "a run": ([(f"t/run/{i}", b"p" * i, 0, i % 3 == 0) for i in range(300)], 1),
}


@PROTOCOLS
@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("case", list(CASES))
def test_the_lean_path_sends_the_bytes_paho_sends(case: str, qos: int, protocol: MQTTProtocolVersion) -> None:
    messages, first_length_bytes = CASES[case]
    messages = [(topic, payload, qos, retain) for topic, payload, _, retain in messages]
    by_paho = sent_by_paho(messages, protocol)
    lean = sent_lean(messages, protocol)
    assert lean == by_paho
    sizes = length_bytes(by_paho)
    assert len(sizes) == len(messages) + 1  # the PUBLISH packets and DISCONNECT
    assert sizes[0] == first_length_bytes
    if qos:  # packet ids 1, 2, ... on both (the run reaches ids above 255)
        assert by_paho[sizes[0] + 3 + len(messages[0][0].encode()) :][:2] == b"\x00\x01"


_TOPIC = st.text(
    st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.tuples(_TOPIC, st.binary(max_size=400), st.booleans()), min_size=1, max_size=6),
    qos=st.sampled_from([0, 1]),
    protocol=st.sampled_from([mqtt.MQTTv311, mqtt.MQTTv5]),
)
def test_the_lean_path_matches_paho_for_any_topic_and_payload(
    messages: list[tuple[str, bytes, bool]], qos: int, protocol: MQTTProtocolVersion
) -> None:
    stream = [(topic, payload, qos, retain) for topic, payload, retain in messages]
    assert sent_lean(stream, protocol) == sent_by_paho(stream, protocol)


def test_lean_acks_are_parsed_from_the_read_buffer_and_refusals_keep_their_reason() -> None:
    """The lean path's PUBACK handling, through the socket (mosquitto 2.0.11 drops an MQTT 5
    client whose publish its ACL denies instead of answering PUBACK 0x87, so no server shows it)."""
    broker = FakeBroker(mqtt.MQTTv5)
    client = connected_client(LeanClient, broker, mqtt.MQTTv5)
    acks: list[tuple[int, int]] = []
    client.on_publish = lambda _c, _u, mid, reason, _p: acks.append((mid, reason.value))

    def read() -> None:
        sock = client.socket()
        assert sock is not None
        select.select([sock], [], [], 5)
        client.loop_read()

    # Three plain PUBACKs, then the first bytes of a PUBACK with a reason code.
    broker.send(b"\x40\x02\x00\x01" + b"\x40\x02\x01\x00" + b"\x40\x02\xff\xff" + b"\x40\x03\x00")
    read()  # paho's reader takes the first packet ...
    assert acks == [(1, 0)]
    assert client.buffered()
    client.read_acks()  # ... and the run that follows is parsed here, up to the partial packet
    assert acks == [(1, 0), (256, 0), (65535, 0)]
    assert client.buffered()  # the partial packet is left to paho's reader
    client.loop_read()  # paho starts on it and waits for the rest
    assert not client.buffered()
    client.read_acks()  # paho is in the middle of a packet: nothing to do here
    assert len(acks) == 3
    broker.send(b"\x07\x87" + b"\x40\x02\x00\x09")  # the rest: mid 7, 0x87 Not authorized
    read()
    assert acks[-1] == (7, 0x87)
    client.read_acks()
    assert acks[-1] == (9, 0)
    client.disconnect()
    broker.close()


# -- 3. without the lean path --------------------------------------------------------------------

RENAMED = "_renamed_by_a_later_paho"


@pytest.fixture
def paho_without_a_private_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the installed paho had renamed one of the private names the lean path uses."""
    monkeypatch.setattr(paho_private, "PRIVATE_NAMES", (*PRIVATE_NAMES, RENAMED))
    lean_path_available.cache_clear()
    yield
    lean_path_available.cache_clear()  # checked again, with the real names, by the next caller


@pytest.mark.asyncio
@pytest.mark.usefixtures("paho_without_a_private_name")
async def test_without_a_private_name_publishing_falls_back_to_paho_and_warns_once(
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def lean_used(*_args: object) -> int:
        raise AssertionError("the lean path was used")

    monkeypatch.setattr(LeanClient, "publish_lean", lean_used)
    caplog.set_level(logging.WARNING)
    sub = subscriber(f"{unique_topic}/#", qos=1)
    for publisher_number in range(2):  # two publishers, each with its own connection
        pub, _ = make_publisher(broker_config(mqtt_broker.url))
        await pub.start()
        await pub.wait_connected()
        for qos in (0, 1):
            topic = f"{unique_topic}/{publisher_number}/{qos}"
            await pub.publish(topic, b"alone", qos, False)
            await pub.publish_many([(topic, b"%d" % i) for i in range(100)], qos, False)
        await pub.close()
    received = await asyncio.to_thread(sub.wait_for, 2 * 2 * 101, 20)
    for publisher_number in range(2):
        for qos in (0, 1):
            payloads = [m.payload for m in received if m.topic == f"{unique_topic}/{publisher_number}/{qos}"]
            assert payloads == [b"alone", *(b"%d" % i for i in range(100))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert RENAMED in warnings[0] and f"paho-mqtt {version('paho-mqtt')}" in warnings[0]
    assert "slower" in warnings[0]
