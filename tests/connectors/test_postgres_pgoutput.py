"""The pure parts of the postgres kind: the pgoutput decoder (on bytes captured from a real
PostgreSQL 15 server), the conversion of column text into JSON values, and the events made of
decoded messages (an unchanged TOASTed column is never a null); then the same on what a real
server writes for generated values (read through ``pg_logical_slot_get_binary_changes``)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventdesk.connectors.postgres import values
from eventdesk.connectors.postgres.changes import ChangeBuilder
from eventdesk.connectors.postgres.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    Origin,
    PgOutputError,
    Relation,
    Truncate,
    TypeInfo,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)
from eventdesk.connectors.postgres.settings import object_names, split_table
from tests.peers.postgres_server import PostgresServer, running_postgres

# Captured from PostgreSQL 15 (publication on t(id int primary key, big text, m mood, n numeric)
# and f(id int, v text) with REPLICA IDENTITY FULL; mood an enum). Comments: the SQL behind each.
CAPTURED = {
    "begin": "42000000000151ce58000304efbbf1eee9000002dc",
    "commit": "4300000000000151ce58000000000151ce88000304efbbf1eee9",
    "type": "59000040027075626c6963006d6f6f6400",
    "relation_t": "52000040077075626c69630074006400040169640000000017ffffffff006269670000000019ffffffff"
    "006d0000004002ffffffff006e00000006a4ffffffff",
    "relation_f": "520000400e7075626c69630066006600020169640000000017ffffffff01760000000019ffffffff",
    # insert into t values (5, 'o', NULL, NULL)
    "insert": "49000040074e000474000000013574000000016f6e6e",
    # update t set n = 2 where id = 1 (big is TOASTed and untouched)
    "update_toast": "55000040074e00047400000001317574000000056861707079740000000132",
    # update t set id = 2 where id = 1 (the key changed: 'K' old key)
    "update_key": "55000040074b00047400000001316e6e6e4e00047400000001327574000000056861707079740000000132",
    # update f set v = 'b' (REPLICA IDENTITY FULL: 'O' old row)
    "update_full": "550000400e4f00027400000001317400000001614e0002740000000131740000000162",
    "delete_key": "44000040074b00047400000001326e6e6e",
    "delete_full": "440000400e4f0002740000000131740000000162",
    # truncate t, f restart identity cascade
    "truncate": "540000000203000040070000400e",
    "origin": "4f0000000000abcdef757073747265616d00",
}


def captured(name: str) -> bytes:
    return bytes.fromhex(CAPTURED[name])


def test_transaction_frame_messages() -> None:
    begin = decode(captured("begin"))
    assert begin == Begin(final_lsn=0x151CE58, commit_time=begin.commit_time, xid=0x2DC)
    commit = decode(captured("commit"))
    assert isinstance(commit, Commit)
    assert (commit.commit_lsn, commit.end_lsn) == (0x151CE58, 0x151CE88)
    assert commit.commit_time == begin.commit_time
    assert decode(captured("origin")) == Origin(commit_lsn=0xABCDEF, name="upstream")
    assert decode(captured("type")) == TypeInfo(oid=0x4002, namespace="public", name="mood")


def test_relation_messages() -> None:
    t = decode(captured("relation_t"))
    assert t == Relation(
        oid=0x4007,
        namespace="public",
        name="t",
        replica_identity="d",
        columns=(
            Column("id", 23, -1, True),
            Column("big", 25, -1, False),
            Column("m", 0x4002, -1, False),
            Column("n", 1700, -1, False),
        ),
    )
    f = decode(captured("relation_f"))
    assert isinstance(f, Relation) and f.replica_identity == "f"
    assert [c.key for c in f.columns] == [True, True]  # FULL: every column identifies the row


def test_row_messages() -> None:
    assert decode(captured("insert")) == Insert(0x4007, ("5", "o", None, None))
    assert decode(captured("update_toast")) == Update(0x4007, ("1", UNCHANGED, "happy", "2"), None, None)
    assert decode(captured("update_key")) == Update(
        0x4007, ("2", UNCHANGED, "happy", "2"), old=None, old_key=("1", None, None, None)
    )
    assert decode(captured("update_full")) == Update(0x400E, ("1", "b"), old=("1", "a"), old_key=None)
    assert decode(captured("delete_key")) == Delete(0x4007, old=None, old_key=("2", None, None, None))
    assert decode(captured("delete_full")) == Delete(0x400E, old=("1", "b"), old_key=None)
    assert decode(captured("truncate")) == Truncate((0x4007, 0x400E), cascade=True, restart_identity=True)


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_every_cut_short_message_is_a_pgoutput_error(name: str) -> None:
    data = captured(name)
    for end in range(len(data)):
        if name in ("origin", "type", "relation_t", "relation_f") and end == len(data) - 1:
            continue  # only the final NUL is missing... which the decoder must notice too
        with pytest.raises(PgOutputError):
            decode(data[:end])


def test_unknown_message_and_column_kinds_are_refused() -> None:
    with pytest.raises(PgOutputError, match="unknown message type"):
        decode(b"Z\x00")
    with pytest.raises(PgOutputError, match="unknown column kind"):
        decode(b"I\x00\x00\x40\x07N\x00\x01x")


def encode_tuple(items: list[str | object | None]) -> bytes:
    out = struct.pack("!h", len(items))
    for item in items:
        if item is None:
            out += b"n"
        elif item is UNCHANGED:
            out += b"u"
        else:
            raw = str(item).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


value_st = st.one_of(st.none(), st.just(UNCHANGED), st.text(max_size=40))


@given(st.integers(0, 2**32 - 1), st.lists(value_st, max_size=12))
def test_any_insert_decodes_to_what_was_encoded(relation: int, items: list[Any]) -> None:
    message = decode(b"I" + struct.pack("!I", relation) + b"N" + encode_tuple(items))
    assert message == Insert(relation, tuple(items))


@given(st.integers(0, 2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


# -- values -----------------------------------------------------------------------------------


def pg_array_literal(value: Any) -> str:
    """What PostgreSQL's array_out writes for nested lists of texts/None."""
    if isinstance(value, list):
        return "{" + ",".join(pg_array_literal(v) for v in value) + "}"
    if value is None:
        return "NULL"
    needs_quotes = value == "" or value.upper() == "NULL" or any(c in value for c in '{},"\\ \t\n\r\v\f')
    if needs_quotes:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


element_st = st.one_of(st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12))


@given(st.lists(element_st, max_size=8))
def test_text_arrays_parse_back(items: list[str | None]) -> None:
    assert values.parse_array(pg_array_literal(items), str) == items


@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=2, max_size=2), max_size=4
    )
)
def test_two_dimensional_int_arrays_parse_back(rows: list[list[int | None]]) -> None:
    literal = pg_array_literal([[None if v is None else str(v) for v in row] for row in rows])
    assert values.converter(1016)(literal) == rows


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (
            1700,
            "12345678901234567890.12345678901234567890",
            Decimal("12345678901234567890.12345678901234567890"),
        ),
        (1700, "-0.00000000000000000001", Decimal("-1E-20")),
        (1700, "42", 42),
        (1700, "NaN", "NaN"),
        (20, "-9223372036854775808", -(2**63)),
        (701, "1.7976931348623157e+308", 1.7976931348623157e308),
        (701, "Infinity", "Infinity"),
        (16, "t", True),
        (16, "f", False),
        (
            3802,
            '{"a": [1, 2.5], "big": 123456789012345678901234567890}',
            {"a": [1, 2.5], "big": 123456789012345678901234567890},
        ),
        (114, '"just text"', "just text"),
        (1184, "2024-02-29 07:04:56.789012+00", "2024-02-29T07:04:56.789012+00:00"),
        (1184, "2024-02-29 07:04:56+05:30", "2024-02-29T07:04:56+05:30"),
        (1184, "infinity", "infinity"),
        (1114, "2024-02-29 12:34:56.789012", "2024-02-29T12:34:56.789012"),
        (1082, "2024-02-29", "2024-02-29"),
        (1083, "23:59:59.999999", "23:59:59.999999"),
        (1266, "10:00:00-03", "10:00:00-03:00"),
        (17, "\\x00ff10", base64.b64encode(b"\x00\xff\x10").decode()),
        (1009, '{"a,b","q\\"uote",NULL,"NULL",""}', ["a,b", 'q"uote', None, "NULL", ""]),
        (1007, "[0:1]={1,2}", [1, 2]),
        (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (3807, '{"{\\"a\\": 1}",NULL}', [{"a": 1}, None]),
    ],
)
def test_values_by_type(type_oid: int, text: str, expected: Any) -> None:
    got = values.converter(type_oid)(text)
    assert got == expected and type(got) is type(expected)


# -- events -----------------------------------------------------------------------------------


def builder_with_relations() -> ChangeBuilder:
    builder = ChangeBuilder(datasource="pg", model="m", schema="public", table="t", primary_key=("id",))
    for name in ("relation_t", "relation_f"):
        message = decode(captured(name))
        assert isinstance(message, Relation)
        builder.relation(message)
    begin = decode(captured("begin"))
    assert isinstance(begin, Begin)
    builder.begin(begin)
    return builder


def test_an_unchanged_toasted_column_is_left_out_and_named_not_null() -> None:
    builder = builder_with_relations()
    update = decode(captured("update_toast"))
    assert isinstance(update, Update)
    event = builder.change(update)
    assert event is not None and event.op == "updated" and event.key == "1"
    assert event.payload == {"id": 1, "m": "happy", "n": 2}
    assert "big" not in event.payload
    assert event.source["unchanged"] == ["big"]


def test_an_unchanged_column_takes_the_old_rows_value_when_it_was_sent() -> None:
    builder = builder_with_relations()
    update = Update(0x400E, new=("1", UNCHANGED), old=("1", "kept"), old_key=None)
    event = builder.change(update)
    assert event is not None
    assert event.payload == {"id": 1, "v": "kept"} and "unchanged" not in event.source
    assert event.source["old"] == {"id": 1, "v": "kept"}


def test_keys_revs_and_the_old_key() -> None:
    builder = builder_with_relations()
    events = [builder.change(decode(captured(name))) for name in ("update_key", "delete_key", "truncate")]  # type: ignore[arg-type]
    assert [e.op if e else None for e in events] == ["updated", "deleted", "truncated"]
    assert [e.key if e else None for e in events] == ["2", "2", "public.t"]
    assert [e.rev if e else None for e in events] == ["0/151CE58:0", "0/151CE58:1", "0/151CE58:2"]
    assert events[0] is not None and events[0].source["old_key"] == "1"
    assert events[1] is not None and events[1].payload == {"id": 2}
    several = ChangeBuilder(datasource="pg", model="m", schema="public", table="t", primary_key=("m", "id"))
    relation = decode(captured("relation_t"))
    assert isinstance(relation, Relation)
    several.relation(relation)
    event = several.change(Insert(0x4007, ("5", "o", 'a "b"', None)))
    assert event is not None and json.loads(event.key) == ['a "b"', "5"]


def test_table_names_and_derived_object_names() -> None:
    assert split_table("orders") == ("public", "orders")
    assert split_table('Sales."Order Lines"') == ("sales", "Order Lines")
    assert split_table("a.b.c") is None
    workspace = "0f3a9c2be81d4e5f9a7b6c5d4e3f2a1b"  # a workspace id (uuid4 hex)
    names = object_names(workspace, "pg", "Orders-EU", "public", "orders")
    assert names.slot == names.publication
    assert names.slot.startswith("eventdesk_orders_eu_0f3a9c_") and len(names.slot) <= 63
    assert names.slot != object_names(workspace, "pg2", "Orders-EU", "public", "orders").slot
    assert names.slot != object_names(workspace, "pg", "Orders-EU", "public", "orders_v2").slot
    # Two homes (workspaces) following the same table never share a slot.
    other = object_names("7d1e0b", "pg", "Orders-EU", "public", "orders").slot
    assert other != names.slot and other.startswith("eventdesk_orders_eu_7d1e0b_")
    longest = object_names(workspace, "pg", "M" * 80, "public", "t").slot
    for slot in (names.slot, other, longest):
        assert set(slot) <= set("abcdefghijklmnopqrstuvwxyz0123456789_") and len(slot) <= 63


# -- the decoder and the conversions on what a real server writes, for generated values ---------


@pytest.fixture(scope="module")
def decoding_server() -> Iterator[PostgresServer]:
    """A cluster with table ``h`` published and a slot read through SQL
    (``pg_logical_slot_get_binary_changes``): the same pgoutput bytes, no replication connection."""
    with running_postgres() as server:
        server.execute(
            "CREATE TABLE h (id serial PRIMARY KEY, n numeric, ta text[], na numeric[], j jsonb, f float8, t text)"
        )
        server.execute("CREATE PUBLICATION hp FOR TABLE h")
        server.execute("SELECT pg_create_logical_replication_slot('hs', 'pgoutput')")
        yield server


def decoded_rows(server: PostgresServer) -> list[dict[str, Any]]:
    rows = server.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes('hs', NULL, NULL, "
        "'proto_version', '1', 'publication_names', 'hp')"
    )
    builder = ChangeBuilder(datasource="pg", model="m", schema="public", table="h", primary_key=("id",))
    payloads = []
    for (data,) in rows:
        message = decode(bytes(data))
        if isinstance(message, Relation):
            builder.relation(message)
        elif isinstance(message, Begin):
            builder.begin(message)
        elif isinstance(message, Insert):
            event = builder.change(message)
            assert event is not None
            payloads.append(event.payload)
    return payloads


numeric_text = st.decimals(allow_nan=False, allow_infinity=False, places=None).map(lambda d: format(d, "f"))
plain_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | plain_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=numeric_text,
    ta=st.lists(st.none() | plain_text, max_size=5),
    na=st.lists(st.none() | numeric_text, max_size=4),
    j=json_value,
    f=st.floats(allow_nan=False, allow_infinity=False),
    t=plain_text,
)
def test_generated_values_decode_as_row_to_json_says(
    decoding_server: PostgresServer,
    n: str,
    ta: list[str | None],
    na: list[str | None],
    j: Any,
    f: float,
    t: str,
) -> None:
    server = decoding_server
    (row_id,) = server.execute(
        "INSERT INTO h (n, ta, na, j, f, t) VALUES (%s::numeric, %s, %s::numeric[], %s::jsonb, %s, %s) RETURNING id",
        (n, ta, na, json.dumps(j), f, t),
    )[0]
    (payload,) = decoded_rows(server)
    ((expected_text,),) = server.execute("SELECT row_to_json(r)::text FROM h r WHERE id = %s", (row_id,))
    expected = json.loads(expected_text, parse_float=Decimal, parse_int=Decimal)
    assert as_decimals(payload) == as_decimals(expected)
    assert payload["ta"] == ta and payload["t"] == t


def as_decimals(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, list):
        return [as_decimals(v) for v in value]
    if isinstance(value, dict):
        return {k: as_decimals(v) for k, v in value.items()}
    return value
