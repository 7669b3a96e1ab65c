"""Done-when 3 and 4 of the postgres kind with the real ``eventdesk run`` process (the in-process
versions are in test_postgres_run.py and test_postgres_snapshot.py): the server restarted
(``pg_ctl restart -m fast``) while rows are written loses nothing on the way to an MQTT
subscriber, and ``--since 0`` on a table of 100,000 rows with writes still going on captures
every row exactly once, as a snapshot event or a change."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.cli.harness import RunProcess, home_args, ok
from tests.connectors.test_postgres_run import Writer, has_keys, setup_home, wait_running
from tests.peers.postgres_server import running_postgres
from tests.peers.servers import MqttBroker, Subscriber

pytestmark = pytest.mark.timeout(300)

ROWS = 100_000


def captured(home: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(key, op, source)`` of every captured event, in capture order."""
    con = sqlite3.connect(f"file:{home / 'capture.sqlite3'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT key, op, envelope FROM events ORDER BY pos").fetchall()
    finally:
        con.close()
    return [(key, op, json.loads(raw)["source"]) for key, op, raw in rows]


def wait_captured(home: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if (home / "capture.sqlite3").exists():
            con = sqlite3.connect(f"file:{home / 'capture.sqlite3'}?mode=ro", uri=True)
            try:
                (found,) = con.execute("SELECT COUNT(*) FROM events").fetchone()
            except sqlite3.OperationalError:  # the schema is being made
                found = 0
            finally:
                con.close()
            if found >= count:
                return
        assert time.monotonic() < deadline, f"{found} of {count} events captured after {timeout} s"
        time.sleep(0.1)


def test_server_restarted_under_a_running_process_loses_nothing(
    tmp_path: Path, mqtt_broker: MqttBroker, subscriber: Any, unique_topic: str
) -> None:
    with running_postgres() as pg:  # its own: restarting it must not disturb the other tests
        pg.execute("CREATE TABLE restarted (id int PRIMARY KEY, v text)")
        home = tmp_path / "home"
        setup_home(home, pg, mqtt_broker, "restarted", unique_topic)
        sub: Subscriber = subscriber(unique_topic + "/#")
        writer = Writer(pg, "restarted")
        run = RunProcess(home_args(home))
        try:
            wait_running(run)
            writer.start()
            sub.wait_for(300, 60)
            mark = len(run.lines)
            pg.restart("fast")
            run.wait_line("model 'items': retrying", 30, start=mark)  # it noticed, and goes on
            run.wait_line("model 'items': running", 60, start=mark)
            before = len(writer.committed)
            deadline = time.monotonic() + 30
            while len(writer.committed) < before + 20:  # the writer is back at work too
                assert time.monotonic() < deadline, "the writer did not get back to the server"
                time.sleep(0.1)
            writer.stop()
            written = {str(r[0]) for r in pg.execute("SELECT id FROM restarted")}
            assert len(written) > 1000
            sub.wait_until(has_keys(written), 120)
        finally:
            writer.stop()
            assert run.stop() == 0
    keys = [key for key, op, _ in captured(home) if op == "created"]
    assert set(keys) == written  # nothing missing, nothing that was not written
    assert len(keys) == len(written)  # the capture stored each change once
    assert {m.topic.rsplit("/", 1)[1] for m in sub.messages} == written


def test_since_0_on_100000_rows_with_writes_going_on_gives_every_row_exactly_once(tmp_path: Path) -> None:
    with running_postgres() as pg:
        pg.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        pg.execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(%s, -1) g", (-ROWS,))
        home = tmp_path / "home"
        h = home_args(home)
        ok(*h, "datasource", "add", "pg", "--kind", "postgres", "--url", pg.url, "--sslmode", "disable")
        ok(*h, "model", "add", "items", "--datasource", "pg", "--table", "public.big", "--since", "0")
        writer = Writer(pg, "big", size=20)  # ids 0, 1, 2, ...: before, during and after the copy
        writer.start()
        time.sleep(0.3)
        run = RunProcess(h)
        try:
            run.wait_line("model 'items': running", 60)
            wait_captured(home, ROWS, 60)  # the copy is in
            time.sleep(0.5)  # changes after it
            writer.stop()
            pg.execute("UPDATE big SET v = 'changed' WHERE id = -1")
            written = {str(r[0]) for r in pg.execute("SELECT id FROM big")}
            assert len(written) > ROWS
            wait_captured(home, len(written) + 1, 60)
        finally:
            writer.stop()
            assert run.stop() == 0
    events = captured(home)
    created = Counter(key for key, op, _ in events if op == "created")
    assert set(created) == written and max(created.values()) == 1  # every row once, none missing
    snapshot = {key for key, _, source in events if source.get("snapshot")}
    assert snapshot >= {str(-i) for i in range(1, ROWS + 1)}  # the rows there before, copied
    changes = [key for key, op, source in events if not source.get("snapshot") and op == "created"]
    assert changes and not snapshot & set(changes)  # rows written after the slot: as changes
    assert [key for key, op, _ in events if op == "updated"] == ["-1"]
    first_change = next(i for i, (_, _, source) in enumerate(events) if not source.get("snapshot"))
    assert all(not source.get("snapshot") for _, _, source in events[first_change:])
