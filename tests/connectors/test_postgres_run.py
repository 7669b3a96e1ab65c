"""``eventdesk run`` following a PostgreSQL table to a mosquitto subscriber, as a user runs it:
every change arrives with its op and key, a rolled-back transaction never does, and a run
SIGKILLed mid-stream loses nothing when started again (while the slot never confirms more
than the capture holds); the server restarted mid-stream loses nothing either."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventdesk.connectors.postgres.pgoutput import parse_lsn
from eventdesk.connectors.postgres.settings import object_names
from eventdesk.core.contracts import State
from eventdesk.core.quantities import amount_text
from tests.cli.harness import RunProcess, home_args, ok
from tests.connectors.postgres_pipeline import Pipeline
from tests.peers.postgres_server import PostgresServer, running_postgres
from tests.peers.servers import MqttBroker, Received, Subscriber

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def setup_home(home: Path, pg: PostgresServer, broker: MqttBroker, table: str, topic: str) -> None:
    h = home_args(home)
    ok(*h, "datasource", "add", "pg", "--kind", "postgres", "--url", pg.url, "--sslmode", "disable")
    ok(*h, "model", "add", "items", "--datasource", "pg", "--table", f"public.{table}")
    ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", broker.url)
    ok(*h, "route", "add", "out", "--model", "items", "--broker", "mosq", "--topic", topic + "/{op}/{key}",
       "--format", "envelope", "--qos", "1")  # fmt: skip


def wait_running(run: RunProcess) -> None:
    run.wait_line("model 'items': running", 60)
    run.wait_line("route 'out': running", 30)


def keys_of(messages: list[Received]) -> Counter[str]:
    return Counter(m.topic.rsplit("/", 1)[1] for m in messages)


def has_keys(expected: set[str]) -> Callable[[list[Received]], bool]:
    seen: set[str] = set()
    read = [0]

    def check(messages: list[Received]) -> bool:
        for m in messages[read[0] :]:
            seen.add(m.topic.rsplit("/", 1)[1])
        read[0] = len(messages)
        return expected <= seen

    return check


def test_run_delivers_every_change_to_mqtt_and_never_a_rolled_back_one(
    tmp_path: Path, pg: PostgresServer, mqtt_broker: MqttBroker, subscriber: Any, unique_topic: str
) -> None:
    pg.execute("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(12, 2))")
    home = tmp_path / "home"
    setup_home(home, pg, mqtt_broker, "items", unique_topic)
    sub: Subscriber = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home))
    total = 50_000
    try:
        wait_running(run)
        pg.execute("INSERT INTO items VALUES (-1, 'first', 9.99)")
        pg.execute("UPDATE items SET price = 10.01 WHERE id = -1")
        pg.execute("DELETE FROM items WHERE id = -1")
        (first, second, third) = sub.wait_for(3, 30)[:3]
        assert [m.topic.split("/")[-2:] for m in (first, second, third)] == [
            ["created", "-1"],
            ["updated", "-1"],
            ["deleted", "-1"],
        ]
        assert json.loads(second.payload)["payload"] == {"id": -1, "name": "first", "price": 10.01}
        conn = pg.connect()
        conn.autocommit = False
        with conn.cursor() as cur:
            for start in range(0, total, 500):  # transactions of 500, one rolled back
                cur.execute(
                    "INSERT INTO items SELECT g, 'item ' || g, g / 100.0 FROM generate_series(%s, %s) g",
                    (start, start + 499),
                )
                if start == 5000:
                    cur.execute("INSERT INTO items VALUES (-2, 'rolled back', 0)")
                    conn.rollback()
                else:
                    conn.commit()
        conn.close()
        pg.execute("TRUNCATE items")
        expected = {str(i) for i in range(total) if not 5000 <= i < 5500}
        sub.wait_until(has_keys(expected | {"public.items"}), 120)
        time.sleep(0.5)
    finally:
        assert run.stop() == 0
    keys = keys_of(sub.messages)
    assert "-2" not in keys and not any(5000 <= int(k) < 5500 for k in keys if k.lstrip("-").isdigit())
    assert set(keys) == expected | {"-1", "public.items"}
    assert keys["public.items"] == 1 and sub.messages[-1].topic.endswith("/truncated/public.items")


class Writer(threading.Thread):
    """Inserts rows in transactions of ``size`` until stopped; records, per transaction, its keys
    and an LSN at or after its commit record's end (the insert position read after COMMIT)."""

    def __init__(self, pg: PostgresServer, table: str, size: int = 50) -> None:
        super().__init__(daemon=True)
        self.pg, self.table, self.size = pg, table, size
        self.done = threading.Event()
        self.committed: list[tuple[int, list[str]]] = []
        self.lock = threading.Lock()
        self.next_id = 0

    def run(self) -> None:
        conn = None
        while not self.done.is_set():
            try:
                if conn is None:
                    conn = self.pg.connect(connect_timeout="5")
                    conn.autocommit = False
                with conn.cursor() as cur:
                    ids = list(range(self.next_id, self.next_id + self.size))
                    cur.execute(
                        f"INSERT INTO {self.table} SELECT g, md5(g::text) FROM unnest(%s::int[]) g",  # noqa: S608
                        (ids,),
                    )
                    conn.commit()
                    cur.execute("SELECT pg_current_wal_insert_lsn()::text")
                    (after,) = cur.fetchone()
                    conn.commit()
                with self.lock:
                    self.committed.append((parse_lsn(after), [str(i) for i in ids]))
                self.next_id += self.size
                time.sleep(0.005)
            except Exception:
                # The server restarting: connect again, with new ids (the failed transaction may
                # have committed all the same; the tests read what was written from the table).
                self.next_id += self.size
                conn = None
                time.sleep(0.2)

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def captured_keys(home: Path) -> set[str]:
    con = sqlite3.connect(f"file:{home / 'capture.sqlite3'}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT key FROM events")}
    finally:
        con.close()


def workspace_id(home: Path) -> str:
    return str(json.loads((home / "workspace.json").read_text())["workspace_id"])


def confirmed_flush(pg: PostgresServer, home: Path, table: str) -> int:
    slot = object_names(workspace_id(home), "pg", "items", "public", table).slot  # as setup_home makes it
    rows = pg.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
    assert len(rows) == 1
    return parse_lsn(rows[0][0]) if rows[0][0] else 0


def check_slot_within_capture(pg: PostgresServer, home: Path, writer: Writer) -> None:
    """Every transaction that ended at or before the slot's confirmed position is captured."""
    flushed = confirmed_flush(pg, home, writer.table)  # first: the capture only grows after this
    keys = captured_keys(home)
    with writer.lock:
        covered = [ids for lsn, ids in writer.committed if lsn <= flushed]
    missing = [k for ids in covered for k in ids if k not in keys]
    assert not missing, f"the slot confirmed past {len(missing)} rows the capture lacks"


def test_sigkill_mid_stream_then_restart_loses_nothing_and_the_slot_never_runs_ahead(
    tmp_path: Path, pg: PostgresServer, mqtt_broker: MqttBroker, subscriber: Any, unique_topic: str
) -> None:
    pg.execute("CREATE TABLE stream (id int PRIMARY KEY, v text)")
    home = tmp_path / "home"
    setup_home(home, pg, mqtt_broker, "stream", unique_topic)
    sub: Subscriber = subscriber(unique_topic + "/#")
    writer = Writer(pg, "stream")
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        writer.start()
        for _ in range(10):
            time.sleep(0.3)
            check_slot_within_capture(pg, home, writer)
        sub.wait_for(500, 60)
    finally:
        run.kill()
    check_slot_within_capture(pg, home, writer)  # nothing can move it now
    time.sleep(1.0)  # rows written while nobody follows
    run2 = RunProcess(home_args(home))
    try:
        wait_running(run2)
        time.sleep(1.0)
        check_slot_within_capture(pg, home, writer)
        writer.stop()
        written = {str(r[0]) for r in pg.execute("SELECT id FROM stream")}
        assert len(written) > 1000
        sub.wait_until(has_keys(written), 120)
    finally:
        writer.stop()
        assert run2.stop() == 0
    con = sqlite3.connect(home / "capture.sqlite3")
    rows = con.execute("SELECT key, rev FROM events WHERE model = 'items'").fetchall()
    con.close()
    assert {k for k, _ in rows} == written  # nothing missing
    assert len(rows) == len(set(rows)) == len(written)  # each (key, LSN) captured once
    duplicates = sum(c - 1 for c in keys_of(sub.messages).values())
    assert duplicates <= 1000, f"{duplicates} duplicates: more than a route batch"


@pytest.mark.asyncio
async def test_server_restarted_mid_stream_loses_nothing(isolated_home: Path) -> None:
    with running_postgres() as server:  # its own: restarting it must not disturb the others
        server.execute("CREATE TABLE rs (id int PRIMARY KEY, v text)")
        pipeline = Pipeline(isolated_home, server, "rs")
        writer = Writer(server, "rs")
        try:
            await pipeline.start()
            writer.start()
            await pipeline.wait_events(200, 60)
            await asyncio.to_thread(server.restart, "fast")  # the loop goes on: the capture confirms
            before = len(writer.committed)
            try:
                await pipeline.wait_events(len(pipeline.events()) + 200, 60)
            except AssertionError:
                state = pipeline.runtime.state_of("model/m")
                raise AssertionError(
                    f"{state}; the writer committed {len(writer.committed) - before} more"
                ) from None
            await pipeline.wait_state(State.RUNNING, 30)
            await asyncio.to_thread(writer.stop)
            written = {str(r[0]) for r in server.execute("SELECT id FROM rs")}
            events = await pipeline.wait_events(len(written), 60, where=lambda e: e["op"] == "created")
            assert {e["key"] for e in events} == written
        finally:
            await asyncio.to_thread(writer.stop)
            await pipeline.close()


@pytest.mark.asyncio
async def test_the_slots_lag_in_bytes_is_shown_while_the_capture_trails(
    isolated_home: Path, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventdesk.connectors.postgres import replication

    monkeypatch.setattr(replication, "LAG_REPORT_S", 0.05)
    pg.execute("CREATE TABLE laggy (id int PRIMARY KEY, v text)")
    pipeline = Pipeline(isolated_home, pg, "laggy", batch_size=50)
    real_append = pipeline.home.capture.append_rows

    def slow_append(*args: Any) -> Any:
        time.sleep(0.05)  # a slow disk
        return real_append(*args)

    monkeypatch.setattr(pipeline.home.capture, "append_rows", slow_append)
    details: list[str] = []
    source_lags: list[float | None] = []  # Connector.source_lag: the metrics', the fleet's

    def on_state(key: str, change: Any) -> None:
        details.append(change.detail or "")
        connector = pipeline.runtime.connector_of(pipeline.model)
        if connector is not None:
            source_lags.append(connector.source_lag())
            assert connector.source_lag_unit == "bytes of WAL"

    pipeline.runtime.on_state(on_state)
    try:
        await pipeline.start()
        pg.execute("INSERT INTO laggy SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g")
        await pipeline.wait_events(3000, 120)
    finally:
        await pipeline.close()
    lags = [d.rsplit("lag ", 1)[1] for d in details if "lag " in d]  # "36.9 kB of WAL"
    assert lags and all(lag.endswith(" of WAL") for lag in lags), details[-5:]
    assert any(lag != "0 bytes of WAL" for lag in lags), details[-5:]
    # Read when a state came in, it is the lag of that state or of a later one (never made up).
    said = [lag for lag in source_lags if lag is not None]
    assert any(lag > 0 for lag in said), source_lags
    assert {amount_text(lag, "bytes of WAL") for lag in said} <= set(lags), (source_lags, lags)


@pytest.mark.asyncio
async def test_a_busy_capture_keeps_the_connection_alive_past_the_servers_timeout(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_postgres(settings={"wal_sender_timeout": "'2s'"}) as server:
        server.execute("CREATE TABLE busy (id int PRIMARY KEY, v text)")
        pipeline = Pipeline(isolated_home, server, "busy", batch_size=100)
        real_append = pipeline.home.capture.append_rows
        slow = {"left": 2}

        def stalling_append(*args: Any) -> Any:
            if args[1] and slow["left"] > 0:  # the first two batches take longer than the timeout
                slow["left"] -= 1
                time.sleep(3.0)
            return real_append(*args)

        monkeypatch.setattr(pipeline.home.capture, "append_rows", stalling_append)
        states: list[State] = []
        pipeline.runtime.on_state(lambda key, change: states.append(change.state))
        try:
            await pipeline.start()
            server.execute("INSERT INTO busy SELECT g, 'v' FROM generate_series(1, 2000) g")
            await pipeline.wait_events(2000, 60)
        finally:
            await pipeline.close()
        log = server.logfile.read_text(errors="replace")
    assert State.RETRYING not in states
    assert "replication timeout" not in log and "terminating walsender" not in log


@pytest.mark.asyncio
async def test_a_server_down_at_start_is_retried_until_it_is_up(isolated_home: Path) -> None:
    with running_postgres() as server:
        server.execute("CREATE TABLE later (id int PRIMARY KEY)")
        await asyncio.to_thread(server.stop)
        pipeline = Pipeline(isolated_home, server, "later")
        try:
            await pipeline.runtime.start_model("m")
            detail = await pipeline.wait_state(State.RETRYING)
            assert detail is not None and "datasource 'pg'" in detail and f":{server.port}" in detail
            await asyncio.to_thread(server.start)
            await pipeline.wait_state(State.RUNNING, 60)
            server.execute("INSERT INTO later VALUES (1)")
            (event,) = await pipeline.wait_events(1)
            assert event["key"] == "1"
        finally:
            await pipeline.close()


@pytest.mark.asyncio
async def test_stopping_mid_stream_returns_within_a_second_and_loses_nothing(
    isolated_home: Path, pg: PostgresServer
) -> None:
    pg.execute("CREATE TABLE stoppable (id int PRIMARY KEY, v text)")
    pipeline = Pipeline(isolated_home, pg, "stoppable")
    writer = Writer(pg, "stoppable")
    try:
        await pipeline.start()
        writer.start()
        await pipeline.wait_events(300, 60)
        started = time.monotonic()
        await pipeline.runtime.stop_model("m")
        assert time.monotonic() - started < 1.5
        await asyncio.to_thread(writer.stop)
        await pipeline.runtime.start_model("m")  # the old run's connection may still hold the slot
        await pipeline.wait_state(State.RUNNING, 60)
        written = {str(r[0]) for r in pg.execute("SELECT id FROM stoppable")}
        events = await pipeline.wait_events(len(written), 60)
        assert {e["key"] for e in events} == written
    finally:
        await asyncio.to_thread(writer.stop)
        await pipeline.close()
