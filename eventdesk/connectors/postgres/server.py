"""What a model needs from the server outside the replication stream: connections, the checks
that name what is missing (wal_level, the table, its primary key, a free slot, the right to
create the publication), the model's publication and slot, and the tables one can follow.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras

from eventdesk.connectors.postgres.settings import ObjectNames, quote_ident, table_sql
from eventdesk.connectors.postgres.values import SESSION_OPTIONS
from eventdesk.core.errors import ConnectorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableInfo:
    """What the server says about the model's table (and itself)."""

    oid: int
    primary_key: tuple[str, ...]
    replica_identity: str  # 'd', 'n', 'f', 'i'
    server_version: int
    wal_sender_timeout_ms: int


@dataclass(frozen=True)
class Target:
    """Who and what one session follows (labels for messages, names on the server)."""

    datasource: str  # label: datasource 'pg'
    model: str  # label: model 'orders'
    where: str  # HOST:PORT/DATABASE
    schema: str
    table: str
    names: ObjectNames
    row_filter: str


def connect(args: dict[str, Any], *, replication: bool = False) -> Any:
    """A psycopg2 connection (autocommit) in the session EventDesk's conversions expect."""
    factory = psycopg2.extras.LogicalReplicationConnection if replication else None
    conn = psycopg2.connect(**args, options=SESSION_OPTIONS, connection_factory=factory)
    if not replication:
        conn.autocommit = True
    return conn


def inspect(conn: Any, target: Target) -> TableInfo:
    """Check what logical replication of the table needs; raise a terminal ConnectorError
    naming what is missing."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('wal_level'), current_setting('server_version_num')::int")
        wal_level, version = cur.fetchone()
        if wal_level != "logical":
            raise ConnectorError(
                f"the server's wal_level is {wal_level!r}, not 'logical': set wal_level = logical in "
                "postgresql.conf and restart the server",
                obj=target.datasource,
                terminal=True,
            )
        cur.execute(
            "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (target.schema, target.table),
        )
        found = cur.fetchone()
        if found is None:
            raise ConnectorError(
                f"no table {target.schema}.{target.table} in {target.where}",
                obj=target.model,
                field="table",
                terminal=True,
            )
        oid, identity = found
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) "
            "WHERE i.indrelid = %s AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (oid,),
        )
        primary_key = tuple(row[0] for row in cur.fetchall())
        if not primary_key and identity != "f":
            raise ConnectorError(
                f"table {target.schema}.{target.table} has no primary key, so its updates and deletes "
                "cannot be told apart: add one, or run ALTER TABLE "
                f"{table_sql(target.schema, target.table)} REPLICA IDENTITY FULL",
                obj=target.model,
                field="table",
                terminal=True,
            )
        if target.row_filter:
            check_row_filter(cur, target, oid, identity, version)
        cur.execute("SELECT setting::int FROM pg_settings WHERE name = 'wal_sender_timeout'")
        row = cur.fetchone()
        timeout_ms = int(row[0]) if row else 60000
    return TableInfo(int(oid), primary_key, str(identity), int(version), timeout_ms)


_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")


def check_row_filter(cur: Any, target: Target, oid: int, identity: str, version: int) -> None:
    """A row filter needs PostgreSQL 15, and may use only the replica identity's columns: with
    any other column in it, the server refuses every UPDATE and DELETE on the table, the
    application's included. Columns are found by name in the filter's text (string literals
    aside): a column named in a comment would be refused too, which errs on the safe side."""
    if version < 150000:
        raise ConnectorError(
            "row filters need PostgreSQL 15 or later (publication WHERE clauses)",
            obj=target.model,
            field="row_filter",
            terminal=True,
        )
    if identity == "f":
        return  # REPLICA IDENTITY FULL: every column is in the identity
    cur.execute(
        "SELECT a.attname, a.attnum = ANY(COALESCE(("
        "  SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = a.attrelid "
        "  AND ((%s = 'd' AND i.indisprimary) OR (%s = 'i' AND i.indisreplident))), '{}')) "
        "FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (identity, identity, oid),
    )
    text = _STRING_LITERAL.sub("''", target.row_filter)
    folded = text.lower()  # unquoted names are folded to lower case

    def named(column: str) -> bool:
        if f'"{column}"' in text:
            return True
        bare = re.search(rf'(?<![\w$"]){re.escape(column)}(?![\w$"])', folded)
        return column == column.lower() and bare is not None

    outside = [name for name, in_identity in cur.fetchall() if not in_identity and named(name)]
    if outside:
        raise ConnectorError(
            f"the row filter uses {', '.join(outside)}, not part of the table's replica identity: "
            "PostgreSQL would then refuse every UPDATE and DELETE on the table. Filter on key "
            f"columns only, or run ALTER TABLE {table_sql(target.schema, target.table)} REPLICA IDENTITY FULL",
            obj=target.model,
            field="row_filter",
            terminal=True,
        )


def covers(target: Target) -> str:
    """What the model's publication is to publish, as its comment records it."""
    where = f" WHERE {target.row_filter}" if target.row_filter else ""
    return f"{target.schema}.{target.table}{where}"


def publication_covers(conn: Any, target: Target) -> str | None:
    """What the model's existing publication publishes (its comment, or for one made without
    it, its tables); None if there is no such publication."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
            (target.names.publication,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        if row[0]:
            return str(row[0])
        cur.execute(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1",
            (target.names.publication,),
        )
        return ", ".join(r[0] for r in cur.fetchall())


def ensure_publication(conn: Any, target: Target) -> bool:
    """Create the model's publication if it is missing; True if it was created."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (target.names.publication,))
        if cur.fetchone() is not None:
            return False
        where = f" WHERE ({target.row_filter})" if target.row_filter else ""
        name = quote_ident(target.names.publication)
        cur.execute(f"CREATE PUBLICATION {name} FOR TABLE {table_sql(target.schema, target.table)}{where}")
        cur.execute(f"COMMENT ON PUBLICATION {name} IS %s", (covers(target),))
        log.info("%s: created publication %s", target.model, target.names.publication)
        return True


def other_slots(conn: Any, target: Target) -> list[str]:
    """Other slots of this workspace's models of this name (``eventdesk_<model>_<workspace>_``
    and another hash: another table), each with what its publication publishes, as
    ``name (public.t)``."""
    prefix = target.names.slot.rsplit("_", 1)[0] + "_"
    with conn.cursor() as cur:
        cur.execute(
            "SELECT s.slot_name, obj_description(p.oid, 'pg_publication') FROM pg_replication_slots s "
            "LEFT JOIN pg_publication p ON p.pubname = s.slot_name "
            "WHERE left(s.slot_name, length(%s)) = %s AND s.slot_name <> %s ORDER BY 1",
            (prefix, prefix, target.names.slot),
        )
        rows = cur.fetchall()
    return [
        f"{name} ({covered})" if covered else str(name)
        for name, covered in rows
        if re.fullmatch("[0-9a-f]{8}", name[len(prefix) :])  # not a longer model name's
    ]


def check_can_create(conn: Any, target: Target, slot_exists: bool) -> None:
    """What creating the model's slot and publication would run into, named before it does:
    no free replication slot, or a user who may not create the publication (it must own the
    table and have CREATE on the database, or be a superuser)."""
    with conn.cursor() as cur:
        if not slot_exists:
            cur.execute(
                "SELECT count(*), current_setting('max_replication_slots')::int FROM pg_replication_slots"
            )
            used, most = cur.fetchone()
            if used >= most:
                raise ConnectorError(
                    f"the server's replication slots are all in use ({used} of max_replication_slots "
                    f"{most}): drop an unused slot or raise max_replication_slots, so that "
                    f"{target.names.slot} can be created",
                    obj=target.datasource,
                    terminal=True,
                )
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (target.names.publication,))
        if cur.fetchone() is not None:
            return
        cur.execute(
            "SELECT r.rolsuper, pg_has_role(current_user, c.relowner, 'USAGE'), "
            "has_database_privilege(current_database(), 'CREATE') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r "
            "WHERE n.nspname = %s AND c.relname = %s AND r.rolname = current_user",
            (target.schema, target.table),
        )
        row = cur.fetchone()
        if row is not None and not row[0] and not (row[1] and row[2]):
            missing = " and ".join(
                what
                for what, has in (
                    (f"own {target.schema}.{target.table}", row[1]),
                    ("have CREATE on the database", row[2]),
                )
                if not has
            )
            raise ConnectorError(
                f"the user may not create the publication: it must {missing} (or an administrator runs "
                f"CREATE PUBLICATION {quote_ident(target.names.publication)} "
                f"FOR TABLE {table_sql(target.schema, target.table)})",
                obj=target.model,
                field="table",
                terminal=True,
            )


def slot_position(conn: Any, slot: str) -> str | None:
    """The slot's confirmed flush LSN ("" if it has none yet), None if there is no such slot."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        row = cur.fetchone()
    return None if row is None else str(row[0] or "")


def list_tables(conn: Any) -> list[str]:
    """``schema.table`` of the tables (plain and partitioned) outside the system schemas."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
            "AND i.indisprimary) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' "
            "AND has_table_privilege(c.oid, 'SELECT') ORDER BY 1, 2"
        )
        return [
            f"{schema}.{name}" + ("" if keyed else " (no primary key)")
            for schema, name, keyed in cur.fetchall()
        ]


def drop_slot(conn: Any, slot: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def drop_objects(conn: Any, target: Target) -> list[str]:
    """Drop the model's slot and publication (those that exist); what was dropped, named. A slot
    in use (a run still follows it) is refused by the server (object in use)."""
    return drop_named(conn, target.names.slot, target.names.publication)


def drop_named(conn: Any, slot: str, publication: str) -> list[str]:
    """Drop the slot ``slot`` and the publication ``publication`` (those that exist); what was
    dropped, named."""
    dropped = []
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        if cur.fetchone() is not None:
            drop_slot(conn, slot)
            dropped.append(f"replication slot {slot}")
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
        if cur.fetchone() is not None:
            cur.execute(f"DROP PUBLICATION {quote_ident(publication)}")
            dropped.append(f"publication {publication}")
    return dropped
