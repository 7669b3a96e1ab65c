"""The most any publisher could reach through a given MQTT broker and subscriber: QoS 1 PUBLISH
packets built before the clock starts, written a hundred at a time on one socket with up to
1,000 awaiting their PUBACK, with no source, capture or encoding in the way.

On a 2-core machine the broker and the subscriber take most of the CPU a QoS 1 message costs,
so a publisher's figure against them is read beside this one (tests/bench/postgres.py).

Run alone: .venv/bin/python -m tests.bench.mqtt_ceiling [--count N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

from tests.bench.pipeline import TopicCounter
from tests.peers.servers import MqttBroker, free_port

WINDOW = 1000  # PUBLISH packets awaiting their PUBACK
WRITE = 100  # packets per write


def _length(n: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish_packets(prefix: str, count: int, payload: bytes) -> list[bytes]:
    """QoS 1 PUBLISH packets on ``<prefix>/<i>``, packet ids cycling through 1..65535."""
    packets = []
    for i in range(count):
        body = _string(f"{prefix}/{i}") + ((i % 65535) + 1).to_bytes(2, "big") + payload
        packets.append(b"\x32" + _length(len(body)) + body)
    return packets


def ceiling_rate(port: int, count: int, payload: bytes, prefix: str = "ceiling") -> float:
    """Messages/s from the first write to the last of ``count`` topics counted by a
    ``mosquitto_sub`` at QoS 1 (the subscriber tests/bench/postgres.py counts with)."""
    packets = publish_packets(prefix, count, payload)
    counter = TopicCounter(port, f"{prefix}/#", 1)
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        connect = _string("MQTT") + bytes([4, 2]) + (60).to_bytes(2, "big") + _string("eventdesk-ceiling")
        sock.sendall(b"\x10" + _length(len(connect)) + connect)
        connack = sock.recv(4)
        if connack != b"\x20\x02\x00\x00":
            raise RuntimeError(f"the broker refused the ceiling's connection: {connack!r}")
        start = time.perf_counter()
        sent = acked_bytes = 0
        while acked_bytes < 4 * count:  # a PUBACK is 4 bytes
            while sent < count and sent - acked_bytes // 4 < WINDOW:
                chunk = packets[sent : sent + WRITE]
                sock.sendall(b"".join(chunk))
                sent += len(chunk)
            data = sock.recv(1 << 16)
            if not data:
                raise RuntimeError("the broker closed the ceiling's connection")
            acked_bytes += len(data)
        counter.wait_distinct(count, 600)
        return count / (time.perf_counter() - start)
    finally:
        sock.close()
        counter.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=400, help="payload bytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-ceiling-") as tmp:
        broker = MqttBroker(port=free_port(), workdir=Path(tmp))
        broker.start()
        try:
            rate = ceiling_rate(broker.port, args.count, b"x" * args.size)
            print(
                f"mosquitto QoS 1 -> mosquitto_sub QoS 1, {args.count} x {args.size} bytes: {rate:.0f} msg/s"
            )
        finally:
            broker.stop()
