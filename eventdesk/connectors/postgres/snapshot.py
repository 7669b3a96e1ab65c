"""``--since 0``: the table's rows as they were when the model's slot was created.

Creating the slot exports a snapshot; a second connection reads the table in it (``SET
TRANSACTION SNAPSHOT``) through a server-side cursor, one page at a time, so a big table never
sits in memory. Every row becomes a ``created`` event marked ``source.snapshot``; the stream
then starts at the slot's consistent point, so each row is either in the snapshot or a change
after it, never both and never neither. Pages before the last carry the checkpoint ``"0"``:
a run stopped during the copy starts it over (with a new slot) rather than skipping rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from eventdesk.connectors.postgres import replication, server
from eventdesk.connectors.postgres.changes import ChangeBuilder, TableShape, stamp
from eventdesk.connectors.postgres.pgoutput import Column, Relation
from eventdesk.connectors.postgres.settings import quote_ident, table_sql
from eventdesk.core.envelope import Event

MAX_IN_FLIGHT = 2


def table_relation(cur: Any, schema: str, table: str, primary_key: tuple[str, ...]) -> Relation:
    """The table's columns as a Relation message would describe them."""
    cur.execute(
        "SELECT c.oid, a.attname, a.atttypid, a.atttypmod FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attnum",
        (schema, table),
    )
    rows = cur.fetchall()
    columns = tuple(Column(name, int(oid), int(mod), name in primary_key) for _, name, oid, mod in rows)
    return Relation(int(rows[0][0]) if rows else 0, schema, table, "d", columns)


def copy_snapshot(
    *,
    args: dict[str, Any],
    target: server.Target,
    snapshot: str,
    lsn: str,
    builder: ChangeBuilder,
    deliver: Callable[[list[Event], Any], Future[None]],
    stop: threading.Event,
    page_size: int,
    progress: Callable[[str], None],
) -> int:
    """Copy the table from ``snapshot`` as events; the last batch's checkpoint is ``lsn``.
    Returns the number of rows copied."""
    conn = server.connect(args)
    conn.autocommit = False
    in_flight: list[Future[None]] = []
    copied = 0
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            relation = table_relation(cur, target.schema, target.table, builder.primary_key)
        shape = TableShape(relation, builder.primary_key)
        names = [c.name for c in relation.columns]
        select_list = ", ".join(f"{quote_ident(name)}::text" for name in names) or "1"
        where = f" WHERE ({target.row_filter})" if target.row_filter else ""
        with conn.cursor(name="eventdesk_snapshot") as cur:
            cur.itersize = page_size
            # Names are quoted identifiers; the row filter is the user's own SQL condition, run with
            # their own privileges (as in the publication's WHERE).
            query = f"SELECT {select_list} FROM {table_sql(target.schema, target.table)}{where}"  # noqa: S608
            cur.execute(query)
            while True:
                if stop.is_set():
                    raise replication.StopRequestedError
                rows = cur.fetchmany(page_size)
                events = [builder.snapshot_event(row, lsn, shape) for row in rows]
                stamp(events)
                last = len(rows) < page_size
                while len(in_flight) >= MAX_IN_FLIGHT:
                    in_flight.pop(0).result()
                in_flight.append(deliver(events, lsn if last else "0"))
                copied += len(rows)
                progress(f"copying {target.schema}.{target.table}: {copied} rows")
                if last:
                    break
        conn.rollback()
        for future in in_flight:
            future.result()
    finally:
        conn.close()
    return copied
