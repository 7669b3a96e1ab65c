"""The nats source kind through the command line (issue 15, done-when 3): a stream of 50,000
messages consumed with ``--since 0`` by the real ``eventdesk run``, SIGKILLed mid-way and
started again: every message is captured once, in stream order, and the consumer's ack floor
is the capture's checkpoint. Also: ``datasource add``/``model add``/``test`` with named errors."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import nats

from eventdesk.connectors.nats.settings import consumer_name
from eventdesk.core import json_codec
from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture
from tests.peers.servers import free_port

TOTAL = 50_000


def fill_stream(url: str, total: int) -> None:
    """A stream ``ORDERS`` holding ``total`` messages (core publishes: the stream stores them)."""

    async def fill() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            for i in range(total):
                await nc.publish(f"orders.{i % 7}", b'{"n": %d}' % i)
                if i % 5000 == 4999:
                    await nc.flush()
            await nc.flush()
            for _ in range(100):
                if (await js.stream_info("ORDERS")).state.messages == total:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the stream did not take every message")
        finally:
            await nc.close()

    asyncio.run(fill())


def captured(home: Path) -> int:
    con = sqlite3.connect(home / "capture.sqlite3")
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def wait_captured(home: Path, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = captured(home)
    while n < count and time.monotonic() < deadline:
        time.sleep(0.05)
        n = captured(home)
    return n


def ack_floor(url: str, consumer: str) -> tuple[int, int]:
    async def read() -> tuple[int, int]:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info("ORDERS", consumer)
            assert info.ack_floor is not None
            return info.ack_floor.stream_seq, int(info.num_ack_pending or 0)
        finally:
            await nc.close()

    return asyncio.run(read())


def test_sigkill_mid_way_captures_every_message_once(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    fill_stream(nats_server.url, TOTAL)
    home = tmp_path / "home"
    h = home_args(home)
    ok(*h, "datasource", "add", "nd", "--kind", "nats", "--url", nats_server.url)
    ok(*h, "model", "add", "orders", "--datasource", "nd", "--stream", "ORDERS", "--since", "0")
    assert f"stream 'ORDERS' (orders.>): {TOTAL} messages" in ok(*h, "test", "model", "orders")
    run = RunProcess(h)
    try:
        run.wait_line("model 'orders': running", 30)
        assert wait_captured(home, TOTAL // 3, 60) < TOTAL, "no mid-way to kill at"
    finally:
        run.kill()
    killed_at = captured(home)
    run2 = RunProcess(h)
    try:
        run2.wait_line("model 'orders': running", 30)
        assert wait_captured(home, TOTAL, 90) == TOTAL
        time.sleep(0.5)  # the last ack
    finally:
        assert run2.stop() == 0, run2.output()
    con = sqlite3.connect(home / "capture.sqlite3")
    rows = [json_codec.loads(raw) for (raw,) in con.execute("SELECT envelope FROM events ORDER BY pos")]
    (checkpoint,) = con.execute("SELECT seq FROM checkpoints WHERE model = 'orders'").fetchone()
    con.close()
    seqs = [r["seq"] for r in rows]
    assert 0 < killed_at < TOTAL
    assert seqs == list(range(1, TOTAL + 1))  # every message once, in stream order
    assert [r["payload"]["n"] for r in rows] == list(range(TOTAL))
    assert json_codec.loads(checkpoint) == TOTAL
    workspace_id = json_codec.loads((home / "workspace.json").read_bytes())["workspace_id"]
    assert ack_floor(nats_server.url, consumer_name(workspace_id, "nd", "orders")) == (TOTAL, 0)


def test_cli_names_misconfigurations(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    h = home_args(tmp_path / "home")
    ok(*h, "datasource", "add", "nd", "--kind", "nats", "--url", nats_server.url)
    assert "JetStream on" in ok(*h, "test", "datasource", "nd")
    ok(*h, "model", "add", "gone", "--datasource", "nd", "--stream", "GONE")
    result = eventdesk(*h, "test", "model", "gone")
    assert result.returncode != 0
    assert "model 'gone': field 'stream': the JetStream stream 'GONE' does not exist" in result.stderr
    result = eventdesk(*h, "model", "add", "bad", "--datasource", "nd", "--stream", "A.B")
    assert result.returncode != 0 and "stream" in result.stderr
    result = eventdesk(*h, "datasource", "add", "web", "--kind", "nats", "--url", "http://127.0.0.1:1")
    assert result.returncode != 0 and "url" in result.stderr
    ok(*h, "datasource", "add", "down", "--kind", "nats", "--url", f"nats://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = eventdesk(*h, "test", "datasource", "down")  # nobody listens: said at once
    assert result.returncode == 5 and time.monotonic() - started < 10
    assert "datasource 'down': field 'url': cannot connect to nats://127.0.0.1:" in result.stderr
