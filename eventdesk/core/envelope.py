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

import orjson

Op = Literal["created", "updated", "deleted"]
OPS: tuple[Op, ...] = ("created", "updated", "deleted")
PAYLOAD_FORMATS = ("envelope", "seed", "payload")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _UlidFactory:
    """Monotonic ULIDs: sortable by creation time, unique within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_rand += 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = ms
            value = (ms << 80) | (self._last_rand & ((1 << 80) - 1))
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return "".join(reversed(chars))


new_event_id = _UlidFactory()


def utc_now_iso() -> str:
    """The current time as ``2026-11-29T10:00:00.123Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Event:
    """One normalised change: see DESIGN.md, "The event envelope"."""

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
        return orjson.dumps(self.to_dict())

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
        return cls.from_dict(orjson.loads(raw))


def encode_payload(envelope: dict[str, Any], fmt: str) -> bytes:
    """Serialise one envelope (as a dict) for the wire in ``fmt``.

    ``seed`` is exactly the seed post's ``{"model": <model>, "message": <doc>}``.
    """
    if fmt == "envelope":
        return orjson.dumps(envelope)
    if fmt == "seed":
        return orjson.dumps({"model": envelope["model"], "message": envelope["payload"]})
    if fmt == "payload":
        return orjson.dumps(envelope["payload"])
    raise ValueError(f"unknown payload format {fmt!r}; expected one of {', '.join(PAYLOAD_FORMATS)}")
