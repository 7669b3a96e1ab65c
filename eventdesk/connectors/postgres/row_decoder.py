"""The stream's hot path: an Insert, or an Update carrying only the new row (the usual form:
default replica identity, key unchanged), of the followed table turned straight into its row.

A backlog is mostly such messages. Decoding each into pgoutput.py's ``Insert`` (a tuple of texts) and
then converting that in changes.py made about 10 µs of a row's CPU time (docs/performance.md,
``tests.bench.postgres``); here one loop over the message's bytes converts each column as it
is read, with the table's names and converters paired once per Relation message. Anything
out of the ordinary (another table, an update with the old row or old key, a column count
that is not the Relation's, a binary or unchanged value, a NULL key) gives ``None``: the caller then takes the general path
(``pgoutput.decode`` and ``ChangeBuilder.change``), which is the reference this module is
tested against (tests/connectors/test_postgres_row_decoder.py).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from eventdesk.connectors.postgres.values import Convert

_HEAD = struct.Struct("!Bh")  # 'N', column count (after the 'I' or 'U' tag and the relation OID)
_LENGTH = struct.Struct("!i").unpack_from
_TEXT, _NULL = 0x74, 0x6E  # 't', 'n'


class RowDecoder:
    """Rows of one table's Insert and plain Update messages (see the module docstring)."""

    __slots__ = ("columns", "count", "key_index")

    def __init__(
        self, names: tuple[str, ...], converters: tuple[Convert, ...], key_index: tuple[int, ...]
    ) -> None:
        self.columns = tuple(zip(names, converters, strict=True))
        self.count = len(names)
        self.key_index = key_index

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]] | None:
        """``(key, row)`` of an Insert or Update message of this table (``data`` starts with
        its tag), or None when the general path must take it."""
        try:
            new, count = _HEAD.unpack_from(data, 5)
        except struct.error:
            return None
        if new != 0x4E or count != self.count:
            return None
        row: dict[str, Any] = {}
        texts: list[str | None] = []
        append = texts.append
        pos = 8
        try:
            for name, convert in self.columns:
                kind = data[pos]
                if kind == _TEXT:
                    (length,) = _LENGTH(data, pos + 1)
                    pos += 5
                    end = pos + length
                    text = data[pos:end].decode("utf-8")
                    pos = end
                    append(text)
                    row[name] = convert(text)
                elif kind == _NULL:
                    pos += 1
                    append(None)
                    row[name] = None
                else:  # 'u' or 'b': not in an insert as we ask for it; the general path says what
                    return None
        except (IndexError, struct.error, UnicodeDecodeError):
            return None  # cut short or not UTF-8: the general path raises the decoder's error
        if pos != len(data):  # too short (a slice past the end is short) or too long
            return None
        key_index = self.key_index
        if len(key_index) == 1:
            key = texts[key_index[0]]
            if key is None:
                return None
            return key, row
        return json.dumps([texts[i] for i in key_index], ensure_ascii=False, separators=(",", ":")), row
