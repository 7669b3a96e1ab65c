"""Genuine broker restarts are not poison: 20 mosquitto restarts during a 20,000-document stream
through ``eventdesk run`` lose nothing and quarantine nothing.

The subscriber keeps a persistent session (clean_session false, QoS 1) on a mosquitto that
persists to its temporary directory, so what the broker acknowledged survives its restarts;
duplicates are expected (at-least-once) and reported.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

from tests.cli.harness import RunProcess, home_args
from tests.cli.poison import add_route, post, quarantine, setup_webhook, status
from tests.peers.servers import MqttBroker, Subscriber

DOCS = 20_000
POST_SIZE = 100
RESTARTS = 20
# The publisher's reconnect backoff doubles for connections that lived less than 5 s
# (MqttPublisher.stable_after): every RESTARTS_PER_CYCLE quick restarts, the connection is
# left up for longer, so the backoff starts over and the test stays short.
RESTARTS_PER_CYCLE = 4
STABLE_S = 5.5
QUICK_S = 0.5


@pytest.mark.slow
def test_twenty_broker_restarts_mid_stream_lose_nothing_and_quarantine_nothing(
    tmp_path: Path, mqtt_broker: MqttBroker
) -> None:
    home = tmp_path / "home"
    port = setup_webhook(home)
    add_route(home, "out", mqtt_broker, "restarts/{key}", extra=("--format", "payload", "--qos", "1"))
    sub = Subscriber(port=mqtt_broker.port, topic="restarts/#", qos=1)
    run = RunProcess(args=home_args(home))
    sending_failed: list[BaseException] = []

    def send() -> None:
        try:
            for start in range(0, DOCS, POST_SIZE):
                post(port, [{"id": f"d{i:05d}", "i": i} for i in range(start, start + POST_SIZE)])
                time.sleep(0.2)
        except BaseException as exc:  # reported by the test thread
            sending_failed.append(exc)

    try:
        run.wait_line("route 'out': running")
        sender = threading.Thread(target=send, name="webhook-sender")
        sender.start()
        for n in range(RESTARTS):
            mark = len(run.lines)
            mqtt_broker.restart()
            run.wait_line("route 'out': running", timeout=30, start=mark)  # reconnected
            time.sleep(STABLE_S if n % RESTARTS_PER_CYCLE == RESTARTS_PER_CYCLE - 1 else QUICK_S)
        sender.join(120)
        assert not sender.is_alive() and not sending_failed, sending_failed
        wanted = {f"d{i:05d}" for i in range(DOCS)}
        messages = sub.wait_until(lambda got: wanted <= {m.topic[9:] for m in got}, timeout=120)
        seen = collections.Counter(m.topic[9:] for m in messages)
        duplicates = {key: n - 1 for key, n in seen.items() if n > 1}
        print(f"{RESTARTS} broker restarts: {len(seen)} documents, {sum(duplicates.values())} duplicates")
        if duplicates:
            print("duplicated:", ", ".join(f"{k} +{n}" for k, n in sorted(duplicates.items())[:200]))
        assert set(seen) == wanted  # none missing, nothing else
        assert quarantine(home) == []
        assert "quarantined" not in run.output()
        assert status(home)["routes"]["out"]["quarantined"] == 0
        assert run.proc.poll() is None
    finally:
        sub.close()
        assert run.stop() == 0
