"""Column values as pgoutput sends them (PostgreSQL's text output) turned into JSON values.

Chosen by the column's type OID, so that an event's payload says what ``row_to_json`` says:
numeric as :class:`~decimal.Decimal` (core/json_codec.py writes it back digit for digit),
integers and floats as numbers (``NaN`` and infinities, which JSON lacks, as text), json and
jsonb parsed, timestamps, dates and times in ISO 8601, bytea as base64, arrays (any number of
dimensions, NULL elements) as JSON arrays of their elements' values, everything else (text,
uuid, enums, intervals, ...) as the text itself. The replication connection sets the session
(DateStyle ISO, UTC, bytea hex, shortest exact floats) so the text has one known form.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from eventdesk.core import json_codec

# The replication session's settings the conversions below rely on (libpq's ``options``).
SESSION_OPTIONS = (
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres "
    "-c bytea_output=hex -c extra_float_digits=1 -c client_encoding=UTF8"
)

Convert = Callable[[str], Any]


def _bool(text: str) -> bool:
    return text == "t"


def _float(text: str) -> Any:
    value = float(text)
    if value - value != 0:
        return text  # NaN and infinities, as row_to_json writes them: text
    # PostgreSQL may write more digits than Python's repr (4.4352135853299024e+16 where repr
    # gives 4.435213585329902e+16, the same double): keep its digits then, as a Decimal.
    return json_codec.exact_number(text)


def _numeric(text: str) -> Any:
    # numeric_out writes digits with an optional sign and point, never an exponent.
    if "." in text:
        return Decimal(text)
    if text[-1].isdigit():
        return int(text)
    return text  # 'NaN', 'Infinity', '-Infinity': not JSON numbers


def _json(text: str) -> Any:
    return json_codec.loads(text)


def _bytea(text: str) -> str:
    if text.startswith("\\x"):
        raw = binascii.unhexlify(text[2:])
    else:  # the 'escape' output format, should the session not have taken hex
        raw = text.encode("latin-1").decode("unicode_escape").encode("latin-1")
    return base64.b64encode(raw).decode("ascii")


def _offset(zone: str) -> str:
    """A zone as ``+HH:MM`` (PostgreSQL writes ``+05:30``, ``+00``, ``-03:00:15``)."""
    return zone + ":00" if len(zone) == 3 else zone


def _timestamp(text: str) -> str:
    """``2024-01-02 03:04:05.5`` -> ``2024-01-02T03:04:05.5`` (as row_to_json writes it)."""
    if text in ("infinity", "-infinity") or text.endswith(" BC"):
        return text
    return text.replace(" ", "T", 1)


def _timestamptz(text: str) -> str:
    if text[-3] in "+-":  # a whole-hour zone, as the session's UTC always gives: '...+00'
        return text.replace(" ", "T", 1) + ":00"
    if text in ("infinity", "-infinity") or text.endswith(" BC"):
        return text
    stamp = text.replace(" ", "T", 1)
    for i in range(len(stamp) - 1, 10, -1):  # the zone starts at the last + or - after the date
        if stamp[i] in "+-":
            return stamp[:i] + _offset(stamp[i:])
    return stamp


def _timetz(text: str) -> str:
    for i in range(len(text) - 1, 0, -1):
        if text[i] in "+-":
            return text[:i] + _offset(text[i:])
    return text


def _text(text: str) -> str:
    return text


# Type OIDs (pg_type.dat) of the scalar types converted here.
BOOL, BYTEA, INT8, INT2, INT4, OID, JSON, FLOAT4, FLOAT8 = 16, 17, 20, 21, 23, 26, 114, 700, 701
DATE, TIME, TIMESTAMP, TIMESTAMPTZ, TIMETZ, NUMERIC, JSONB = 1082, 1083, 1114, 1184, 1266, 1700, 3802

SCALARS: dict[int, Convert] = {
    BOOL: _bool,
    BYTEA: _bytea,
    INT8: int,
    INT2: int,
    INT4: int,
    OID: int,
    JSON: _json,
    FLOAT4: _float,
    FLOAT8: _float,
    NUMERIC: _numeric,
    DATE: _timestamp,  # 'infinity' and BC as they are, else unchanged
    TIME: _text,
    TIMESTAMP: _timestamp,
    TIMESTAMPTZ: _timestamptz,
    TIMETZ: _timetz,
    JSONB: _json,
}

# Array type OID -> element type OID, for the element types above and the common text-like ones.
ARRAYS: dict[int, int] = {
    1000: BOOL,
    1001: BYTEA,
    1016: INT8,
    1005: INT2,
    1007: INT4,
    1028: OID,
    199: JSON,
    1021: FLOAT4,
    1022: FLOAT8,
    1231: NUMERIC,
    1182: DATE,
    1183: TIME,
    1115: TIMESTAMP,
    1185: TIMESTAMPTZ,
    1270: TIMETZ,
    3807: JSONB,
    1009: 25,  # text[]
    1015: 1043,  # varchar[]
    1014: 1042,  # bpchar[]
    1002: 18,  # "char"[]
    1003: 19,  # name[]
    2951: 2950,  # uuid[]
    1187: 1186,  # interval[]
    791: 790,  # money[]
    1041: 869,  # inet[]
    651: 650,  # cidr[]
    143: 142,  # xml[]
}


_SPACE = " \t\n\r\v\f"  # what array_in skips (str.isspace would also skip \x1c-\x1f and more)


class ArraySyntaxError(ValueError):
    """Text that is not a PostgreSQL array literal."""


def parse_array(text: str, element: Convert) -> list[Any]:
    """A PostgreSQL array literal (``{1,2,NULL}``, ``{{"a b","q\\"x"},{NULL,""}}``, with an optional
    ``[1:2]=`` bounds prefix) as nested lists, each element converted by ``element``."""
    pos = 0
    if text.startswith("["):  # explicit bounds: '[0:1]={1,2}'
        pos = text.find("=") + 1
        if pos <= 0:
            raise ArraySyntaxError(f"array bounds without '=': {text[:40]!r}")
    value, pos = _parse_level(text, pos, element)
    if text[pos:].strip(_SPACE):
        raise ArraySyntaxError(f"text after the array: {text[pos : pos + 20]!r}")
    return value


def _parse_level(text: str, pos: int, element: Convert) -> tuple[list[Any], int]:
    n = len(text)
    while pos < n and text[pos] in _SPACE:
        pos += 1
    if pos >= n or text[pos] != "{":
        raise ArraySyntaxError(f"expected '{{' at {pos}")
    pos += 1
    items: list[Any] = []
    while True:
        while pos < n and text[pos] in _SPACE:
            pos += 1
        if pos >= n:
            raise ArraySyntaxError("unterminated array")
        c = text[pos]
        if c == "}" and not items:
            return items, pos + 1
        if c == "{":
            sub, pos = _parse_level(text, pos, element)
            items.append(sub)
        elif c == '"':
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= n:
                    raise ArraySyntaxError("unterminated quoted element")
                c = text[pos]
                if c == "\\":
                    chars.append(text[pos + 1 : pos + 2])
                    pos += 2
                elif c == '"':
                    pos += 1
                    break
                else:
                    chars.append(c)
                    pos += 1
            items.append(element("".join(chars)))
        else:
            start = pos
            while pos < n and text[pos] not in ",}":
                pos += 1
            raw = text[start:pos].strip(_SPACE)
            items.append(None if raw.upper() == "NULL" else element(raw))
        while pos < n and text[pos] in _SPACE:
            pos += 1
        if pos >= n:
            raise ArraySyntaxError("unterminated array")
        if text[pos] == ",":
            pos += 1
        elif text[pos] == "}":
            return items, pos + 1
        else:
            raise ArraySyntaxError(f"expected ',' or '}}' at {pos}")


def converter(type_oid: int) -> Convert:
    """The function turning a column's text into its JSON value."""
    scalar = SCALARS.get(type_oid)
    if scalar is not None:
        return scalar
    element_oid = ARRAYS.get(type_oid)
    if element_oid is not None:
        element = SCALARS.get(element_oid, _text)
        return lambda text: parse_array(text, element)
    return _text
