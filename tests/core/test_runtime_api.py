"""The runtime's public API: listeners that unsubscribe, a route dying of a bug shown as an error,
the status snapshot, forgetting a removed object, secrets looked up off the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventdesk.cli.main import main
from eventdesk.core import broker_link, model_runner
from eventdesk.core.contracts import State
from eventdesk.core.errors import BrokerError, EventDeskError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.runtime_hub import Listeners
from eventdesk.core.workspace import BrokerConfig
from tests.core.test_runtime import RefusingPublisher, captured_events
from tests.peers.servers import free_port


class ExplodingPublisher(RefusingPublisher):
    """A broker kind with a bug: every publish raises RuntimeError."""

    def __init__(self, config: BrokerConfig, secret: str | None, on_state: Any) -> None:
        super().__init__(forbidden="", busy="")

    def publish_many(self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool) -> Any:
        raise RuntimeError("boom in the publisher")


def _home(path: Path) -> Home:
    home = Home.open(str(path))
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1"})
    home.add_route("out", "accounts", "mosq", {"topic": "t/{key}", "qos": 1})
    return home


async def _until(condition: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:  # noqa: ASYNC110 - state changes mark no event here
        await asyncio.sleep(0.01)
    assert condition()


def test_a_listener_unsubscribes_itself_or_another_while_they_are_called() -> None:
    listeners: Listeners[Any] = Listeners()
    heard: list[str] = []
    off_b = listeners.add(lambda: heard.append("b"))

    def a() -> None:
        heard.append("a")
        off_a()
        off_b()

    off_a = listeners.add(a)
    listeners.items = (listeners.items[1], listeners.items[0])  # a first
    for listener in listeners.items:
        listener()
    assert heard == ["a", "b"]  # the round in progress finishes
    assert listeners.items == ()
    off_a()  # a second call does nothing


@pytest.mark.asyncio
async def test_on_state_returns_an_unsubscribe(isolated_home: Path) -> None:
    home = _home(isolated_home)
    runtime = Runtime(home.workspace, home.capture)
    seen: list[State] = []
    off = runtime.on_state(lambda key, change: seen.append(change.state) if key == "model/accounts" else None)
    await runtime.start_model("accounts")
    await _until(lambda: runtime.state_of("model/accounts").state is State.RUNNING)
    assert seen[-1] is State.RUNNING
    off()
    count = len(seen)
    await runtime.stop_model("accounts")
    assert runtime.state_of("model/accounts").state is State.STOPPED
    assert len(seen) == count  # nothing after off()
    await runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_a_route_whose_publisher_raises_shows_as_an_error_with_the_message(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_link, "broker_class", lambda kind: ExplodingPublisher)
    home = _home(isolated_home)
    home.capture.append("accounts", captured_events(3), checkpoint=None)
    runtime = Runtime(home.workspace, home.capture)
    terminal: list[tuple[str, EventDeskError]] = []
    runtime.on_terminal(lambda key, error: terminal.append((key, error)))
    await runtime.start_route("out")
    await _until(lambda: runtime.state_of("route/out").state is State.ERROR)
    detail = runtime.state_of("route/out").detail or ""
    assert "route 'out'" in detail and "RuntimeError: boom in the publisher" in detail
    assert [key for key, _ in terminal] == ["route/out"]  # `eventdesk run` stops on it, exit 6
    assert isinstance(terminal[0][1], BrokerError)
    assert not runtime.is_running("route", "out")
    status = await runtime.status()
    (route,) = status.routes
    assert route.state.state is State.ERROR and "boom in the publisher" in (route.state.detail or "")
    assert route.backlog == 3
    await runtime.aclose()
    stored = {st.object: st for st in home.capture.states()}  # what `eventdesk status` reads
    assert stored["route/out"].state == "error" and "boom" in (stored["route/out"].detail or "")
    home.close()


@pytest.mark.asyncio
async def test_forget_stops_a_removed_object_and_its_dependants(isolated_home: Path) -> None:
    home = _home(isolated_home)
    runtime = Runtime(home.workspace, home.capture)
    await runtime.start_model("accounts")
    await _until(lambda: runtime.state_of("model/accounts").state is State.RUNNING)
    assert runtime.is_running("route", "out")
    plan = home.removal("datasource", "hooks")
    await runtime.forget(plan)
    assert not runtime.is_running("model") and not runtime.is_running("route")
    assert "model/accounts" not in runtime.states() and "route/out" not in runtime.states()
    home.remove("datasource", "hooks", cascade=True)
    runtime.set_workspace(home.workspace)
    assert (await runtime.status()).models == ()
    await runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_secrets_are_looked_up_off_the_loop(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = model_runner.resolve_secret

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(model_runner, "resolve_secret", spy)
    home = _home(isolated_home)
    runtime = Runtime(home.workspace, home.capture)
    await runtime.start_model("accounts")
    await _until(lambda: runtime.state_of("model/accounts").state is State.RUNNING)
    assert threads and threading.main_thread().name not in threads
    await runtime.aclose()
    home.close()


def test_status_json_keeps_an_exact_checkpoint_and_its_keys(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = _home(isolated_home)
    checkpoint = Decimal("12345678901234567890.000000000001")
    home.capture.append("accounts", captured_events(2), checkpoint=checkpoint)
    home.close()
    assert main(["--home", str(isolated_home), "status", "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out.replace("12345678901234567890.000000000001", '"exact"'))
    assert data["models"]["accounts"] == {
        "datasource": "hooks",
        "state": "stopped",
        "detail": None,
        "checkpoint": "exact",
        "events": 2,
    }
    assert set(data["routes"]["out"]) == {
        *("model", "broker", "enabled", "state", "detail", "position", "backlog", "quarantined"),
    }
    assert data["routes"]["out"]["backlog"] == 2
    assert data["brokers"] == {"mosq": {"state": "stopped", "detail": None}}
    assert main(["--home", str(isolated_home), "status"]) == 0
    assert "checkpoint=12345678901234567890.000000000001" in capsys.readouterr().out
