"""Hostile data through ``eventdesk run``: poison events are quarantined, the rest goes on.

One webhook batch holds a 70,000-character id, a ``$``-prefixed id, ids with ``/``, a 5 MB
document and ordinary ones. The real mosquitto takes packets of at most 1 MB: an MQTT 5
client learns that from CONNACK and never sends the 5 MB document; an MQTT 3.1.1 client is
simply disconnected each time it sends it, which the route must single out, while another
route on the same connection keeps publishing a stream of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.harness import RunProcess, home_args, ok
from tests.cli.poison import BROKER_CONF, add_route, post, quarantine, setup_webhook, status
from tests.peers.servers import MqttBroker, Subscriber, free_port

LONG_ID = "L" * 70_000
BIG = "x" * (5 * 1024 * 1024)


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[MqttBroker]:
    """A mosquitto that takes packets of at most 1 MB."""
    workdir = tmp_path / "mosquitto-small"
    workdir.mkdir()
    broker = MqttBroker(port=free_port(), workdir=workdir, extra_conf=BROKER_CONF)
    broker.start()
    yield broker
    broker.stop()


def _wait_quarantined(run: RunProcess, count: int) -> None:
    start = 0
    for _ in range(count):
        start = run.wait_line("quarantined", timeout=60, start=start) + 1


def test_a_batch_of_hostile_events_quarantines_the_poison_and_delivers_the_rest(
    tmp_path: Path, small_broker: MqttBroker
) -> None:
    home = tmp_path / "home"
    port = setup_webhook(home)
    add_route(home, "v3", small_broker, "{key}/v1", protocol="3.1.1")
    add_route(home, "v5", small_broker, "tenantA/{key}/events", protocol="5")
    # Another model's route on the v3 route's connection, which the poison keeps dropping.
    h = home_args(home)
    ok(*h, "model", "add", "other", "--datasource", "hook")
    ok(*h, "route", "add", "side", "--model", "other", "--broker", "v3-broker", "--topic", "side/{key}")
    sub = Subscriber(port=small_broker.port, topic="#")
    run = RunProcess(args=h)
    side_sent: list[str] = []
    poisoned = threading.Event()

    def side_stream() -> None:
        while not poisoned.wait(0.05):
            key = f"s{len(side_sent)}"
            post(port, [{"id": key}], model="other")
            side_sent.append(f"side/{key}")

    side = threading.Thread(target=side_stream, name="side-stream")
    try:
        run.wait_line("route 'v3': running")
        run.wait_line("route 'v5': running")
        run.wait_line("route 'side': running")
        side.start()
        post(
            port,
            [
                {"id": "ok-1", "n": 1},
                {"id": LONG_ID, "n": 2},
                {"id": "$SYS/x", "n": 3},
                {"id": "ok-2", "n": 4},
                {"id": "big", "n": 5, "blob": BIG},
                {"id": "tenantB/evil", "n": 6},
                {"id": "a/b/c", "n": 7},
                {"id": "ok-3", "n": 8},
            ],
        )
        _wait_quarantined(run, 4)
        poisoned.set()
        side.join(10)
        assert len(side_sent) > 10
        post(port, [{"id": "after", "n": 9}])  # both routes still move
        expected = {
            "ok-1/v1",
            "%24SYS%2Fx/v1",
            "ok-2/v1",
            "tenantB%2Fevil/v1",
            "a%2Fb%2Fc/v1",
            "ok-3/v1",
            "after/v1",
            "tenantA/ok-1/events",
            "tenantA/%24SYS%2Fx/events",
            "tenantA/ok-2/events",
            "tenantA/tenantB%2Fevil/events",
            "tenantA/a%2Fb%2Fc/events",
            "tenantA/ok-3/events",
            "tenantA/after/events",
        }
        expected.update(side_sent)
        messages = sub.wait_until(lambda got: expected <= {m.topic for m in got}, timeout=60)
        assert {m.topic for m in messages} == expected  # nothing else, nowhere else
        assert run.proc.poll() is None  # run keeps running

        entries = {(e["route"], e["key"][:4]): e for e in quarantine(home)}
        assert set(entries) == {("v3", "LLLL"), ("v3", "big"), ("v5", "LLLL"), ("v5", "big")}
        assert all(
            e["attempts"] == 1 and e["state"] == "held" for e in entries.values()
        )  # resends: no new entry
        assert entries["v3", "LLLL"]["field"] == "topic"
        assert "65535 bytes" in entries["v3", "LLLL"]["reason"]
        assert entries["v5", "LLLL"]["field"] == "topic"
        assert entries["v5", "big"]["field"] == "payload"
        assert "at most 1000000 bytes" in entries["v5", "big"]["reason"]  # from the CONNACK
        assert entries["v3", "big"]["field"] == "message"
        assert "closed the connection each time" in entries["v3", "big"]["reason"]
        routes = status(home)["routes"]
        assert routes["v3"]["quarantined"] == routes["v5"]["quarantined"] == 2
        assert routes["v3"]["backlog"] == routes["v5"]["backlog"] == routes["side"]["backlog"] == 0
        assert routes["side"]["quarantined"] == 0
        log = run.output()
        assert "route 'v3': event 'LLLLLLLL" in log and "(70000 characters) of model 'docs'" in log
        assert LONG_ID not in log  # a huge key is cut short in what the route reports
    finally:
        poisoned.set()
        sub.close()
        assert run.stop() == 0
