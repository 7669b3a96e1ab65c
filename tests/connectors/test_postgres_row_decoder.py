"""The fast path of inserts and plain updates (row_decoder.py, through
``ChangeBuilder.fast_change``) against the general path it stands in for (``pgoutput.decode``
then ``ChangeBuilder.change``): the same event for any table shape and row, and ``None`` (the
general path takes it) for whatever it does not handle. Real servers' changes go this way in
test_postgres_types.py and the run tests."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventdesk.connectors.postgres.changes import ChangeBuilder
from eventdesk.connectors.postgres.pgoutput import UNCHANGED, Begin, Column, Insert, Relation, Update, decode

# Type OIDs with text in the form PostgreSQL writes it.
TEXTS: dict[int, st.SearchStrategy[str]] = {
    23: st.integers(-(2**31), 2**31 - 1).map(str),  # int4
    20: st.integers(-(2**63), 2**63 - 1).map(str),  # int8
    25: st.text(max_size=30),  # text
    1700: st.one_of(  # numeric
        st.decimals(allow_nan=False, allow_infinity=False, places=4).map(lambda d: f"{d:f}"),
        st.integers(-(10**30), 10**30).map(str),
        st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    ),
    1184: st.sampled_from(  # timestamptz
        [
            "2024-02-29 07:04:56.789012+00",
            "2024-02-29 07:04:56+05:30",
            "infinity",
            "0044-03-15 10:00:00+00 BC",
        ]
    ),
    16: st.sampled_from(["t", "f"]),  # bool
    3802: st.sampled_from(
        ['{"a": [1, 2.5]}', "[]", '"x"', '{"big": 123456789012345678901234567890}']
    ),  # jsonb
    1007: st.sampled_from(["{1,NULL,3}", "{}", "[0:1]={1,2}"]),  # int4[]
}

shapes = st.lists(st.sampled_from(sorted(TEXTS)), min_size=1, max_size=8)


def encode_insert(oid: int, items: list[Any], tag: bytes = b"I", old: bytes = b"") -> bytes:
    """An Insert (or with ``tag`` ``U``, an Update; ``old``: its 'O' or 'K' part) of ``items``."""
    out = tag + struct.pack("!I", oid) + old + b"N" + struct.pack("!h", len(items))
    for item in items:
        if item is None:
            out += b"n"
        elif item is UNCHANGED:
            out += b"u"
        elif isinstance(item, bytes):
            out += b"b" + struct.pack("!i", len(item)) + item
        else:
            raw = item.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def builder_for(types: list[int], keys: int, oid: int = 16400) -> ChangeBuilder:
    names = [f"c{i}" for i in range(len(types))]
    builder = ChangeBuilder(
        datasource="pg", model="m", schema="public", table="t", primary_key=tuple(names[:keys])
    )
    columns = tuple(
        Column(name, oid_, -1, i < keys) for i, (name, oid_) in enumerate(zip(names, types, strict=True))
    )
    builder.relation(Relation(oid, "public", "t", "d", columns))
    builder.begin(Begin(final_lsn=0x151CE58, commit_time=0, xid=7))
    return builder


def reference(builder: ChangeBuilder, data: bytes) -> Any:
    message = decode(data)
    assert isinstance(message, (Insert, Update))
    return builder.change(message)


def fields(event: Any) -> tuple[Any, ...]:
    return (
        event.op,
        event.key,
        event.rev,
        event.seq,
        event.payload,
        event.source,
        event.model,
        event.datasource,
    )


@given(st.data(), st.sampled_from([b"I", b"U"]))
def test_any_insert_or_update_gives_the_general_paths_event(data: st.DataObject, tag: bytes) -> None:
    types = data.draw(shapes)
    keys = data.draw(st.integers(0, min(3, len(types))))
    items = [
        data.draw(st.one_of(st.none(), TEXTS[t])) if i >= keys else data.draw(TEXTS[t])
        for i, t in enumerate(types)
    ]
    message = encode_insert(16400, items, tag)
    fast = builder_for(types, keys).fast_change(message)
    expected = reference(builder_for(types, keys), message)
    assert fast is not None
    assert fields(fast) == fields(expected) and fast.op == ("created" if tag == b"I" else "updated")
    assert type(fast.payload) is dict and [type(v) for v in fast.payload.values()] == [
        type(v) for v in expected.payload.values()
    ]


def test_positions_in_the_transaction_count_on_with_the_general_path() -> None:
    builder = builder_for([23, 25], 1)
    first = builder.fast_change(encode_insert(16400, ["1", "a"]))
    second = reference(builder, encode_insert(16400, ["2", "b"]))
    third = builder.fast_change(encode_insert(16400, ["3", "c"]))
    assert first is not None and third is not None
    assert [first.rev, second.rev, third.rev] == ["0/151CE58:0", "0/151CE58:1", "0/151CE58:2"]


@pytest.mark.parametrize(
    "message",
    [
        encode_insert(16401, ["1", "a"]),  # another table
        encode_insert(16400, ["1"]),  # fewer columns than the Relation said
        encode_insert(16400, ["1", "a", "b"]),  # more
        encode_insert(16400, ["1", UNCHANGED]),  # an unchanged value (never in an insert)
        encode_insert(16400, ["1", b"\x00\x01"]),  # binary (not asked for)
        encode_insert(16400, [None, "a"]),  # a NULL key
        encode_insert(16400, ["1", "a"])[:-1],  # cut short
        encode_insert(16400, ["1", "a"]) + b"x",  # bytes after the row
        encode_insert(16400, ["1", "a"])[:5] + b"K" + encode_insert(16400, ["1", "a"])[6:],  # not 'N'
        encode_insert(16400, ["1", "\u00e9"]).replace(b"\xc3\xa9", b"\xc3("),  # not UTF-8
        b"I\x00\x00",  # no relation
        encode_insert(16400, ["1", "b"], b"U", b"K" + encode_insert(16400, ["1", None])[6:]),  # key changed
        encode_insert(16400, ["1", "b"], b"U", b"O" + encode_insert(16400, ["1", "a"])[6:]),  # old row
        encode_insert(16400, ["1", UNCHANGED], b"U"),  # an unchanged TOASTed value
    ],
)
def test_what_the_fast_path_leaves_to_the_general_path(message: bytes) -> None:
    builder = builder_for([23, 25], 1)
    assert builder.fast_change(message) is None
    assert builder.position == 0  # nothing counted: the general path numbers it
    if message[:1] == b"U":  # well-formed updates the general path takes
        event = reference(builder, message)
        assert event is not None and event.op == "updated"
