"""The event envelope every connector produces, and the payload formats on the wire.

``seq`` is opaque: it is stored and handed back to the source, never parsed or compared.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from eventdesk.core import json_codec

# "truncated": a whole table emptied at once (a PostgreSQL TRUNCATE), an event without a key.
Op = Literal["created", "updated", "deleted", "truncated"]
OPS: tuple[Op, ...] = ("created", "updated", "deleted", "truncated")
PAYLOAD_FORMATS = ("envelope", "model-message", "payload")
# Names a format had before, still accepted on input (workspace files, the command line, replay).
PAYLOAD_FORMAT_ALIASES = {"seed": "model-message"}

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _UlidFactory:
    """Monotonic ULIDs: sortable by creation time, unique within a process.

    The 80 random bits are drawn once per millisecond and incremented within it (the ULID
    spec's monotonic mode). The 10 time characters and the first 12 random ones are encoded
    once per millisecond (or when an increment carries into them); each id encodes only its
    last four characters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0
        self._prefix = ""  # the time characters and the random part's top 60 bits, encoded

    def __call__(self) -> str:
        return self.many(1)[0]

    def many(self, count: int) -> list[str]:
        """``count`` ids at once (one lock, one clock read), as ``count`` calls would give."""
        pairs = _PAIRS
        ids: list[str] = []
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                # The top bit stays clear, so a millisecond has 2**79 increments left.
                rand = int.from_bytes(os.urandom(10), "big") >> 1
                self._last_ms = ms
                self._prefix = _encode(ms, 10) + _encode(rand >> 20, 12)
            else:
                rand = (self._last_rand + 1) & _RAND_MASK
                if rand & _LOW_MASK == 0:  # the increment carried into the top bits
                    self._prefix = self._prefix[:10] + _encode(rand >> 20, 12)
            prefix = self._prefix
            for _ in range(count):
                low = rand & _LOW_MASK
                ids.append(prefix + pairs[low >> 10] + pairs[low & 1023])
                rand = (rand + 1) & _RAND_MASK
                if rand & _LOW_MASK == 0:  # carries into the cached characters
                    prefix = self._prefix = self._prefix[:10] + _encode(rand >> 20, 12)
            self._last_rand = (rand - 1) & _RAND_MASK
        return ids


_RAND_MASK = (1 << 80) - 1
_LOW_MASK = (1 << 20) - 1  # the random part's last four characters
# Crockford base32 of every 10-bit value (two characters), so 16 characters take 8 lookups.
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]


def _encode(value: int, length: int) -> str:
    """``value`` as ``length`` Crockford base32 characters (``length`` even)."""
    pairs = _PAIRS
    parts = []
    for _ in range(length // 2):
        parts.append(pairs[value & 1023])
        value >>= 10
    return "".join(reversed(parts))


new_event_id = _UlidFactory()
new_event_ids = new_event_id.many

_now_cache: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """The current time as ``2026-11-29T10:00:00.123Z`` (formatted once per millisecond)."""
    global _now_cache
    ms = time.time_ns() // 1_000_000
    cached = _now_cache
    if cached[0] == ms:
        return cached[1]
    now = datetime.fromtimestamp(ms // 1000, UTC)
    text = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    _now_cache = (ms, text)
    return text


@dataclass(slots=True)
class Event:
    """One normalised change, the same whatever its source (docs/architecture.md, "The event
    envelope and payload formats")."""

    datasource: str
    model: str
    op: Op
    key: str
    rev: str | None
    seq: Any
    payload: Any
    source: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    received_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "datasource": self.datasource,
            "model": self.model,
            "op": self.op,
            "key": self.key,
            "rev": self.rev,
            "seq": self.seq,
            "payload": self.payload,
            "source": self.source,
        }

    def to_json(self) -> bytes:
        return json_codec.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        op = data["op"]
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        return cls(
            id=str(data["id"]),
            received_at=str(data["received_at"]),
            datasource=str(data["datasource"]),
            model=str(data["model"]),
            op=op,
            key=str(data["key"]),
            rev=None if data.get("rev") is None else str(data["rev"]),
            seq=data.get("seq"),
            payload=data.get("payload"),
            source=dict(data.get("source") or {}),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        return cls.from_dict(json_codec.loads(raw))


def payload_format(name: str) -> str:
    """The current name of payload format ``name`` (an old name is renamed); raises ValueError
    naming the formats if there is no such format."""
    name = PAYLOAD_FORMAT_ALIASES.get(name, name)
    if name not in PAYLOAD_FORMATS:
        raise ValueError(f"unknown payload format {name!r}; expected one of {', '.join(PAYLOAD_FORMATS)}")
    return name


def encode_payload(envelope: dict[str, Any], fmt: str) -> bytes:
    """Serialise one envelope (as a dict) for the wire in ``fmt``.

    ``model-message`` (once called ``seed``) is ``{"model": <model>, "message": <document>}``.
    """
    if fmt == "envelope":
        return json_codec.dumps(envelope)
    if fmt == "model-message" or fmt == "seed":
        return json_codec.dumps({"model": envelope["model"], "message": envelope["payload"]})
    if fmt == "payload":
        return json_codec.dumps(envelope["payload"])
    raise ValueError(f"unknown payload format {fmt!r}; expected one of {', '.join(PAYLOAD_FORMATS)}")
