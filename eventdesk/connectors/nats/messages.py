"""How one NATS message becomes an :class:`Event`.

The payload is the message's JSON if it parses; otherwise, as such: its text (a JSON string)
when it is UTF-8, else ``{"base64": "..."}``; ``source.encoding`` says which (``json``,
``text``, ``base64``). ``key`` and ``op`` come from the headers the ``nats`` broker kind writes
(``EventDesk-Key``/``-Op``, percent-encoded), else from the model's JMESPath expressions on a
JSON payload, else the key is the subject and the op ``created``. A JetStream message's rev is
its stream sequence, whatever its headers say: the capture stores one event per (model, key,
rev), so a message delivered again (after a crash) is stored once, and two distinct messages
are never taken for one (two with the same ``EventDesk-Key`` and ``-Rev`` headers: the same
change published twice beyond the stream's duplicate window, or by two routes). The
``EventDesk-Rev`` header is kept as ``source.rev``, ``EventDesk-Model`` and ``-Datasource`` as
``source.model`` and ``source.datasource`` (where the change was captured: a filter such as
``source.model == 'orders'`` picks one model of a fleet). A core NATS message has no rev.
"""

from __future__ import annotations

import base64
from typing import Any

import jmespath

from eventdesk.clients.nats.headers import (
    DATASOURCE_HEADER,
    KEY_HEADER,
    MODEL_HEADER,
    OP_HEADER,
    REV_HEADER,
    read_header,
)
from eventdesk.connectors.nats.settings import NatsModelSettings
from eventdesk.connectors.webhook.body import OP_WORDS
from eventdesk.core import json_codec
from eventdesk.core.envelope import Event, Op

# Debezium's one-letter ops (its NATS sink's payload.op): c, u, d, and r for a snapshot read.
# "truncated": the broker kind writes every op of the envelope.
_OPS: dict[str, Op] = {
    **OP_WORDS,
    "truncated": "truncated",
    "c": "created",
    "u": "updated",
    "d": "deleted",
    "r": "created",
}


def decode_payload(data: bytes) -> tuple[Any, str]:
    """``(payload, encoding)``: JSON if it parses, else the text, else base64."""
    if data:
        try:
            return json_codec.loads(data), "json"
        except (json_codec.JSONDecodeError, ValueError):
            pass
    try:
        return data.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}, "base64"


def parse_op(value: Any) -> Op | None:
    return _OPS.get(value.strip().lower()) if isinstance(value, str) else None


class MessageDecoder:
    """Turns the messages of one model into events."""

    def __init__(self, *, datasource: str, model: str, stream: str, settings: NatsModelSettings) -> None:
        self.datasource = datasource
        self.model = model
        self.stream = stream
        self.key_path = jmespath.compile(settings.key_path) if settings.key_path else None
        self.op_path = jmespath.compile(settings.op_path) if settings.op_path else None

    def event(self, subject: str, data: bytes, headers: dict[str, str] | None, seq: int | None) -> Event:
        """One message (``seq``: its stream sequence; None for core NATS) as an event."""
        payload, encoding = decode_payload(data)
        headers = headers or {}
        source: dict[str, Any] = {"connector": "nats", "subject": subject, "encoding": encoding}
        if seq is not None:
            source["stream"] = self.stream
            source["stream_seq"] = seq
        key = read_header(headers, KEY_HEADER)
        if key is None and self.key_path is not None and encoding == "json":
            found = self.key_path.search(payload)
            if isinstance(found, str | int) and not isinstance(found, bool) and found != "":
                key = str(found)
        op: Op | None = parse_op(read_header(headers, OP_HEADER))
        if op is None and self.op_path is not None and encoding == "json":
            raw = self.op_path.search(payload)
            op = parse_op(raw)
            if op is None and raw is not None:
                source["op"] = raw  # an op word EventDesk does not know: kept beside it
        sent_rev = read_header(headers, REV_HEADER)
        if sent_rev is not None:
            source["rev"] = sent_rev  # the change's rev where it was captured first
        for name, header in (("datasource", DATASOURCE_HEADER), ("model", MODEL_HEADER)):
            value = read_header(headers, header)
            if value is not None:  # where EventDesk captured it (a fleet's model, say)
                source[name] = value
        return Event(
            datasource=self.datasource,
            model=self.model,
            op=op or "created",
            key=key if key is not None else subject,
            rev=str(seq) if seq is not None else None,  # unique per stream message
            seq=seq,
            payload=payload,
            source=source,
        )
