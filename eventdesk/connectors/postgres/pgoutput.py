"""A decoder of the ``pgoutput`` plugin's messages (logical replication protocol version 1).

Pure: bytes in, message objects out; no connection, no state beyond what a message holds.
The replication stream (replication.py) feeds it the payload of each XLogData message; the
formats are PostgreSQL's "Logical Replication Message Formats". Column values stay as the
server sent them (text; turning them into JSON values is values.py's): ``None`` for NULL and
:data:`UNCHANGED` for a TOASTed value the update did not touch, which is *not* a NULL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "Message",
    "Origin",
    "PgOutputError",
    "Relation",
    "Truncate",
    "TypeInfo",
    "Update",
    "decode",
    "format_lsn",
    "parse_lsn",
]


class _Unchanged:
    """The marker of an unchanged TOASTed column ('u'): its value was not sent."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

Value = str | bytes | None | _Unchanged
"""A column value: text ('t'), binary ('b', only if asked for), NULL, or UNCHANGED."""


class PgOutputError(ValueError):
    """A message this decoder does not understand (truncated, or of an unknown type)."""


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    if not _ or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # the LSN of the transaction's commit record
    commit_time: int  # microseconds since 2000-01-01 UTC
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # the end of the commit record: confirming it skips the transaction on restart
    commit_time: int


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    key: bool  # part of the replica identity (the primary key by default)


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    namespace: str  # empty for pg_catalog
    name: str
    replica_identity: str  # 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation: int
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Update:
    relation: int
    new: tuple[Value, ...]
    old: tuple[Value, ...] | None  # the whole old row ('O', REPLICA IDENTITY FULL) or None
    old_key: tuple[Value, ...] | None  # the old key ('K': the key changed), other columns None


@dataclass(frozen=True, slots=True)
class Delete:
    relation: int
    old: tuple[Value, ...] | None  # 'O': the whole old row
    old_key: tuple[Value, ...] | None  # 'K': the key columns (the others None)


@dataclass(frozen=True, slots=True)
class Truncate:
    relations: tuple[int, ...]
    cascade: bool
    restart_identity: bool


Message = Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate

_U8 = struct.Struct("!B")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_REL_HEAD = struct.Struct("!I")


class _Reader:
    """A cursor over one message's bytes."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: struct.Struct) -> tuple[int, ...]:
        try:
            values = fmt.unpack_from(self.data, self.pos)
        except struct.error:
            raise PgOutputError(f"message cut short at byte {self.pos}") from None
        self.pos += fmt.size
        return values

    def byte(self) -> str:
        if self.pos >= len(self.data):
            raise PgOutputError(f"message cut short at byte {self.pos}")
        value = chr(self.data[self.pos])
        self.pos += 1
        return value

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgOutputError(f"unterminated string at byte {self.pos}")
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return text

    def tuple_data(self) -> tuple[Value, ...]:
        data = self.data
        (count,) = self.take(_I16)
        values: list[Value] = []
        append = values.append
        pos = self.pos
        unpack = _I32.unpack_from
        try:
            for _ in range(count):
                kind = data[pos]
                pos += 1
                if kind == 0x74:  # 't': text
                    (length,) = unpack(data, pos)
                    pos += 4
                    end = pos + length
                    if end > len(data):
                        raise PgOutputError(f"column value cut short at byte {pos}")
                    append(data[pos:end].decode("utf-8"))
                    pos = end
                elif kind == 0x6E:  # 'n': NULL
                    append(None)
                elif kind == 0x75:  # 'u': unchanged TOASTed value, not sent
                    append(UNCHANGED)
                elif kind == 0x62:  # 'b': binary (only with the binary option)
                    (length,) = unpack(data, pos)
                    pos += 4
                    append(bytes(data[pos : pos + length]))
                    pos += length
                else:
                    raise PgOutputError(f"unknown column kind {chr(kind)!r} at byte {pos - 1}")
        except (IndexError, struct.error):
            raise PgOutputError(f"tuple data cut short at byte {pos}") from None
        self.pos = pos
        return tuple(values)


def decode(data: bytes) -> Message:
    """One pgoutput message (an XLogData payload) as a message object."""
    if not data:
        raise PgOutputError("empty message")
    r = _Reader(data)
    tag = r.byte()
    if tag == "I":
        (rel,) = r.take(_U32)
        if r.byte() != "N":
            raise PgOutputError("Insert without a new tuple")
        return Insert(rel, r.tuple_data())
    if tag == "U":
        (rel,) = r.take(_U32)
        kind = r.byte()
        old = old_key = None
        if kind == "O":
            old = r.tuple_data()
            kind = r.byte()
        elif kind == "K":
            old_key = r.tuple_data()
            kind = r.byte()
        if kind != "N":
            raise PgOutputError(f"Update without a new tuple (found {kind!r})")
        return Update(rel, r.tuple_data(), old, old_key)
    if tag == "D":
        (rel,) = r.take(_U32)
        kind = r.byte()
        if kind not in ("O", "K"):
            raise PgOutputError(f"Delete without an old tuple (found {kind!r})")
        values = r.tuple_data()
        return Delete(rel, values if kind == "O" else None, values if kind == "K" else None)
    if tag == "B":
        final_lsn, commit_time, xid = r.take(_BEGIN)
        return Begin(final_lsn, commit_time, xid)
    if tag == "C":
        flags, commit_lsn, end_lsn, commit_time = r.take(_COMMIT)
        return Commit(flags, commit_lsn, end_lsn, commit_time)
    if tag == "R":
        (oid,) = r.take(_REL_HEAD)
        namespace = r.string()
        name = r.string()
        identity = r.byte()
        (count,) = r.take(_I16)
        columns = []
        for _ in range(count):
            (flags,) = r.take(_U8)
            col_name = r.string()
            type_oid, modifier = r.take(struct.Struct("!Ii"))
            columns.append(Column(col_name, type_oid, modifier, bool(flags & 1)))
        return Relation(oid, namespace, name, identity, tuple(columns))
    if tag == "T":
        count, options = r.take(struct.Struct("!IB"))
        relations = r.take(struct.Struct(f"!{count}I"))
        return Truncate(tuple(relations), bool(options & 1), bool(options & 2))
    if tag == "Y":
        (oid,) = r.take(_U32)
        return TypeInfo(oid, r.string(), r.string())
    if tag == "O":
        (commit_lsn,) = r.take(struct.Struct("!Q"))
        return Origin(commit_lsn, r.string())
    raise PgOutputError(f"unknown message type {tag!r}")
