"""The built-in broker (kind ``local``): a real amqtt on loopback, real paho and mosquitto_sub clients."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from eventdesk.brokers.local import BROKERS, LocalBrokerPublisher
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import BrokerError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.workspace import BrokerConfig
from tests.peers.servers import Subscriber, free_port, missing_peer

MakePublisher = Callable[[int], LocalBrokerPublisher]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest_asyncio.fixture
async def make_publisher() -> AsyncIterator[MakePublisher]:
    made: list[LocalBrokerPublisher] = []

    def make(port: int, states: list[StateChange] | None = None) -> LocalBrokerPublisher:
        sink = states if states is not None else []
        pub = LocalBrokerPublisher(
            config=BrokerConfig("builtin", "local", {"port": port}), secret=None, on_state=sink.append
        )
        made.append(pub)
        return pub

    yield make
    for pub in made:
        await pub.close(1.0)


@pytest.mark.asyncio
async def test_publishes_reach_paho_and_mosquitto_sub_at_qos_0_and_1(
    make_publisher: MakePublisher, unique_topic: str
) -> None:
    if shutil.which("mosquitto_sub") is None:
        missing_peer("mosquitto_sub", "apt-get install mosquitto-clients")
    port = free_port()
    pub = make_publisher(port)
    await pub.start()
    await asyncio.wait_for(pub.wait_connected(), 10)
    paho = await asyncio.to_thread(Subscriber, port=port, topic=unique_topic + "/#", qos=1)
    sub = await asyncio.create_subprocess_exec(
        "stdbuf", "-oL", "mosquitto_sub", "-d", "-p", str(port), "-t", unique_topic + "/#", "-C", "4",
        "-W", "30", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert sub.stdout is not None
        async with asyncio.timeout(15):
            while b"SUBACK" not in (line := await sub.stdout.readline()):
                assert line, "mosquitto_sub ended before subscribing"
        for i, qos in enumerate((0, 1, 0, 1)):
            await asyncio.wait_for(pub.publish(f"{unique_topic}/q{qos}", f"m{i}".encode(), qos, False), 10)
        got = await asyncio.to_thread(paho.wait_for, 4)
        assert sorted(m.payload for m in got) == [b"m0", b"m1", b"m2", b"m3"]
        out, _ = await asyncio.wait_for(sub.communicate(), 30)
        lines = out.decode().splitlines()
        assert [line for line in lines if line.startswith("m")] == ["m0", "m1", "m2", "m3"]
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
        await asyncio.to_thread(paho.close)


@pytest.mark.asyncio
async def test_a_taken_port_is_a_terminal_error_naming_port(make_publisher: MakePublisher) -> None:
    states: list[StateChange] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pub = LocalBrokerPublisher(
            config=BrokerConfig("builtin", "local", {"port": port}), secret=None, on_state=states.append
        )
        with pytest.raises(BrokerError) as info:
            await pub.start()
        with pytest.raises(BrokerError) as tested:
            await LocalBrokerPublisher.test_connection(pub.config, None)
    err = info.value
    assert err.terminal and err.field == "port" and err.obj == "broker 'builtin'"
    assert f"127.0.0.1:{port}" in str(err) and "already in use" in str(err)
    assert tested.value.field == "port"
    assert states[-1].state is State.ERROR and "already in use" in (states[-1].detail or "")
    await pub.close()


@pytest.mark.asyncio
async def test_publishers_on_one_port_share_one_broker_that_stops_with_the_last(
    make_publisher: MakePublisher,
) -> None:
    port = free_port()
    first, second = make_publisher(port), make_publisher(port)
    await first.start()
    await second.start()
    assert BROKERS.get("127.0.0.1", port) is not None
    summary = await LocalBrokerPublisher.test_connection(first.config, None)
    assert summary.startswith("built-in broker (amqtt") and f":{port}" in summary
    await first.close()
    await asyncio.wait_for(second.wait_connected(), 10)
    await asyncio.wait_for(second.publish("t/x", b"still up", 1, False), 10)
    await second.close()
    assert BROKERS.get("127.0.0.1", port) is None
    assert port_is_free(port)
    summary = await LocalBrokerPublisher.test_connection(first.config, None)
    assert "is free" in summary


@pytest.mark.asyncio
async def test_the_runtime_runs_the_built_in_broker_without_routes_and_stops_it(isolated_home: Path) -> None:
    home = Home.open(str(isolated_home))
    port = free_port()
    home.add_broker("builtin", "local", {"port": port})
    runtime = Runtime(home.workspace, home.capture)
    running = asyncio.Event()
    runtime.on_state(lambda key, change: running.set() if change.state is State.RUNNING else None)
    await runtime.start_services()
    await asyncio.wait_for(running.wait(), 10)
    paho = await asyncio.to_thread(Subscriber, port=port, topic="anything/#", qos=0)  # clients can subscribe
    await asyncio.to_thread(paho.close)
    await runtime.aclose()
    assert BROKERS.get("127.0.0.1", port) is None and port_is_free(port)
    assert runtime.state_of("broker/builtin").state is State.STOPPED
    home.close()
