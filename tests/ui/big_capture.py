"""A large capture made fast, for the virtual-table tests and the history benchmark:
``fill_capture(path, 1_000_000)`` takes seconds (SQLite makes the rows itself, in one
``INSERT … SELECT`` over a counter; the indexes are built once, after).

Event ``n`` (position ``n + 1``) belongs to model ``orders`` or ``accounts`` by turns of
:data:`RUN` events, is ``updated`` when ``n % 4 == 0`` (else ``created``), is received ``n``
milliseconds after :data:`START`, and carries the word ``needle`` when ``n % RARE == 0``. Its
envelope is byte for byte what the capture writes (compact JSON, the envelope's key order), so
filters see exactly what they would see live.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventdesk.core.capture import Capture

BIG = 1_000_000
MODELS = ("orders", "accounts")
RUN = 10_000  # events of one model in a row
RARE = 10_000  # one event in RARE carries the rare word
START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)

_ROWS = """
INSERT INTO events (pos, id, received_at, datasource, model, op, key, rev, envelope)
WITH RECURSIVE c(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM c WHERE n + 1 < :count),
r AS (
  SELECT n, 'id-' || n AS id,
    strftime('%Y-%m-%dT%H:%M:%fZ', :start + n / 1000.0, 'unixepoch') AS at,
    CASE (n / :run) % 2 WHEN 0 THEN 'orders' ELSE 'accounts' END AS model,
    CASE WHEN n % 4 THEN 'created' ELSE 'updated' END AS op,
    printf('doc-%06d', n % 100000) AS key, n || '-h' AS rev
  FROM c)
SELECT n + 1, id, at, 'couch', model, op, key, rev, CAST(json_object(
  'id', id, 'received_at', at, 'datasource', 'couch', 'model', model, 'op', op, 'key', key,
  'rev', rev, 'seq', n || '-s',
  'payload', json_object('n', n, 'region', CASE WHEN n % 2 THEN 'Bangalore' ELSE 'Pune' END,
                         'note', CASE WHEN n % :rare = 0 THEN 'needle' ELSE 'hay' END,
                         'pad', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'),
  'source', json_object()) AS BLOB)
FROM r
"""


def model_of(n: int) -> str:
    return MODELS[(n // RUN) % len(MODELS)]


def received_at(n: int) -> str:
    """Event ``n``'s ``received_at`` (as envelopes carry it: ISO 8601 UTC with milliseconds)."""
    return (START + timedelta(milliseconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fill_capture(path: Path, count: int) -> None:
    """Make the capture at ``path`` (or extend it) to hold events ``0 .. count - 1``."""
    Capture(path).close()  # the schema, as the app makes it
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        (have,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
        if have >= count:
            return
        indexes = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
        ).fetchall()
        db.execute("BEGIN")
        for (sql,) in indexes:  # one build after the rows is much faster than 1M updates
            name = sql.split(" ON ")[0].split()[-1]
            db.execute(f"DROP INDEX {name}")
        db.execute(
            _ROWS,
            {"first": have, "count": count, "start": START.timestamp(), "run": RUN, "rare": RARE},
        )
        for (sql,) in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


@pytest.fixture(scope="session")
def big_capture_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capture of :data:`BIG` events, made once per test session (a few seconds)."""
    path = tmp_path_factory.mktemp("big") / "capture.sqlite3"
    fill_capture(path, BIG)
    return path
