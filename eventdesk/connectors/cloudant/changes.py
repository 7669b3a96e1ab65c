"""The ``_changes`` feed's format: its rows turned into events, and a backlog page read in parts.

Pure functions, no I/O: how a change row becomes an :class:`~eventdesk.core.envelope.Event`,
how ``since`` goes back to the server untouched, how a ``feed=normal`` page's end is read
without parsing the page, and how a page cut short is split into its complete rows (and the
row it was cut in named).
"""

from __future__ import annotations

import re
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.envelope import Event, Op, new_event_id, utc_now_iso

ROW_HEAD_BYTES = 4096  # what is kept of a change too long to read, to name it


def since_param(since: Any) -> str:
    """``since`` for the query string: a string as it is, anything else as JSON (ints as digits).

    The value stays opaque: it is never parsed or compared, only handed back to the server.
    """
    if isinstance(since, str):
        return since
    return json_codec.dumps(since).decode()


def op_of(change: dict[str, Any], rev: str | None) -> Op:
    """``deleted`` when the feed says so; otherwise a hint from the revision number."""
    if change.get("deleted") is True:
        return "deleted"
    # "1-" hints at a creation; a create and an update between two reads arrive as one "2-".
    return "created" if rev is not None and rev.startswith("1-") else "updated"


def change_to_event(
    change: dict[str, Any],
    *,
    datasource: str,
    model: str,
    database: str,
    event_id: str | None = None,
    received_at: str | None = None,
) -> Event | None:
    """The envelope of one ``_changes`` row, or None if the row is not a change.

    ``event_id`` and ``received_at`` are made here unless given (a reader of many rows makes
    them in bulk: :func:`~eventdesk.core.envelope.new_event_ids`).
    """
    key = change.get("id")
    if not isinstance(key, str) or "seq" not in change:
        return None
    doc = change.get("doc")
    rev: Any = None
    revs = change.get("changes")
    if isinstance(revs, list) and revs and isinstance(revs[0], dict):
        rev = revs[0].get("rev")
    if rev is None and isinstance(doc, dict):
        rev = doc.get("_rev")
    rev = None if rev is None else str(rev)
    deleted = change.get("deleted") is True
    if doc is None:  # include_docs off: the document's identity is all there is
        doc = {"_id": key, "_rev": rev, "_deleted": True} if deleted else {"_id": key, "_rev": rev}
    return Event(
        datasource=datasource,
        model=model,
        op=op_of(change, rev),
        key=key,
        rev=rev,
        seq=change["seq"],
        payload=doc,
        source={"connector": "cloudant", "database": database},
        id=event_id if event_id is not None else new_event_id(),
        received_at=received_at if received_at is not None else utc_now_iso(),
    )


def parse_line(line: bytes | bytearray) -> Any:
    """One line of the feed as JSON; raises ValueError if it is not JSON.

    What orjson refuses (besides broken JSON: lone UTF-16 surrogates, nesting deeper than
    1024) could not be captured or republished either, so it is skipped here, not later.
    """
    return json_codec.loads(line)


def page_end(body: bytes | bytearray) -> tuple[Any, Any] | None:
    """``(last_seq, pending)`` read from the end of a ``feed=normal`` page without parsing the
    rest; None if the end is not ``"last_seq": …}`` as CouchDB, Cloudant and PouchDB write it.
    ``pending`` is None when the server does not send it (PouchDB)."""
    start = body.rfind(b'"last_seq"')
    if start < 0:
        return None
    try:
        end = json_codec.loads(b"{" + body[start:])
    except ValueError:
        return None
    if not isinstance(end, dict) or end.get("last_seq") is None:
        return None
    return end["last_seq"], end.get("pending")


_PAGE_START = re.compile(rb'\s*\{\s*"results"\s*:\s*\[')
# A string (group 1 is its closing quote: absent when the text ends inside it) or a bracket.
_PAGE_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(")?|[{}\[\]]')
_JSON_STRING = rb'"(?:[^"\\]|\\.)*"'
_HEAD_SEQ_ID = re.compile(
    rb'\s*\{\s*"seq"\s*:\s*('
    + _JSON_STRING
    + rb'|-?\d+|\[[^\]]*\])\s*,\s*"id"\s*:\s*('
    + _JSON_STRING
    + rb")"
)
_HEAD_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*(' + _JSON_STRING + rb")")
_HEAD_SEQ = re.compile(rb'\s*\{\s*"seq"\s*:\s*(' + _JSON_STRING + rb"|-?\d+|\[[^\]]*\])")


def split_page(body: bytes | bytearray) -> tuple[list[bytes], bytes | None]:
    """The complete rows of a ``feed=normal`` page cut short, and the head of the row it was
    cut in (None if it was cut between rows or is not a page of changes).

    Works on CouchDB's layout (a row per line) and PouchDB's (one line): strings are skipped
    whole by a regular expression, so a long row costs a few tokens, not a loop per byte.
    """
    start_match = _PAGE_START.match(body)
    if start_match is None:
        return [], None
    rows: list[bytes] = []
    depth, start = 0, -1
    for token in _PAGE_TOKEN.finditer(body, start_match.end()):
        char = body[token.start()]
        if char == 0x22:  # '"'
            if token.start(1) < 0:
                break  # the page was cut inside this string
            continue
        if char in b"{[":
            if depth == 0:
                start = token.start()
            depth += 1
            continue
        depth -= 1
        if depth == 0:
            rows.append(bytes(body[start : token.end()]))
            start = -1
        elif depth < 0:
            break  # the end of "results"
    head = None if start < 0 else bytes(body[start : start + ROW_HEAD_BYTES])
    return rows, head


def row_identity(head: bytes) -> tuple[str | None, Any]:
    """``(id, seq)`` read from the start of a change's row, each None when it is not there.

    Only a row that starts with them is trusted (CouchDB writes ``{"seq":…,"id":…``; PouchDB
    ``{"id":…`` and ``seq`` last): a ``seq`` further in may be a field of the document.
    """
    found = _HEAD_SEQ_ID.match(head)
    if found is not None:
        seq_text, id_text = found.group(1), found.group(2)
    else:
        found_id, found_seq = _HEAD_ID.match(head), _HEAD_SEQ.match(head)
        id_text = found_id.group(1) if found_id else None
        seq_text = found_seq.group(1) if found_seq else None
    try:
        key = None if id_text is None else json_codec.loads(id_text)
        seq = None if seq_text is None else json_codec.loads(seq_text)
    except ValueError:
        return None, None
    return (key if isinstance(key, str) else None), seq


def describe_row(head: bytes) -> str:
    """``change 'ID' (seq SEQ)`` as far as the head of its row tells."""
    key, seq = row_identity(head)
    what = "a change" if key is None else f"change {key!r}"
    return what if seq is None else f"{what} (seq {json_codec.dumps(seq).decode()[:80]})"
