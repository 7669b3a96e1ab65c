"""``--since 0``: the table's existing rows first (from the snapshot the slot exported), then its
changes, each row exactly once as a snapshot event or a change, while writes go on."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from eventdesk.core.contracts import State
from tests.connectors.postgres_pipeline import Pipeline
from tests.connectors.test_postgres_run import Writer
from tests.peers.postgres_server import running_postgres

pytestmark = pytest.mark.timeout(300)

ROWS = 100_000


@pytest.mark.asyncio
async def test_since_0_copies_every_row_once_then_streams_without_gap_or_double(isolated_home: Path) -> None:
    with running_postgres() as pg:
        pg.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        pg.execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(%s, -1) g", (-ROWS,))
        pipeline = Pipeline(isolated_home, pg, "big", since="0")
        writer = Writer(pg, "big", size=20)  # ids 0, 1, 2, ...: before, during and after the copy
        writer.start()
        try:
            await asyncio.sleep(0.3)
            await pipeline.runtime.start_model("m")
            await pipeline.wait_state(State.RUNNING, 120)  # the copy is done: streaming
            await asyncio.sleep(0.5)
            await asyncio.to_thread(writer.stop)
            pg.execute("UPDATE big SET v = 'changed' WHERE id = -1")
            written = {str(r[0]) for r in pg.execute("SELECT id FROM big")}
            assert len(written) > ROWS
            events = await pipeline.wait_events(len(written) + 1, 120)
        finally:
            await asyncio.to_thread(writer.stop)
            await pipeline.close()
    created = Counter(e["key"] for e in events if e["op"] == "created")
    assert set(created) == written and max(created.values()) == 1  # every row once, none missing
    snapshot = [e for e in events if e["source"].get("snapshot")]
    assert {e["key"] for e in snapshot} >= {str(-i) for i in range(1, ROWS + 1)}
    streamed = [e for e in events if not e["source"].get("snapshot")]
    assert streamed and all(e["rev"] != snapshot[0]["rev"] for e in streamed)
    assert [e["payload"]["v"] for e in events if e["op"] == "updated"] == ["changed"]
    # The snapshot comes first, then only changes.
    first_change = next(i for i, e in enumerate(events) if not e["source"].get("snapshot"))
    assert all(not e["source"].get("snapshot") for e in events[first_change:])


@pytest.mark.asyncio
async def test_a_copy_stopped_halfway_starts_over_and_misses_nothing(isolated_home: Path) -> None:
    with running_postgres() as pg:
        pg.execute("CREATE TABLE half (id int PRIMARY KEY, v text)")
        pg.execute("INSERT INTO half SELECT g, md5(g::text) FROM generate_series(1, %s) g", (ROWS // 2,))
        pipeline = Pipeline(isolated_home, pg, "half", since="0", batch_size=500)
        try:
            await pipeline.runtime.start_model("m")
            await pipeline.wait_events(2000, 60)  # some pages are in
            await pipeline.runtime.stop_model("m")
            copied_first = pipeline.home.capture.count("m")
            assert copied_first < ROWS // 2, "the copy finished before it could be stopped"
            assert pipeline.home.capture.checkpoint("m") == "0"  # not an LSN: the copy is unfinished
            await pipeline.runtime.start_model("m")
            await pipeline.wait_state(State.RUNNING, 120)
            pg.execute("INSERT INTO half VALUES (0, 'after')")
            events = await pipeline.wait_events(1, 60, where=lambda e: e["key"] == "0")
            events = pipeline.events()
        finally:
            await pipeline.close()
    keys = Counter(e["key"] for e in events)
    assert set(keys) == {str(i) for i in range(ROWS // 2 + 1)}  # none missing
    assert sum(keys.values()) - len(keys) <= copied_first  # only the first copy's rows twice
