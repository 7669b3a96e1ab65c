"""Streaming export of captured events to JSON Lines, JSON, CSV and Parquet.

Promises: memory stays flat however many events are exported (the capture is read in chunks
and written as it goes); the file is written under a temporary name in the target directory
and renamed only when complete, so a cancelled or failed export leaves no file behind.

CSV columns are ``id, received_at, datasource, model, op, key, rev, seq``, then one
``payload.<field>`` column per top-level payload field, then ``payload`` (the whole payload as
JSON) and ``source`` (JSON). The payload columns are the union of the top-level fields of
*every* exported event whose payload is an object, in first-seen order: a first pass over the
selection collects them (exact, at the cost of reading the selection twice). Cells hold strings
as they are, null as an empty cell, and other values as JSON. RFC 4180 quoting, CRLF line ends,
UTF-8 (optionally with a BOM for spreadsheet programs).

Parquet (needs the ``eventdesk[parquet]`` extra, pyarrow) holds one row per event: the envelope
fields as strings (``rev`` nullable), ``seq``, ``payload`` and ``source`` as JSON text, so an
envelope survives the trip exactly.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.errors import ConfigError, JobCancelledError, OutputError
from eventdesk.core.scope import EventScope, Selection

FORMATS = ("jsonl", "json", "csv", "parquet")
EXTENSIONS = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "parquet": ".parquet"}
_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
ENVELOPE_COLUMNS = ("id", "received_at", "datasource", "model", "op", "key", "rev", "seq")
PAYLOAD_PREFIX = "payload."
PROGRESS_INTERVAL = 0.2
_WRITE_BATCH = 2048
_PARQUET_ROWS = 10_000


@dataclass(frozen=True)
class ExportProgress:
    """Where an export stands: ``phase`` is ``"columns"`` (CSV's first pass) or ``"writing"``;
    ``total`` is the number of rows to scan per pass, ``passes`` 2 for CSV."""

    phase: str
    exported: int
    scanned: int
    total: int
    elapsed: float
    passes: int = 1

    @property
    def fraction(self) -> float:
        """The share of the work done, 0..1."""
        work = self.total * self.passes
        done = self.scanned + (self.total if self.passes == 2 and self.phase == "writing" else 0)
        return min(1.0, done / work) if work else 1.0

    @property
    def rate(self) -> float:
        """Exported events per second so far."""
        return self.exported / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the share of the work done so far (None until it can be told)."""
        frac = self.fraction
        if frac <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed * (1 - frac) / frac)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    exported: int
    elapsed: float
    columns: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.exported / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[ExportProgress], None]


def format_for(path: Path | str, fmt: str | None = None) -> str:
    """The export format: ``fmt`` if given, else inferred from the file extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(
                f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", obj="export", field="format"
            )
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_EXTENSION:
        raise ConfigError(
            f"cannot tell the format from {Path(path).name!r}; give --format ({', '.join(FORMATS)}) "
            "or use .jsonl, .json, .csv or .parquet",
            obj="export",
            field="format",
        )
    return _BY_EXTENSION[suffix]


def pyarrow_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


_NOT_REGULAR = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_special(target: Path) -> None:
    """Raise ConfigError if ``target`` exists and is not a regular file (never followed)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{str(target)!r} is a directory; give a file name", obj="export", field="out")
    for test, what in _NOT_REGULAR:
        if test(mode):
            raise ConfigError(
                f"{str(target)!r} is {what}; an export writes only to a regular file or a new path",
                obj="export",
                field="out",
            )


def check_target(path: Path) -> Path:
    """Raise :class:`ConfigError` (field ``out``) if an export cannot be written to ``path``:
    its directory is missing or not writable, or it exists and is not a regular file (a
    FIFO, symbolic link, device or directory is never followed or replaced)."""
    target = Path(path).expanduser()
    _refuse_special(target)
    parent = target.parent if str(target.parent) else Path()
    if not parent.is_dir():
        raise ConfigError(f"directory {str(parent)!r} does not exist", obj="export", field="out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"directory {str(parent)!r} is not writable", obj="export", field="out")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{str(target)!r} exists and is not writable", obj="export", field="out")
    return target


def part_path(target: Path) -> Path:
    """Where an export to ``target`` is written until it is complete."""
    return target.with_name(f".{target.name}.part")


def _open_part(target: Path) -> int:
    """Create ``target``'s part file and lock it (the lock marks it as being written).

    A part file left by an export that crashed (nobody holds its lock) is removed first; one
    that another export is writing is left alone.
    """
    tmp = part_path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            _remove_stale_part(tmp)
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot write to {str(target.parent)!r}: {exc.strerror}", obj="export", field="out"
            ) from None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and exclusive: cannot be held
        return fd
    raise ConfigError(f"cannot create {str(tmp)!r}: it keeps coming back", obj="export", field="out")


def _in_the_way(tmp: Path) -> ConfigError:
    return ConfigError(
        f"{str(tmp)!r} is in the way and is not an export's part file; remove it", obj="export", field="out"
    )


def _remove_stale_part(tmp: Path) -> None:
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError:  # a symlink in the part file's place
        raise _in_the_way(tmp) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _in_the_way(tmp)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another export is writing {str(tmp.with_name(tmp.name[1:-5]))!r}; wait for it to end",
                obj="export",
                field="out",
            ) from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # ours to remove while we hold its lock
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[IO[bytes]]:
    """A binary file under a temporary name beside ``target``, renamed to it on success only.

    Raises :class:`OutputError` when the disk is full (or another write error happens); the
    temporary file is removed and ``target`` is left as it was.
    """
    tmp = part_path(target)
    fd = _open_part(target)
    lock = os.dup(fd)  # the same open file: its lock lasts until the rename is done
    try:
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
                yield fh
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"disk full writing {str(target)!r}", obj="export", field="out") from None
            if exc.errno in (errno.EIO, errno.EFBIG):
                raise OutputError(
                    f"cannot write {str(target)!r}: {exc.strerror}", obj="export", field="out"
                ) from None
            raise
        _refuse_special(target)  # checked again: it may have been put there meanwhile
        # No fsync: the rename is atomic against cancellation, errors and a killed process (the
        # capture's own crash model); a power loss may lose a fresh export, which can be made again.
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(lock)


class _Meter:
    """Throttled progress reporting and cancellation checks, shared by every writer."""

    def __init__(
        self,
        selection: Selection,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        two_pass: bool,
    ) -> None:
        self.selection = selection
        self.progress = progress
        self.cancel = cancel
        self.two_pass = two_pass
        self.started = time.monotonic()
        self.total = selection.total() if progress is not None else 0
        self.exported = 0
        self.phase = "columns" if two_pass else "writing"
        self._next = self.started + PROGRESS_INTERVAL

    def tick(self) -> None:
        """Called every few hundred events: raise if cancelled, report if it is time."""
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelledError("cancelled; no file was written", obj="export")
        if self.progress is not None:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + PROGRESS_INTERVAL
                self.report(now)

    def report(self, now: float | None = None) -> None:
        if self.progress is None:
            return
        elapsed = (now if now is not None else time.monotonic()) - self.started
        self.progress(
            ExportProgress(
                self.phase,
                self.exported,
                self.selection.scanned,
                self.total,
                elapsed,
                2 if self.two_pass else 1,
            )
        )


def export_events(
    capture: Capture,
    out: Path | str,
    fmt: str | None = None,
    scope: EventScope | None = None,
    *,
    csv_bom: bool = False,
    csv_guard_formulas: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ExportResult:
    """Export the events of ``scope`` from ``capture`` to ``out``; blocking, run it off the loop.

    ``csv_guard_formulas`` protects spreadsheet users from cells that would run as formulas
    (see :func:`cell`); off by default, because the file then no longer holds those text values
    exactly. Raises :class:`ConfigError` for a bad format, scope or target (naming the field) and
    :class:`~eventdesk.core.errors.JobCancelledError` when ``cancel`` is set; neither leaves a file behind.
    """
    target = check_target(Path(out))
    chosen = format_for(target, fmt)
    if chosen == "parquet" and not pyarrow_available():
        raise ConfigError(
            "Parquet export needs pyarrow: pip install 'eventdesk[parquet]'", obj="export", field="format"
        )
    selection = Selection(capture, scope or EventScope())
    meter = _Meter(selection, progress, cancel, two_pass=chosen == "csv")
    columns: tuple[str, ...] = ()
    if chosen == "csv":
        payload_keys = _payload_keys(selection, meter)
        selection = Selection(capture, selection.scope)
        meter.selection = selection
        meter.phase = "writing"
    with atomic_output(target) as fh:
        if chosen == "jsonl":
            _write_jsonl(fh, selection, meter)
        elif chosen == "json":
            _write_json(fh, selection, meter)
        elif chosen == "csv":
            columns = _write_csv(
                fh, selection, meter, payload_keys, bom=csv_bom, guard_formulas=csv_guard_formulas
            )
        else:
            columns = _write_parquet(fh, selection, meter)
        meter.tick()  # a cancel during the last chunk still wins
    meter.report()
    return ExportResult(target, chosen, meter.exported, time.monotonic() - meter.started, columns)


# -- writers -----------------------------------------------------------------------------------
def _write_jsonl(fh: IO[bytes], selection: Selection, meter: _Meter) -> None:
    if selection.joinable:
        for count, joined in selection.joined(b"\n"):
            fh.write(joined)
            fh.write(b"\n")
            meter.exported += count
            meter.tick()
        return
    batch: list[bytes] = []
    for _pos, raw, _env in selection:
        batch.append(raw)
        if len(batch) >= _WRITE_BATCH:
            batch.append(b"")
            fh.write(b"\n".join(batch))
            meter.exported += len(batch) - 1
            batch = []
            meter.tick()
    if batch:
        batch.append(b"")
        fh.write(b"\n".join(batch))
        meter.exported += len(batch) - 1


def _json_chunks(selection: Selection) -> Iterator[tuple[int, bytes]]:
    if selection.joinable:
        yield from selection.joined(b",\n")
        return
    batch: list[bytes] = []
    for _pos, raw, _env in selection:
        batch.append(raw)
        if len(batch) >= _WRITE_BATCH:
            yield len(batch), b",\n".join(batch)
            batch = []
    if batch:
        yield len(batch), b",\n".join(batch)


def _write_json(fh: IO[bytes], selection: Selection, meter: _Meter) -> None:
    """One array, one envelope per line (which lets the importer read it line by line)."""
    fh.write(b"[")
    first = True
    for count, joined in _json_chunks(selection):
        fh.write(b"\n" if first else b",\n")
        fh.write(joined)
        first = False
        meter.exported += count
        meter.tick()
    fh.write(b"]\n" if first else b"\n]\n")


def _payload_keys(selection: Selection, meter: _Meter) -> list[str]:
    seen: dict[str, None] = {}
    for n, (_pos, raw, env) in enumerate(selection, 1):
        payload = (env if env is not None else json_codec.loads(raw)).get("payload")
        if isinstance(payload, dict):
            for key in payload:
                if key not in seen:
                    seen[key] = None
        if n % 1024 == 0:
            meter.tick()
    return list(seen)


# What a spreadsheet program takes for the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any, guard_formulas: bool = False) -> str:
    """How one value looks in a CSV cell: strings as they are, null empty, the rest as JSON.

    With ``guard_formulas``, a string that a spreadsheet would run as a formula gets a leading
    ``'`` (shown as text there; the exact value is still in the ``payload`` JSON column).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        if guard_formulas and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value
    return json_codec.dumps(value).decode()


def _write_csv(
    fh: IO[bytes],
    selection: Selection,
    meter: _Meter,
    payload_keys: list[str],
    *,
    bom: bool,
    guard_formulas: bool,
) -> tuple[str, ...]:
    text = io.TextIOWrapper(fh, encoding="utf-8-sig" if bom else "utf-8", newline="", write_through=False)
    try:
        writer = csv.writer(text, dialect="excel", lineterminator="\r\n")
        columns = (
            *ENVELOPE_COLUMNS,
            *(PAYLOAD_PREFIX + k for k in payload_keys),
            "payload",
            "source",
        )
        writer.writerow(columns)
        dumps = json_codec.dumps
        rows: list[list[str]] = []
        for _pos, raw, env in selection:
            e = env if env is not None else json_codec.loads(raw)
            payload = e.get("payload")
            row = [cell(e.get(name), guard_formulas) for name in ENVELOPE_COLUMNS]
            if isinstance(payload, dict):
                row.extend(cell(payload.get(k), guard_formulas) for k in payload_keys)
            else:
                row.extend("" for _ in payload_keys)
            row.append(dumps(payload).decode())
            row.append(dumps(e.get("source")).decode())
            rows.append(row)
            if len(rows) >= _WRITE_BATCH:
                writer.writerows(rows)
                meter.exported += len(rows)
                rows = []
                meter.tick()
        writer.writerows(rows)
        meter.exported += len(rows)
        text.flush()
    finally:
        text.detach()  # the binary file belongs to atomic_output
    return columns


def _write_parquet(fh: IO[bytes], selection: Selection, meter: _Meter) -> tuple[str, ...]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = (*ENVELOPE_COLUMNS, "payload", "source")
    schema = pa.schema([(n, pa.string(), n == "rev") for n in names])
    writer = pq.ParquetWriter(fh, schema, compression="zstd")
    try:
        cols: dict[str, list[str | None]] = {n: [] for n in names}

        def flush() -> None:
            if cols["id"]:
                writer.write_table(pa.Table.from_pydict(cols, schema=schema))
                meter.exported += len(cols["id"])
                for values in cols.values():
                    values.clear()
                meter.tick()

        dumps = json_codec.dumps
        for _pos, raw, env in selection:
            e = env if env is not None else json_codec.loads(raw)
            for n in ("id", "received_at", "datasource", "model", "op", "key"):
                cols[n].append(str(e.get(n, "")))
            rev = e.get("rev")
            cols["rev"].append(None if rev is None else str(rev))
            cols["seq"].append(dumps(e.get("seq")).decode())
            cols["payload"].append(dumps(e.get("payload")).decode())
            cols["source"].append(dumps(e.get("source")).decode())
            if len(cols["id"]) >= _PARQUET_ROWS:
                flush()
        flush()
    finally:
        writer.close()
    return names


def envelope_from_parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an envelope from one row written by the Parquet exporter."""
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "datasource": row["datasource"],
        "model": row["model"],
        "op": row["op"],
        "key": row["key"],
        "rev": row["rev"],
        "seq": json_codec.loads(row["seq"]),
        "payload": json_codec.loads(row["payload"]),
        "source": json_codec.loads(row["source"]),
    }
