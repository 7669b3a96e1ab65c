"""Recordings: JSON Lines, JSON (or Parquet) exports imported as read-only captures.

A recording is its own SQLite file under ``Paths.recordings_dir`` (``<name>.sqlite3``) with the
capture's schema, so everything that browses, filters, diffs, exports or replays the live
capture works on it unchanged, and nothing of it ever mixes with live capture. The file is
built under a temporary name and renamed when complete; it is then switched out of WAL mode
so it opens read-only without side files.

Bad lines (not JSON, not an envelope) are skipped and reported with their line numbers; a
``(model, key, rev)`` seen twice is stored once (as in the live capture) and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.envelope import OPS, Event, utc_now_iso
from eventdesk.core.errors import ConfigError, JobCancelledError, NotFoundError

SUFFIX = ".sqlite3"
IMPORT_FORMATS = ("jsonl", "json", "parquet")
BATCH = 2000
MAX_PROBLEMS_KEPT = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REQUIRED = ("id", "received_at", "datasource", "model", "op", "key")


@dataclass(frozen=True)
class LineProblem:
    """One input line that was not imported, and why."""

    line: int
    message: str

    def describe(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class RecordingInfo:
    name: str
    path: Path
    events: int
    source: str
    imported_at: str


@dataclass
class ImportResult:
    recording: RecordingInfo
    imported: int
    duplicates: int
    bad_lines: int
    problems: list[LineProblem] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT


ImportProgress = Callable[[int, int], None]
"""``progress(lines_read, events_imported)``, called every batch."""


def check_recording_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            "a recording name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            obj=f"recording {name!r}",
            field="name",
        )
    return name


def recording_path(recordings_dir: Path, name: str) -> Path:
    return recordings_dir / f"{check_recording_name(name)}{SUFFIX}"


def _name_from(source: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.stem).strip("-._") or "recording"
    return stem[:56]


def _unique_name(recordings_dir: Path, base: str) -> str:
    name, n = base, 1
    while (recordings_dir / f"{name}{SUFFIX}").exists():
        n += 1
        name = f"{base}-{n}"
    return name


def detect_format(source: Path) -> str:
    """``jsonl``, ``json`` or ``parquet``, from the extension or, failing that, the first byte."""
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with source.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"["):
        return "json"
    return "jsonl"


def _envelope_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"expected an event envelope (a JSON object), got {type(data).__name__}"
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        return f"not an event envelope: field '{missing[0]}' is missing"
    if data["op"] not in OPS:
        return f"field 'op': unknown op {data['op']!r}; expected one of {', '.join(OPS)}"
    if not isinstance(data.get("source") or {}, dict):
        return "field 'source': expected an object"
    return None


def _to_event(data: Any) -> Event | str:
    problem = _envelope_problem(data)
    if problem is not None:
        return problem
    return Event.from_dict(data)


# -- readers: (line number, parsed value or an error message) ---------------------------------------
def _read_jsonl(source: Path) -> Iterator[tuple[int, Any]]:
    with source.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if n == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            try:
                yield n, json_codec.loads(line)
            except json_codec.JSONDecodeError as exc:
                yield n, _BadJson(f"{exc.msg} (column {exc.colno})")


class _BadJson(str):
    """A parse error in place of a value."""


def _read_json(source: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array. EventDesk's own exports put one element per line and are read line by line;
    other layouts are decoded element by element from the text (memory: the file's size)."""
    done_until = 0
    with source.open("rb") as fh:
        first = fh.readline()
        if first.removeprefix(b"\xef\xbb\xbf").strip() == b"[":
            for n, line in enumerate(fh, 2):
                body = line.strip()
                if body in (b"]", b""):
                    continue
                try:
                    value = json_codec.loads(body.removesuffix(b","))
                except json_codec.JSONDecodeError:
                    break  # not one element per line after all: read the rest as text
                yield n, value
                done_until = n
            else:
                return
    yield from _read_json_text(source, skip_until=done_until)


def _read_json_text(source: Path, skip_until: int = 0) -> Iterator[tuple[int, Any]]:
    text = source.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder(parse_float=json_codec.exact_number)
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        raise ConfigError(
            "a JSON export must be one array of envelopes", obj=f"file {source.name!r}", field="file"
        )
    i = _skip_ws(text, i + 1)
    line, counted = 1, 0
    while i < len(text) and text[i] != "]":
        line += text.count("\n", counted, i)
        counted = i
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            yield exc.lineno, _BadJson(f"{exc.msg} (column {exc.colno})")
            return
        if line > skip_until:
            yield line, value
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
    if i >= len(text):
        yield line, _BadJson("the array is not closed with ']'")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_parquet(source: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "importing Parquet needs pyarrow: pip install 'eventdesk[parquet]'",
            obj=f"file {source.name!r}",
            field="format",
        ) from None
    from eventdesk.core.export import envelope_from_parquet_row

    n = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=BATCH):
        for row in batch.to_pylist():
            n += 1
            try:
                yield n, envelope_from_parquet_row(row)
            except (KeyError, json_codec.JSONDecodeError) as exc:
                yield n, _BadJson(f"not an EventDesk Parquet row: {exc}")


def _records(source: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "jsonl":
        yield from _read_jsonl(source)
    elif fmt == "parquet":
        yield from _read_parquet(source)
    else:
        yield from _read_json(source)


# -- the public API ----------------------------------------------------------------------------------
def import_recording(
    recordings_dir: Path,
    source: Path | str,
    name: str | None = None,
    *,
    fmt: str | None = None,
    progress: ImportProgress | None = None,
    cancel: threading.Event | None = None,
) -> ImportResult:
    """Import ``source`` as recording ``name`` (default: from the file name, made unique).

    Blocking; run it off the loop. Raises :class:`ConfigError` naming the field for a missing
    file, an unknown format, a taken name or a file without a single event, and
    :class:`JobCancelledError` on cancel; neither leaves a recording behind.
    """
    src = Path(source).expanduser()
    obj = f"file {str(src)!r}"
    if not src.is_file():
        raise ConfigError("no such file", obj=obj, field="file")
    if fmt is not None and fmt not in IMPORT_FORMATS:
        raise ConfigError(
            f"unknown format {fmt!r}; expected one of {', '.join(IMPORT_FORMATS)}", obj=obj, field="format"
        )
    chosen = fmt or detect_format(src)
    recordings_dir.mkdir(parents=True, exist_ok=True)
    if name is None:
        name = _unique_name(recordings_dir, _name_from(src))
    target = recording_path(recordings_dir, name)
    if target.exists():
        raise ConfigError(
            "a recording with this name exists; choose another name", obj=f"recording {name!r}", field="name"
        )
    tmp = recordings_dir / f".{name}.{secrets.token_hex(4)}.part"
    problems: list[LineProblem] = []
    bad = imported = total = lines = 0
    try:
        capture = Capture(tmp)
        try:
            batch: list[Event] = []
            for lines, value in _records(src, chosen):
                if isinstance(value, _BadJson):
                    result: Event | str = f"not JSON: {value}"
                else:
                    result = _to_event(value)
                if isinstance(result, str):
                    bad += 1
                    if len(problems) < MAX_PROBLEMS_KEPT:
                        problems.append(LineProblem(lines, result))
                    continue
                batch.append(result)
                if len(batch) >= BATCH:
                    imported += capture.import_events(batch)
                    total += len(batch)
                    batch = []
                    if cancel is not None and cancel.is_set():
                        raise JobCancelledError("import cancelled; no recording was kept", obj=obj)
                    if progress is not None:
                        progress(lines, imported)
            if batch:
                imported += capture.import_events(batch)
                total += len(batch)
            if cancel is not None and cancel.is_set():
                raise JobCancelledError("import cancelled; no recording was kept", obj=obj)
        finally:
            capture.close()
        if total == 0:
            first = f"; {problems[0].describe()}" if problems else ""
            raise ConfigError(f"no event envelopes found ({bad} bad lines){first}", obj=obj, field="file")
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("recording.name", name),
                    ("recording.source", str(src.resolve())),
                    ("recording.format", chosen),
                    ("recording.imported_at", utc_now_iso()),
                ],
            )
            db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, openable read-only
        os.replace(tmp, target)
    except BaseException:
        for path in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    if progress is not None:
        progress(lines, imported)
    return ImportResult(
        recording=recording_info(target),
        imported=imported,
        duplicates=total - imported,
        bad_lines=bad,
        problems=problems,
    )


def recording_info(path: Path) -> RecordingInfo:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    return RecordingInfo(
        name=str(meta.get("recording.name", path.stem)),
        path=path,
        events=int(count),
        source=str(meta.get("recording.source", "")),
        imported_at=str(meta.get("recording.imported_at", "")),
    )


def list_recordings(recordings_dir: Path) -> list[RecordingInfo]:
    if not recordings_dir.is_dir():
        return []
    out = []
    for path in sorted(recordings_dir.glob(f"*{SUFFIX}")):
        with contextlib.suppress(sqlite3.Error):
            out.append(recording_info(path))
    return out


def open_recording(recordings_dir: Path, name: str) -> Capture:
    """The recording ``name`` as a read-only :class:`Capture`."""
    path = recording_path(recordings_dir, name)
    if not path.is_file():
        known = ", ".join(r.name for r in list_recordings(recordings_dir)) or "none"
        raise NotFoundError(f"no such recording (known: {known})", obj=f"recording {name!r}", field="name")
    return Capture(path, readonly=True)


def open_recording_file(path: Path) -> Capture:
    """A recording file chosen by path (File ▸ Open recording) as a read-only :class:`Capture`."""
    try:
        recording_info(path)
    except sqlite3.Error as exc:
        raise ConfigError(
            f"not an EventDesk recording ({exc})", obj=f"file {str(path)!r}", field="file"
        ) from None
    return Capture(path, readonly=True)


def remove_recording(recordings_dir: Path, name: str) -> None:
    path = recording_path(recordings_dir, name)
    if not path.exists():
        raise NotFoundError("no such recording", obj=f"recording {name!r}", field="name")
    path.unlink()


__all__ = [
    "ImportResult",
    "LineProblem",
    "RecordingInfo",
    "import_recording",
    "list_recordings",
    "open_recording",
    "remove_recording",
]
