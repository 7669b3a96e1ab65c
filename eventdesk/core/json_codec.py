"""JSON in and out of EventDesk with every number kept exactly.

orjson does the work (it is the fast path everywhere: feeds, capture, exports, publishing),
but it holds integers only within 64 bits and reads every other number as a double:
``123456789012345678901234567890`` would come back as ``1.2345678901234568e+29``. Here a
cheap scan of the text (a number token of 17 digits and dots) sends what orjson might not hold
exactly to the standard library's parser, which keeps such integers as ``int`` and such
decimals as :class:`~decimal.Decimal`; :func:`dumps` writes both back exactly. Everything
else is orjson's, byte for byte. (A decimal with 16 or fewer digits and an exponent below a
double's range, like ``1e-400``, still reads as the nearest double.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

__all__ = [
    "JSONDecodeError",
    "JSONEncodeError",
    "dumps",
    "exact_number",
    "loads",
    "loads_exact",
    "loads_scanned",
    "needs_exact",
]

JSONDecodeError = orjson.JSONDecodeError
JSONEncodeError = orjson.JSONEncodeError

# What a double may not hold: a number token of 17+ digits and dots (an integer beyond 64 bits
# has 20, a decimal that a double cannot tell from its neighbours at least 17). One
# bytes.translate maps every byte to its class -- digits and dots to "0", what may stand
# before a JSON value (",", ":", "[" and white space) to ":", "-" to itself, anything else to
# "x" -- and a ":" followed by 17 "0" (or by "-" and 17 "0") is looked for: a long digit run
# inside a string (a revision hash, a numeric id) follows a letter or a quote, so it does not
# send the text to the slower parser. (A regex is slower than orjson's parse itself.)
_CLASSES = bytearray(b"x" * 256)
for _byte in b"0123456789.":
    _CLASSES[_byte] = ord("0")
for _byte in b",:[ \t\n\r":
    _CLASSES[_byte] = ord(":")
_CLASSES[ord("-")] = ord("-")
_DIGITS = bytes(_CLASSES)
_RUN = b"0" * 17
_AFTER_SEPARATOR = (b":" + _RUN, b":-" + _RUN)
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1  # what orjson writes


def _long_number(classes: bytes | bytearray) -> bool:
    """Whether the byte classes of a JSON text (see ``_DIGITS``) hold a long number token."""
    if _AFTER_SEPARATOR[0] in classes or _AFTER_SEPARATOR[1] in classes:
        return True
    head = classes[:64].lstrip(b":")  # a number as the whole text
    if not head and len(classes) > 64:
        head = classes.lstrip(b":")
    return head.startswith((_RUN, b"-" + _RUN))


def needs_exact(data: bytes | bytearray | memoryview | str) -> bool:
    """Whether ``data`` may hold a number that orjson cannot read exactly.

    A caller with many small documents in one buffer scans the buffer once and then picks
    :func:`loads_exact` or :func:`loads_scanned` for each.
    """
    return _long_number(data.translate(_DIGITS) if type(data) is bytes else _scannable(data))


def _scannable(data: bytes | bytearray | memoryview | str) -> bytes | bytearray:
    if isinstance(data, str):
        return data.encode().translate(_DIGITS)
    if isinstance(data, memoryview):
        return data.tobytes().translate(_DIGITS)
    return data.translate(_DIGITS)


def exact_number(text: str) -> float | Decimal:
    """A JSON number with a fraction or exponent: a float if that holds it exactly, else a Decimal."""
    value = float(text)
    if value - value == 0 and Decimal(repr(value)) == Decimal(text):  # finite and exact
        return value
    return Decimal(text)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON as orjson does (same errors: ``JSONDecodeError``, a ValueError), numbers exact.

    Integers beyond 64 bits come back as ``int``, decimals a double cannot hold (or beyond
    its range) as :class:`~decimal.Decimal`.
    """
    if _long_number(data.translate(_DIGITS) if type(data) is bytes else _scannable(data)):
        return loads_exact(data)
    return loads_scanned(data)


def loads_scanned(data: bytes | bytearray | memoryview | str) -> Any:
    """:func:`loads` for text that :func:`needs_exact` found free of long numbers (a caller
    with many documents in one buffer scans the buffer once)."""
    try:
        return orjson.loads(data)
    except JSONDecodeError as exc:
        if "infinity" in str(exc):  # a number beyond a double's range
            return loads_exact(data)
        raise


def loads_exact(data: bytes | bytearray | memoryview | str) -> Any:
    """:func:`loads` without the scan: the standard library's parser, after orjson's checks."""
    value: Any = None
    try:  # the check: the exact parser accepts only what orjson does...
        value = orjson.loads(data)
    except JSONDecodeError as exc:
        if "infinity" not in str(exc):  # ...and numbers beyond a double's range
            raise
    try:
        return json.loads(data.tobytes() if isinstance(data, memoryview) else data, parse_float=exact_number)
    except RecursionError:  # nesting orjson takes (up to 1024) but Python's recursion limit not
        if value is None:
            raise JSONDecodeError("nesting too deep", "", 0) from None
        return value


def _exact_default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _fragments(value: Any) -> Any:
    """``value`` with integers beyond orjson's 64 bits as raw JSON fragments."""
    if isinstance(value, int) and not isinstance(value, bool) and not _MIN_INT <= value <= _MAX_INT:
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {k: _fragments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fragments(v) for v in value]
    return value


def dumps(value: Any, option: int | None = None, default: Callable[[Any], Any] | None = None) -> bytes:
    """Serialize as orjson does (raising ``JSONEncodeError``, a TypeError), with integers beyond
    64 bits and :class:`~decimal.Decimal` values written exactly; ``default`` as orjson's, for
    any other type."""
    hook: Callable[[Any], Any] = _exact_default
    if default is not None:

        def hook(item: Any) -> Any:
            return _exact_default(item) if isinstance(item, Decimal) else default(item)

    try:
        return orjson.dumps(value, default=hook, option=option)
    except JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_fragments(value), default=hook, option=option)
