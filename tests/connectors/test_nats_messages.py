"""How a NATS message becomes an event (pure logic, no server): payload decoding, the broker
kind's headers, JMESPath rules with Debezium's ops, and the consumer's derived name."""

from __future__ import annotations

import re
from decimal import Decimal

from eventdesk.clients.nats.headers import header_value
from eventdesk.connectors.nats.messages import MessageDecoder, decode_payload
from eventdesk.connectors.nats.settings import NatsModelSettings, consumer_name


def decoder(**settings: str) -> MessageDecoder:
    cfg = NatsModelSettings.load({"stream": "S", **settings}, obj="model 'm'")
    return MessageDecoder(datasource="nd", model="m", stream="S", settings=cfg)


def test_payloads_json_text_or_base64() -> None:
    assert decode_payload(b'{"a": 1.5, "b": 12345678901234567890123}') == (
        {"a": 1.5, "b": 12345678901234567890123},
        "json",
    )  # numbers exact, as json_codec reads them
    assert decode_payload(b'{"p": 0.12345678901234567891}') == (
        {"p": Decimal("0.12345678901234567891")},
        "json",
    )
    assert decode_payload(b"[1, 2]") == ([1, 2], "json")
    assert decode_payload(b"not json {") == ("not json {", "text")
    assert decode_payload(b"") == ("", "text")
    assert decode_payload("caf\u00e9".encode()) == ("caf\u00e9", "text")
    assert decode_payload(b"\x80\x81") == ({"base64": "gIE="}, "base64")


def test_headers_written_by_the_broker_kind_come_back() -> None:
    key, rev = "a key\r\nwith.dots*", "2-abc"
    headers = {
        "EventDesk-Key": header_value(key),
        "EventDesk-Op": "truncated",
        "EventDesk-Rev": header_value(rev),
        "EventDesk-Model": header_value("orders/eu"),
        "EventDesk-Datasource": header_value("couch"),
    }
    ev = decoder().event("ed.m.truncated.x", b"{}", headers, 41)
    assert (ev.key, ev.op, ev.rev, ev.seq) == (key, "truncated", "41", 41)  # rev: the stream's
    assert ev.source == {"connector": "nats", "subject": "ed.m.truncated.x", "encoding": "json",
                         "stream": "S", "stream_seq": 41, "rev": rev,
                         "datasource": "couch", "model": "orders/eu"}  # fmt: skip
    again = decoder().event("ed.m.truncated.x", b'{"other": 1}', headers, 42)  # same headers
    assert (again.key, again.rev) == (key, "42")  # another message: another (key, rev)
    live = decoder().event("ed.m.truncated.x", b"{}", headers, None)
    assert (live.rev, live.source["rev"]) == (None, rev)  # core NATS: no rev, never collapsed


def test_without_headers_key_is_the_subject_and_rev_the_sequence() -> None:
    ev = decoder().event("orders.eu", b"x", None, 7)
    assert (ev.key, ev.op, ev.rev, ev.payload) == ("orders.eu", "created", "7", "x")
    live = decoder().event("live.a", b"{}", None, None)
    assert (live.rev, live.seq, "stream" in live.source) == (None, None, False)


def test_jmespath_rules_and_debezium_ops() -> None:
    d = decoder(key_path="payload.after.id || payload.before.id", op_path="payload.op")
    change = b'{"payload": {"op": "%s", "before": {"id": 4}, "after": %s}}'
    assert [(e.key, e.op) for e in (
        d.event("dbz", change % (b"c", b'{"id": 4}'), None, 1),
        d.event("dbz", change % (b"u", b'{"id": 4}'), None, 2),
        d.event("dbz", change % (b"d", b"null"), None, 3),
        d.event("dbz", change % (b"r", b'{"id": 4}'), None, 4),
    )] == [("4", "created"), ("4", "updated"), ("4", "deleted"), ("4", "created")]  # fmt: skip
    odd = d.event("dbz", b'{"payload": {"op": "merge", "after": {"id": true}}}', None, 5)
    assert (odd.key, odd.op, odd.source["op"]) == ("dbz", "created", "merge")  # a bool is no key
    assert d.event("dbz", b"text", {"EventDesk-Key": "h"}, 6).key == "h"  # a header wins


def test_consumer_names_are_stable_valid_and_per_workspace() -> None:
    a = consumer_name("ws1", "nd", "orders eu/*")
    assert a == consumer_name("ws1", "nd", "orders eu/*")
    assert re.fullmatch(r"eventdesk_orders_eu_[0-9a-f]{10}", a)
    assert a != consumer_name("ws2", "nd", "orders eu/*") != consumer_name("ws1", "other", "orders eu/*")
