"""Every column type listed in issue 14 reaches the capture as ``row_to_json`` says it, exactly,
and inserts, updates, deletes and truncations arrive with the right op, key and row, through
the real runtime and a real PostgreSQL cluster (tests/peers/postgres_server.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eventdesk.connectors.postgres.pgoutput import parse_lsn
from eventdesk.core.contracts import State
from tests.connectors.postgres_pipeline import Pipeline
from tests.peers.postgres_server import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


TYPES_TABLE = """
CREATE TABLE {name} (
    id int PRIMARY KEY,
    n numeric(40, 20), i8 int8, f8 float8, b bool, t text, jb jsonb, j json,
    tstz timestamptz, ts timestamp, d date, tm time, by bytea,
    ia int[], ta text[], ia2 int[][], u uuid, nothing text
)
"""

ROWS = [
    """(1, 12345678901234567890.12345678901234567890, 9223372036854775807, 1.7976931348623157e308,
        true, 'üñí "quo''tes" \\ back \n line', '{"a": [1, 2.5, {"b": null}], "big": 123456789012345678901234567890.5}',
        '{"x": 1.10, "y": [true, "s"]}', '2024-02-29 12:34:56.789012+05:30', '2024-02-29 12:34:56.789012',
        '2024-02-29', '23:59:59.999999', '\\x00ff10'::bytea, '{1,NULL,3}',
        ARRAY['a,b', 'q"uote', NULL, 'NULL', '', 'back\\slash', '{braces}'], '{{1,2},{3,4}}',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL)""",
    """(2, -0.00000000000000000001, -9223372036854775808, 0.1, false, '', '[]', 'null',
        '1970-01-01 00:00:00+00', '0001-01-01 00:00:00', '1999-12-31', '00:00:00', ''::bytea, '{}', '{}',
        '{}', '00000000-0000-0000-0000-000000000000', NULL)""",
    """(3, 0, 0, 'NaN', NULL, NULL, '{"deep": {"deeper": [[[1]]]}}', '"text"', 'infinity', '-infinity',
        NULL, NULL, NULL, '{NULL}', '{NULL}', NULL, NULL, NULL)""",
    """(4, 99999999999999999999.99999999999999999999, 1, -1.5e-300, true, repeat('x', 5000), '{}', '{}',
        '2024-06-01 23:59:59.5-03', '2024-06-01 23:59:59.5', '2024-06-01', '12:00:00.5', '\\x'::bytea,
        '{-1,2147483647}', '{"  padded  "}', '{{NULL,2},{3,NULL}}', NULL, NULL)""",
]


def as_decimals(value: Any) -> Any:
    """Numbers as Decimal (floats by their shortest repr), the rest as it is: exact comparison."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, list):
        return [as_decimals(v) for v in value]
    if isinstance(value, dict):
        return {k: as_decimals(v) for k, v in value.items()}
    return value


def expected_rows(pg: PostgresServer, table: str) -> dict[int, dict[str, Any]]:
    """``row_to_json`` of every row, numbers as Decimal, bytea as the connector writes it."""
    rows = pg.execute(f"SELECT row_to_json(r)::text FROM {table} r")  # noqa: S608 - the test's own table
    found = {}
    for (text,) in rows:
        row = json.loads(text, parse_float=Decimal, parse_int=Decimal)
        if row.get("by") is not None:
            row["by"] = base64.b64encode(bytes.fromhex(row["by"][2:])).decode()
        found[int(row["id"])] = as_decimals(row)
    return found


@pytest.mark.asyncio
async def test_every_type_round_trips_exactly_as_row_to_json(pg: PostgresServer, isolated_home: Path) -> None:
    pg.execute(TYPES_TABLE.format(name="types"))
    pipeline = Pipeline(isolated_home, pg, "public.types")
    try:
        await pipeline.start()
        for row in ROWS:
            pg.execute(f"INSERT INTO types VALUES {row}")  # noqa: S608 - the test's own rows
        events = await pipeline.wait_events(len(ROWS))
        expected = expected_rows(pg, "types")
        assert [e["op"] for e in events] == ["created"] * len(ROWS)
        for event in events:
            key = int(event["key"])
            assert as_decimals(event["payload"]) == expected[key], f"row {key}"
        raw = b"".join(r for _, r in pipeline.home.capture.read_after("m", 0, 100))
        # The numerics went through the capture's JSON digit for digit.
        assert b"12345678901234567890.12345678901234567890" in raw
        assert b"123456789012345678901234567890.5" in raw
        assert b"99999999999999999999.99999999999999999999" in raw
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_insert_update_delete_truncate_with_op_key_and_row(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE ops (id int PRIMARY KEY, name text, qty numeric)")
    pg.execute("CREATE TABLE ops2 (region text, id int, note text, PRIMARY KEY (region, id))")
    pipeline = Pipeline(isolated_home, pg, "ops")
    pipeline.home.add_model("m2", "pg", {"table": "public.ops2"})
    try:
        await pipeline.start()
        await pipeline.runtime.start_model("m2")
        await pipeline.wait_state(State.RUNNING, model="m2")
        pg.execute("INSERT INTO ops VALUES (1, 'one', 1.5), (2, 'two', 2)")
        pg.execute("UPDATE ops SET name = 'uno', qty = qty + 1 WHERE id = 1")
        pg.execute("DELETE FROM ops WHERE id = 2")
        conn = pg.connect()
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ops VALUES (99, 'rolled back', 0)")
            cur.execute("UPDATE ops SET name = 'never' WHERE id = 1")
        conn.rollback()
        conn.close()
        pg.execute("INSERT INTO ops VALUES (3, 'three', NULL)")
        pg.execute("TRUNCATE ops")
        pg.execute("INSERT INTO ops2 VALUES ('eu', 7, 'x')")
        events = await pipeline.wait_events(6)
        summary = [(e["op"], e["key"], e["payload"]) for e in events]
        assert summary == [
            ("created", "1", {"id": 1, "name": "one", "qty": Decimal("1.5")}),
            ("created", "2", {"id": 2, "name": "two", "qty": 2}),
            ("updated", "1", {"id": 1, "name": "uno", "qty": Decimal("2.5")}),
            ("deleted", "2", {"id": 2}),
            ("created", "3", {"id": 3, "name": "three", "qty": None}),
            ("truncated", "public.ops", {"cascade": False, "restart_identity": False}),
        ]
        assert all(e["rev"] == e["seq"] for e in events)
        assert events[0]["rev"].endswith(":0") and events[1]["rev"].endswith(":1")
        assert events[0]["rev"].split(":")[0] == events[0]["source"]["lsn"]
        assert events[0]["source"]["table"] == "ops"
        (two_columns,) = await pipeline.wait_events(1, model="m2")
        assert (two_columns["op"], two_columns["key"]) == ("created", '["eu","7"]')
        assert len(pipeline.events()) == 6  # nothing of ops2 in m, nothing rolled back
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_an_unchanged_toasted_column_is_never_reported_as_null(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, rev int)")
    pg.execute("ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL")  # out of line, uncompressed
    pg.execute("CREATE TABLE docs_full (id int PRIMARY KEY, body text, rev int)")
    pg.execute("ALTER TABLE docs_full ALTER COLUMN body SET STORAGE EXTERNAL")
    pg.execute("ALTER TABLE docs_full REPLICA IDENTITY FULL")
    body = "".join(chr(0x41 + (i * 7919) % 26) for i in range(20_000))
    pipeline = Pipeline(isolated_home, pg, "docs")
    pipeline.home.add_model("full", "pg", {"table": "docs_full"})
    try:
        await pipeline.start()
        await pipeline.runtime.start_model("full")
        await pipeline.wait_state(State.RUNNING, model="full")
        for table in ("docs", "docs_full"):
            pg.execute(f"INSERT INTO {table} VALUES (1, %s, 1)", (body,))  # noqa: S608
            pg.execute(f"UPDATE {table} SET rev = 2 WHERE id = 1")  # noqa: S608 - body untouched
            pg.execute(f"UPDATE {table} SET body = NULL, rev = 3 WHERE id = 1")  # noqa: S608 - a real NULL
        for model in ("m", "full"):
            created, updated, nulled = await pipeline.wait_events(3, model=model)
            assert created["payload"]["body"] == body
            assert updated["payload"]["rev"] == 2
            if model == "m":  # the server did not send it: 'u' in the new tuple, nothing older
                assert "body" not in updated["payload"]
            if "body" in updated["payload"]:  # filled in from the old row (REPLICA IDENTITY FULL)
                assert updated["payload"]["body"] == body, model
            else:  # left out, and named
                assert updated["source"]["unchanged"] == ["body"], model
            assert nulled["payload"] == {"id": 1, "body": None, "rev": 3}
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_a_transaction_bigger_than_a_batch_is_handed_over_in_parts(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE bulk (id int PRIMARY KEY)")
    pipeline = Pipeline(isolated_home, pg, "bulk", batch_size=500)
    try:
        await pipeline.start()
        pg.execute("INSERT INTO bulk SELECT generate_series(1, 2200)")
        pg.execute("INSERT INTO bulk VALUES (0)")
        events = await pipeline.wait_events(2201)
        checkpoint = pipeline.home.capture.checkpoint("m")
    finally:
        await pipeline.close()
    big = events[:2200]
    assert [e["rev"].split(":")[1] for e in big] == [str(i) for i in range(2200)]
    assert len({e["rev"].split(":")[0] for e in big}) == 1  # one commit LSN
    last = events[-1]
    # The checkpoint is past the last transaction: its commit's end, beyond its commit LSN.
    assert isinstance(checkpoint, str) and parse_lsn(checkpoint) > parse_lsn(last["source"]["lsn"])


@pytest.mark.asyncio
async def test_a_row_filter_and_a_column_added_while_running(pg: PostgresServer, isolated_home: Path) -> None:
    pg.execute("CREATE TABLE regional (id int PRIMARY KEY, region text)")
    pg.execute("ALTER TABLE regional REPLICA IDENTITY FULL")  # the filter's column is in the identity
    pipeline = Pipeline(isolated_home, pg, "regional", row_filter="region = 'eu'")
    try:
        await pipeline.start()
        pg.execute("INSERT INTO regional VALUES (1, 'eu'), (2, 'us')")
        pg.execute("ALTER TABLE regional ADD COLUMN note text DEFAULT 'n/a'")
        pg.execute("INSERT INTO regional VALUES (3, 'eu', 'added'), (4, 'us', 'skipped')")
        pg.execute("UPDATE regional SET region = 'us' WHERE id = 1")  # leaves the filter: a delete
        events = await pipeline.wait_events(3)
    finally:
        await pipeline.close()
    assert [(e["op"], e["key"], e["payload"]) for e in events] == [
        ("created", "1", {"id": 1, "region": "eu"}),
        ("created", "3", {"id": 3, "region": "eu", "note": "added"}),
        ("deleted", "1", {"id": 1, "region": "eu", "note": "n/a"}),
    ]


@pytest.mark.asyncio
async def test_a_row_filter_outside_the_replica_identity_is_refused_before_it_blocks_updates(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE guarded (id int PRIMARY KEY, region text)")
    pipeline = Pipeline(isolated_home, pg, "guarded", row_filter="region = 'eu' AND id > 0")
    try:
        await pipeline.runtime.start_model("m")
        detail = await pipeline.wait_state(State.ERROR)
    finally:
        await pipeline.close()
    assert detail is not None and "field 'row_filter'" in detail and "uses region," in detail
    publication = pipeline.names("guarded").publication
    assert pg.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", (publication,)) == [(0,)]
    pg.execute("INSERT INTO guarded VALUES (1, 'eu')")
    pg.execute("UPDATE guarded SET region = 'us'")  # the application's writes still go through
