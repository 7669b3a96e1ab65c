"""Routes under qasync, the app's loop: timers that fire a little early must not lose a save.

qasync turns a timer's delay into whole milliseconds (rounding down) and Qt's coarse timers may
fire a little early, so a callback scheduled with ``call_at`` can run before ``loop.time()``
reaches its deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from eventdesk.core.model_runner import ModelRunner
from eventdesk.core.runtime import Runtime
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.supervisor import Supervisor
from tests.core.test_runtime import captured_events, routed_home
from tests.peers.servers import MqttBroker, Subscriber

pytestmark = pytest.mark.gui


def test_a_trickle_s_route_position_is_recorded_under_qasync(
    qapp: QApplication,
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = subscriber(unique_topic + "/#")
    recorded: list[int | None] = []

    async def trickle() -> None:
        runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
        runner = ModelRunner(runtime.hub, "accounts", runtime.appended)
        await runtime.start_route("out")
        events = captured_events(30)
        for i in range(0, 30, 3):  # a few events at a time, each lot acknowledged before the next
            await runner.deliver(events[i : i + 3], i + 2)
            await asyncio.to_thread(sub.wait_for, i + 3, 15)
            # Fewer than ROUTE_SAVE_EVERY events: recorded ROUTE_SAVE_S (20 ms) after their
            # acknowledgement while the route keeps running (``status`` in another process reads it).
            await asyncio.sleep(0.2)
            recorded.append(home.capture.route_position("out"))
        route = runtime.routes["out"]
        assert route.task is not None and not route.task.done()
        await runtime.aclose()

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(trickle())
    assert recorded == list(range(3, 33, 3))
    home.close()


def test_an_idle_route_under_qasync_sends_quarantined_events_the_user_retries(
    qapp: QApplication,
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = subscriber(unique_topic + "/#")
    stored = home.capture.append("accounts", captured_events(1), 0)
    home.capture.set_route_position("out", stored[0].pos)  # sent before; then quarantined
    home.capture.quarantine_add("out", stored[0].pos, "topic", "the broker's ACL refused it")

    async def retry_while_idle() -> None:
        runtime = Runtime(home.workspace, home.capture)
        await runtime.start_route("out")
        await asyncio.sleep(1.5)  # the route looked once at start; it now idles, woken by timers only
        assert home.capture.quarantine_retry("out") == 1
        await asyncio.to_thread(sub.wait_for, 1, 10)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        # Acknowledged, so it leaves the quarantine (the subscriber may see it a little before).
        while home.capture.quarantine_entries("out") and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await runtime.aclose()

    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(retry_while_idle())
    assert home.capture.quarantine_entries("out") == []
    home.close()
