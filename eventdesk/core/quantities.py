"""Amounts written for people, alike in the CLI, the tree, the Fleet window and the dialogs: a
size in bytes ("1.7 MB", decimal units) and an amount in a kind's own unit ("1.7 MB of WAL",
"1,204 messages")."""

from __future__ import annotations

_SCALES = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def size_text(size: float) -> str:
    for unit, scale in _SCALES:
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:,.0f} bytes"


def amount_text(value: float, unit: str) -> str:
    """``value`` in ``unit``: one starting with "bytes" is a size ("bytes of WAL" gives
    "1.7 MB of WAL"), any other is counted ("1,204 messages")."""
    if unit.startswith("bytes"):
        rest = unit.removeprefix("bytes").strip()
        return size_text(value) + (f" {rest}" if rest else "")
    return f"{value:,.0f} {unit}".rstrip()
