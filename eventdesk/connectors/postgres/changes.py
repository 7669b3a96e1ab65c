"""One table's decoded pgoutput messages turned into events.

An event of the ``postgres`` kind:

- ``op``: ``created`` (INSERT, and a row of the ``--since 0`` snapshot), ``updated``,
  ``deleted``, ``truncated`` (TRUNCATE: ``key`` is the table's ``schema.table``).
- ``key``: the primary key's values as text; with one key column, its text (``42``); with
  several, a JSON array of their texts (``["eu","42"]``). A table without a primary key
  (followed with ``REPLICA IDENTITY FULL``) has the whole row's texts as its key.
- ``payload``: the row as JSON (values.py): the new row for an insert or update, the old row
  for a delete (only its key columns unless the table has ``REPLICA IDENTITY FULL``).
- ``rev`` and ``seq``: ``<commit LSN>:<position in the transaction>`` (``0/1519F58:3``): the
  same change read again has the same ``(key, rev)``, so the capture stores it once.
- ``source``: ``connector``, ``schema``, ``table``, ``lsn`` (the commit's), ``xid``; for an
  update, ``old`` (the old row, with ``REPLICA IDENTITY FULL``) or ``old_key`` (when the key
  changed); ``unchanged``: the columns whose TOASTed value the update did not touch and that
  the server did not send (they are left out of ``payload``, never reported as null).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from eventdesk.connectors.postgres.pgoutput import (
    UNCHANGED,
    Begin,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    Value,
    format_lsn,
)
from eventdesk.connectors.postgres.row_decoder import RowDecoder
from eventdesk.connectors.postgres.values import Convert, converter
from eventdesk.core.envelope import Event, Op, new_event_ids, utc_now_iso

TRUNCATED: Op = "truncated"


def stamp(events: list[Event]) -> None:
    """Give events made without them their ids and arrival time, for a whole batch at once: an
    id each would take the id factory's lock, and about once a millisecond ``os.urandom``,
    which lets the capture thread take the GIL for up to a switch interval (5 ms)."""
    now = utc_now_iso()
    for event, event_id in zip(events, new_event_ids(len(events)), strict=True):
        event.id = event_id
        event.received_at = now


class TableShape:
    """What a Relation message says about the table, made ready for building rows."""

    __slots__ = ("converters", "key_index", "names", "qualified")

    def __init__(self, relation: Relation, primary_key: Sequence[str]) -> None:
        self.names = tuple(c.name for c in relation.columns)
        self.converters: tuple[Convert, ...] = tuple(converter(c.type_oid) for c in relation.columns)
        index = {name: i for i, name in enumerate(self.names)}
        wanted = [index[name] for name in primary_key if name in index]
        if not wanted:  # no primary key known: the replica identity's columns
            wanted = [i for i, c in enumerate(relation.columns) if c.key]
        self.key_index = tuple(wanted)
        self.qualified = f"{relation.namespace or 'pg_catalog'}.{relation.name}"

    def row(
        self, values: tuple[Value, ...], old: tuple[Value, ...] | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """The row as JSON values, and the names of the unchanged TOASTed columns left out.

        An unchanged column takes its value from ``old`` (the old row, with REPLICA IDENTITY
        FULL) when that has it."""
        row: dict[str, Any] = {}
        unchanged: list[str] = []
        for i, (name, convert, value) in enumerate(zip(self.names, self.converters, values, strict=False)):
            if value is None:
                row[name] = None
            elif type(value) is str:
                row[name] = convert(value)
            elif value is UNCHANGED:
                before = old[i] if old is not None and i < len(old) else UNCHANGED
                if type(before) is str:
                    row[name] = convert(before)
                elif before is None:
                    row[name] = None
                else:
                    unchanged.append(name)
            else:  # binary: not asked for; keep it readable rather than guess
                row[name] = bytes(cast(bytes, value)).hex()
        return row, unchanged

    def key(self, values: tuple[Value, ...]) -> str:
        parts = [values[i] for i in self.key_index if i < len(values)]
        texts = [p if type(p) is str else None for p in parts]
        if len(texts) == 1 and texts[0] is not None:
            return texts[0]
        return json.dumps(texts, ensure_ascii=False, separators=(",", ":"))


class ChangeBuilder:
    """Turns one table's messages, in stream order, into events (see the module docstring)."""

    def __init__(
        self, *, datasource: str, model: str, schema: str, table: str, primary_key: Sequence[str]
    ) -> None:
        self.datasource = datasource
        self.model = model
        self.schema = schema
        self.table = table
        self.primary_key = tuple(primary_key)
        self.shapes: dict[int, TableShape] = {}
        self.rows: dict[int, RowDecoder] = {}  # the fast path of each table's inserts and updates
        self.txn_lsn = "0/0"
        self.xid = 0
        self.position = 0
        self.txn_source: dict[str, Any] = self._source()  # shared by the transaction's inserts

    def relation(self, message: Relation) -> None:
        shape = self.shapes[message.oid] = TableShape(message, self.primary_key)
        self.rows[message.oid] = RowDecoder(shape.names, shape.converters, shape.key_index)

    def begin(self, message: Begin) -> None:
        self.txn_lsn = format_lsn(message.final_lsn)
        self.xid = message.xid
        self.position = 0
        self.txn_source = self._source()

    def fast_change(self, data: bytes) -> Event | None:
        """The event of an Insert or Update message (``data``, its first byte ``I`` or ``U``) by
        the fast path (row_decoder.py); None when that cannot take it: :meth:`change` on the
        decoded message then does.

        The transaction's events made here share one ``source`` dict (nothing changes an
        event's source once made; an update's own keys, ``old`` and the like, come only by
        the general path)."""
        decoder = self.rows.get(int.from_bytes(data[1:5], "big"))
        found = decoder.decode(data) if decoder is not None else None
        if found is None:
            return None
        rev = f"{self.txn_lsn}:{self.position}"
        self.position += 1
        op: Op = "created" if data[0] == 0x49 else "updated"
        # Positional: Event's fields in order (datasource, model, op, key, rev, seq, payload,
        # source, id, received_at); stamp() gives the batch its ids and time.
        return Event(self.datasource, self.model, op, found[0], rev, rev, found[1], self.txn_source, "", "")

    def _source(self) -> dict[str, Any]:
        return {
            "connector": "postgres",
            "schema": self.schema,
            "table": self.table,
            "lsn": self.txn_lsn,
            "xid": self.xid,
        }

    def _event(self, op: Op, key: str, payload: Any, source: dict[str, Any]) -> Event:
        rev = f"{self.txn_lsn}:{self.position}"
        self.position += 1
        return Event(
            datasource=self.datasource,
            model=self.model,
            op=op,
            key=key,
            rev=rev,
            seq=rev,
            payload=payload,
            source=source,
            id="",  # stamp() gives the batch its ids and time
            received_at="",
        )

    def change(self, message: Insert | Update | Delete | Truncate) -> Event | None:
        """The event of one change of this table (None for another table's)."""
        if isinstance(message, Truncate):
            mine = [oid for oid in message.relations if oid in self.shapes]
            if not mine:
                return None
            source = self._source()
            payload = {"cascade": message.cascade, "restart_identity": message.restart_identity}
            return self._event(TRUNCATED, f"{self.schema}.{self.table}", payload, source)
        shape = self.shapes.get(message.relation)
        if shape is None:
            return None
        source = self._source()
        if isinstance(message, Insert):
            row, _ = shape.row(message.new)
            return self._event("created", shape.key(message.new), row, source)
        if isinstance(message, Update):
            row, unchanged = shape.row(message.new, message.old)
            if message.old is not None:
                source["old"], _ = shape.row(message.old)
            if message.old_key is not None:
                source["old_key"] = shape.key(message.old_key)
            if unchanged:
                source["unchanged"] = unchanged
            return self._event("updated", shape.key(message.new), row, source)
        old = message.old if message.old is not None else message.old_key
        assert old is not None
        row, _ = shape.row(old)
        if message.old is None:  # only the key columns were sent: leave the others out
            row = {shape.names[i]: row[shape.names[i]] for i in shape.key_index}
        return self._event("deleted", shape.key(old), row, source)

    def snapshot_event(self, texts: Sequence[str | None], lsn: str, shape: TableShape) -> Event:
        """A row copied by the ``--since 0`` snapshot, as a ``created`` event."""
        values: tuple[Value, ...] = tuple(texts)
        row, _ = shape.row(values)
        return Event(
            datasource=self.datasource,
            model=self.model,
            op="created",
            key=shape.key(values),
            rev=f"{lsn}:snapshot",
            seq=f"{lsn}:snapshot",
            payload=row,
            source={"connector": "postgres", "schema": self.schema, "table": self.table, "snapshot": True},
            id="",  # stamp() gives the batch its ids and time
            received_at="",
        )
