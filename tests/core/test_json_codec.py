"""Numbers keep their exact value from the wire to the capture, the exports and the brokers."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from eventdesk.connectors.cloudant import page_end, parse_line
from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.envelope import PAYLOAD_FORMATS, Event, encode_payload
from eventdesk.core.export import envelope_from_parquet_row, export_events
from eventdesk.core.home import Home
from tests.connectors import test_webhook as webhook_tests
from tests.peers.servers import Subscriber

BIG = 123456789012345678901234567890
PAYLOAD_TEXT = (
    b'{"big":123456789012345678901234567890,"neg":-98765432109876543210987654321,'
    b'"u64":18446744073709551615,"over":18446744073709551616,"fine":0.10000000000000000555,'
    b'"huge":1E+400,"half":0.5,"list":[1,12345678901234567890123,2.5]}'
)
DIGITS = (
    b"123456789012345678901234567890",
    b"-98765432109876543210987654321",
    b"18446744073709551616",
    b"0.10000000000000000555",
    b"1E+400",
    b"12345678901234567890123",
)


def numbers(value: Any) -> Any:
    """``value`` with every number as the Decimal of its text (so 0.1 and Decimal("0.1") agree)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    return [numbers(v) for v in value]


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=10**60)
    | st.integers(min_value=-(10**60), max_value=-(2**63))
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: d.adjusted() > -300)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(value=json_values)
def test_any_value_round_trips_with_exact_numbers(value: Any) -> None:
    text = json_codec.dumps(value)
    back = json_codec.loads(text)
    assert numbers(back) == numbers(value)
    again = json_codec.dumps(back)  # as text, a decimal a double holds may change form (1E2: 100.0)...
    assert json_codec.dumps(json_codec.loads(again)) == again  # ...once


@given(value=json_values)
def test_values_orjson_holds_are_written_byte_for_byte_as_orjson_writes_them(value: Any) -> None:
    try:
        expected = orjson.dumps(value)
    except TypeError:  # a big integer or a Decimal: orjson cannot write it
        return
    assert json_codec.dumps(value) == expected
    if not json_codec.needs_exact(expected):
        assert json_codec.loads(expected) == orjson.loads(expected)


def test_the_standard_librarys_output_is_read_exactly() -> None:
    data = json_codec.loads(PAYLOAD_TEXT)
    assert data["big"] == BIG and type(data["big"]) is int
    assert data["over"] == 2**64 and data["neg"] == -98765432109876543210987654321
    assert data["fine"] == Decimal("0.10000000000000000555")
    assert data["huge"] == Decimal("1E+400")
    assert data["half"] == 0.5 and type(data["half"]) is float
    assert data["list"] == [1, 12345678901234567890123, 2.5]
    assert json_codec.dumps(data) == PAYLOAD_TEXT


def test_errors_are_orjsons() -> None:
    for bad in (b'{"a": 123456789012345678901234567890', b"[NaN, 12345678901234567890123]", b"\xff"):
        with pytest.raises(json_codec.JSONDecodeError):
            json_codec.loads(bad)
    with pytest.raises(json_codec.JSONEncodeError):
        json_codec.dumps({"a": {1, 2}})


def test_the_changes_feed_parser_keeps_big_numbers() -> None:
    line = b'{"seq":"3-g1","id":"a","changes":[{"rev":"1-x"}],"doc":' + PAYLOAD_TEXT + b"}"
    assert parse_line(line)["doc"]["big"] == BIG
    assert page_end(b'{"results":[],\n"last_seq":123456789012345678901234567890,"pending":0}') == (BIG, 0)


def event(i: int) -> Event:
    return Event(
        datasource="ds",
        model="accounts",
        op="created",
        key=f"k{i}",
        rev="1-a",
        seq=BIG + i,
        payload=json_codec.loads(PAYLOAD_TEXT),
        source={"connector": "webhook"},
    )


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    cap = Capture(tmp_path / "capture.sqlite3")
    cap.append("accounts", [event(i) for i in range(3)], BIG + 2)
    return cap


def test_capture_keeps_big_numbers_exactly(capture: Capture) -> None:
    events = capture.latest(10, models=["accounts"])
    assert [e.envelope["seq"] for e in events] == [BIG, BIG + 1, BIG + 2]
    assert all(numbers(e.envelope["payload"]) == numbers(json_codec.loads(PAYLOAD_TEXT)) for e in events)
    assert capture.checkpoint("accounts") == BIG + 2
    for _pos, raw in capture.iter_raw():
        assert PAYLOAD_TEXT in raw


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_exports_keep_big_numbers_exactly(capture: Capture, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"x.{fmt}"
    export_events(capture, out)
    expected = numbers(json_codec.loads(PAYLOAD_TEXT))
    if fmt == "jsonl":
        envelopes = [json_codec.loads(line) for line in out.read_bytes().splitlines()]
    elif fmt == "json":
        envelopes = json_codec.loads(out.read_bytes())
    elif fmt == "parquet":
        envelopes = [envelope_from_parquet_row(r) for r in pq.read_table(out).to_pylist()]
    else:
        with out.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["seq"] for r in rows] == [str(BIG + i) for i in range(3)]
        assert all(
            r["payload.big"] == str(BIG) and r["payload.fine"] == "0.10000000000000000555" for r in rows
        )
        assert all(r["payload"].encode() == PAYLOAD_TEXT for r in rows)
        return
    assert [e["seq"] for e in envelopes] == [BIG + i for i in range(3)]
    assert all(numbers(e["payload"]) == expected for e in envelopes)


@pytest.mark.parametrize("fmt", PAYLOAD_FORMATS)
def test_wire_formats_keep_big_numbers_exactly(fmt: str) -> None:
    wire = encode_payload(event(0).to_dict(), fmt)
    assert PAYLOAD_TEXT in wire
    for digits in DIGITS:
        assert digits in wire


@pytest_asyncio.fixture
async def receiver(isolated_home: Path, unique_topic: str) -> AsyncIterator[webhook_tests.Receiver]:
    home = Home.open(str(isolated_home))
    rcv = await webhook_tests._make_receiver(home, unique_topic)
    yield rcv
    await rcv.runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_a_posted_big_number_is_captured_and_republished_exactly(
    receiver: webhook_tests.Receiver,
) -> None:
    paho = await asyncio.to_thread(Subscriber, port=receiver.broker_port, topic=receiver.topic + "/#", qos=1)
    try:
        status, reply = await receiver.post(b'{"id":"acc-1",' + PAYLOAD_TEXT[1:])
        assert status == 200 and reply["accepted"] == 1, reply
        [message] = await asyncio.to_thread(paho.wait_for, 1)
    finally:
        await asyncio.to_thread(paho.close)
    assert message.payload == b'{"model":"accounts","message":{"id":"acc-1",' + PAYLOAD_TEXT[1:] + b"}"
    [captured] = receiver.home.capture.latest(1, models=["accounts"])
    assert captured.envelope["payload"]["big"] == BIG


@settings(max_examples=25, deadline=None)
@given(
    payloads=st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=6), min_size=1, max_size=4)
)
def test_arbitrary_payloads_keep_their_numbers_through_capture_export_and_wire(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[dict[str, Any]]
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    cap = Capture(tmp / "capture.sqlite3")
    try:
        events = [
            Event(datasource="ds", model="m", op="created", key=f"k{i}", rev=None, seq=i, payload=p)
            for i, p in enumerate(payloads)
        ]
        cap.append("m", events, len(events) - 1)
        expected = [numbers(p) for p in payloads]
        assert [numbers(e.envelope["payload"]) for e in cap.latest(10)] == expected
        export_events(cap, tmp / "x.jsonl")
        lines = (tmp / "x.jsonl").read_bytes().splitlines()
        assert [numbers(json_codec.loads(line)["payload"]) for line in lines] == expected
        export_events(cap, tmp / "x.csv")
        with (tmp / "x.csv").open(encoding="utf-8", newline="") as fh:
            cells = [json_codec.loads(row["payload"]) for row in csv.DictReader(fh)]
        assert [numbers(c) for c in cells] == expected
        for event, payload in zip(cap.latest(10), expected, strict=True):
            wire = encode_payload(event.envelope, "seed")
            assert numbers(json_codec.loads(wire)["message"]) == payload
    finally:
        cap.close()


@pytest.mark.parametrize(
    "text",
    [
        b'{"rev": "1-12345678901234567890abcdef"}',  # a revision hash with a long digit run
        b'{"id": "12345678901234567890123"}',  # a numeric id, as text
        b'{"seq": "123-45678901234567890123456"}',
        b'{"n": 1234567890123456}',  # 16 digits: a double holds it
    ],
)
def test_long_digit_runs_inside_strings_keep_the_fast_parser(text: bytes) -> None:
    assert not json_codec.needs_exact(text)
    assert json_codec.loads(text) == orjson.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        b"12345678901234567890123",
        b"  -12345678901234567890123",
        b'{"a":12345678901234567890123}',
        b'{"a": -12345678901234567890123}',
        b"[1,12345678901234567890123]",
        b"[\n  12345678901234567890123]",
        b'{"a":\t0.12345678901234567890}',
    ],
)
def test_long_number_tokens_anywhere_take_the_exact_parser(text: bytes) -> None:
    assert json_codec.needs_exact(text)
    assert json_codec.dumps(json_codec.loads(text)) == json_codec.dumps(json.loads(text, parse_float=Decimal))
