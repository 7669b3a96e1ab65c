"""A webhook -> mosquitto pipeline for the poison-event tests: events posted in one batch,
routes on an MQTT 3.1.1 and an MQTT 5 connection to a mosquitto that takes packets of at most
``MAX_PACKET`` bytes."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.cli.harness import home_args, ok
from tests.peers.servers import MqttBroker, free_port

T = TypeVar("T")
MAX_PACKET = 1_000_000
BROKER_CONF = f"max_packet_size {MAX_PACKET}\n"


def setup_webhook(home: Path, *, model: str = "docs") -> int:
    """The webhook datasource ``hook`` (on a free port, bodies up to 20 MB) and model ``model``;
    returns the port."""
    port = free_port()
    h = home_args(home)
    ok(*h, "datasource", "add", "hook", "--kind", "webhook", "--port", str(port), "--max-body", "20000000")
    ok(*h, "model", "add", model, "--datasource", "hook")
    return port


def add_route(
    home: Path,
    name: str,
    broker: MqttBroker,
    topic: str,
    *,
    protocol: str = "3.1.1",
    model: str = "docs",
    extra: tuple[str, ...] = (),
) -> None:
    """Route ``name`` from ``model`` to its own broker connection (``name``-broker) on ``broker``."""
    h = home_args(home)
    ok(*h, "broker", "add", f"{name}-broker", "--kind", "mqtt", "--url", broker.url, "--protocol", protocol)
    ok(*h, "route", "add", name, "--model", model, "--broker", f"{name}-broker", "--topic", topic, *extra)


def post(port: int, docs: list[dict[str, Any]], model: str = "docs") -> None:
    """POST ``docs`` as one request (one captured batch); returns once they are captured."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{model}",
        data=json.dumps(docs).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200


def quarantine(home: Path, *args: str) -> list[dict[str, Any]]:
    out = ok(*home_args(home), "quarantine", "list", "--json", *args)
    return [json.loads(line) for line in out.splitlines()]


def status(home: Path) -> dict[str, Any]:
    return dict(json.loads(ok(*home_args(home), "status", "--json")))


def poll(read: Callable[[], T], until: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Read ``read()`` every 0.2 s until ``until`` holds for it; return that reading."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not there after {timeout} s: {value!r}"[:2000])
        time.sleep(0.2)
