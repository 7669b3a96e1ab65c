"""How a webhook request's body becomes events: one per JSON object, its op and key found by rules.

The op comes from the body's op field, else the op header, else it is ``created``; the words
senders use for it (``insert``, ``modified``, ``remove``, ...) are mapped to EventDesk's three.
Anything that cannot become an event is a :class:`BadRequestError` (400) saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventdesk.connectors.webhook.errors import BadRequestError
from eventdesk.core import json_codec
from eventdesk.core.envelope import Event, Op

OP_WORDS: dict[str, Op] = {
    "created": "created",
    "create": "created",
    "insert": "created",
    "inserted": "created",
    "new": "created",
    "updated": "updated",
    "update": "updated",
    "modified": "updated",
    "changed": "updated",
    "change": "updated",
    "upsert": "updated",
    "deleted": "deleted",
    "delete": "deleted",
    "removed": "deleted",
    "remove": "deleted",
}


def parse_op(value: Any, where: str) -> Op:
    op = OP_WORDS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if op is None:
        raise BadRequestError(400, f"{where} is {value!r}; expected created, updated or deleted")
    return op


@dataclass(frozen=True)
class BodyRules:
    """How a body becomes events: which fields hold the op and the key."""

    datasource: str
    model: str
    op_field: str
    op_header: str
    key_field: str

    def events(self, body: bytes, headers: Any) -> list[Event]:
        """Parse ``body`` (one JSON object or an array of them) into events, or raise BadRequestError."""
        if not body.strip():
            raise BadRequestError(400, "the body is empty; expected a JSON object")
        try:
            data = json_codec.loads(body)
        except json_codec.JSONDecodeError as exc:
            raise BadRequestError(400, f"invalid JSON: {exc}") from None
        docs = data if isinstance(data, list) else [data]
        if not docs:
            raise BadRequestError(400, "the body is an empty array; expected JSON objects")
        header_op = headers.get(self.op_header) if self.op_header else None
        out: list[Event] = []
        for i, doc in enumerate(docs):
            where = f"item {i}" if isinstance(data, list) else "the body"
            if not isinstance(doc, dict):
                raise BadRequestError(400, f"{where} is {type(doc).__name__}; expected a JSON object")
            if self.op_field and self.op_field in doc:
                op = parse_op(doc[self.op_field], f"{where}: field {self.op_field!r}")
            elif header_op is not None:
                op = parse_op(header_op, f"header {self.op_header}")
            else:
                op = "created"
            key = doc.get(self.key_field)
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                raise BadRequestError(
                    400,
                    f"{where} has no usable key field {self.key_field!r} (a non-empty string or number)",
                )
            rev = doc.get("_rev")
            out.append(
                Event(
                    datasource=self.datasource,
                    model=self.model,
                    op=op,
                    key=str(key),
                    rev=rev if isinstance(rev, str) else None,
                    seq=None,
                    payload=doc,
                    source={"connector": "webhook"},
                )
            )
        for ev in out:
            ev.seq = ev.id  # an opaque position: the event's own (monotonic, sortable) id
        return out
