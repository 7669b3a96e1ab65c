"""The envelope headers EventDesk puts on a NATS message: their names, and how a value is
written (by the ``nats`` broker kind) and read back (by the ``nats`` source kind).

Values are percent-encoded: a key may hold a CR or LF, which would end the header block, and
nats-py strips leading and trailing spaces.
"""

from __future__ import annotations

import urllib.parse

DATASOURCE_HEADER = "EventDesk-Datasource"
MODEL_HEADER = "EventDesk-Model"
OP_HEADER = "EventDesk-Op"
KEY_HEADER = "EventDesk-Key"
REV_HEADER = "EventDesk-Rev"

_SAFE = "!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"


def header_value(value: str) -> str:
    """``value`` as a header value."""
    return urllib.parse.quote(value, safe=_SAFE)


def read_header(headers: dict[str, str], name: str) -> str | None:
    """Header ``name``'s value as written by :func:`header_value`; None if absent or empty."""
    value = headers.get(name)
    return urllib.parse.unquote(value) if value else None
