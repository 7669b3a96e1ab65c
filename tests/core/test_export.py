"""Export: every format, round trips, CSV field by field, scopes, cancel and failure leave no file."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConfigError, JobCancelledError, OutputError
from eventdesk.core.export import (
    ENVELOPE_COLUMNS,
    ExportProgress,
    envelope_from_parquet_row,
    export_events,
    format_for,
)
from eventdesk.core.filters import EventFilter
from eventdesk.core.scope import EventScope, parse_time
from tests.peers.servers import missing_peer
from tests.small_filesystem import small_filesystem as mounted_small_filesystem

TRICKY = [
    "plain",
    "with, comma",
    'with "quotes" inside',
    "line one\nline two\r\nline three",
    "Zürich — 東京 — emoji 🚀",
    "",
    " leading and trailing ",
    '"',
    ',\n"',
]


def make(i: int, model: str = "accounts", op: str = "created", **payload: Any) -> Event:
    return Event(
        datasource="ds",
        model=model,
        op=op,  # type: ignore[arg-type]
        key=f"k{i}",
        rev=None if i == 3 else f"{i}-r",
        seq=i if i % 2 else f"{i}-seq",
        payload={"n": i, "text": TRICKY[i % len(TRICKY)], **payload},
        source={"connector": "couchdb", "db": model},
        received_at=f"2026-11-29T10:00:{i:02d}.000Z",
    )


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    cap = Capture(tmp_path / "capture.sqlite3")
    events = []
    for i in range(30):
        model = ("accounts", "orders", "users")[i % 3]
        op = ("created", "updated", "deleted")[(i // 3) % 3]
        extra: dict[str, Any] = {"nested": {"a": [1, 2, {"b": None}]}} if i % 5 == 0 else {}
        if i == 7:
            extra["late_field"] = True  # a column that only one event has
        events.append(make(i, model, op, **extra))
    cap.import_events(events)  # interleaved models, capture order = i
    yield cap
    cap.close()


def all_envelopes(cap: Capture) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for _pos, raw in cap.iter_raw()]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_envelope_formats_carry_every_envelope_exactly(capture: Capture, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    result = export_events(capture, out)
    assert result.format == fmt and result.exported == 30
    if fmt == "jsonl":
        back = read_jsonl(out)
    elif fmt == "json":
        back = json.loads(out.read_text(encoding="utf-8"))
    else:
        back = [envelope_from_parquet_row(r) for r in pq.read_table(out).to_pylist()]
    assert back == all_envelopes(capture)
    assert [e["key"] for e in back] == [f"k{i}" for i in range(30)]  # capture order across models


def test_csv_reads_back_field_by_field(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = export_events(capture, out)
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert tuple(header) == result.columns
    assert header[: len(ENVELOPE_COLUMNS)] == list(ENVELOPE_COLUMNS)
    # payload columns: the union over every exported event, in first-seen order
    assert header[len(ENVELOPE_COLUMNS) :] == [
        "payload.n",
        "payload.text",
        "payload.nested",
        "payload.late_field",
        "payload",
        "source",
    ]
    envelopes = all_envelopes(capture)
    assert len(body) == len(envelopes)
    for row, env in zip(body, envelopes, strict=True):
        cells = dict(zip(header, row, strict=True))
        for name in ("id", "received_at", "datasource", "model", "op", "key"):
            assert cells[name] == env[name]
        assert cells["rev"] == ("" if env["rev"] is None else env["rev"])
        assert cells["seq"] == (env["seq"] if isinstance(env["seq"], str) else json.dumps(env["seq"]))
        assert cells["payload.text"] == env["payload"]["text"]  # quotes, commas, newlines, non-ASCII
        assert cells["payload.n"] == str(env["payload"]["n"])
        assert json.loads(cells["payload"]) == env["payload"]
        assert json.loads(cells["source"]) == env["source"]
        nested = env["payload"].get("nested")
        assert cells["payload.nested"] == (
            "" if nested is None else json.dumps(nested, separators=(",", ":"))
        )
        assert cells["payload.late_field"] == ("true" if "late_field" in env["payload"] else "")
    raw = out.read_bytes()
    assert raw.count(b"\r\n") >= len(body)  # RFC 4180 line ends
    assert not raw.startswith(b"\xef\xbb\xbf")


def test_csv_bom_is_optional_and_still_reads_back(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "bom.csv"
    export_events(capture, out, csv_bom=True, scope=EventScope(models=frozenset({"orders"})))
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["key"] for r in rows] == [f"k{i}" for i in range(1, 30, 3)]
    assert all(r["model"] == "orders" for r in rows)


def keys_of(path: Path) -> list[str]:
    return [e["key"] for e in read_jsonl(path)]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (EventScope(), list(range(30))),
        (EventScope(models=frozenset({"users", "accounts"})), [i for i in range(30) if i % 3 != 1]),
        (EventScope(ops=frozenset({"deleted"})), [i for i in range(30) if (i // 3) % 3 == 2]),
        (EventScope(since="2026-11-29T10:00:10.000Z", until="2026-11-29T10:00:13.000Z"), [10, 11, 12]),
        (EventScope(expression="payload.n > `26`"), [27, 28, 29]),
        (EventScope(expression="payload.nested != null && model == 'accounts'"), [0, 15]),
        (EventScope(text="ZÜRICH"), [i for i in range(30) if i % len(TRICKY) == 4]),
        (EventScope(positions=frozenset()), []),
        (EventScope(models=frozenset({"nothing"})), []),
    ],
)
def test_scopes_select_exactly_the_expected_events(
    capture: Capture, tmp_path: Path, scope: EventScope, expected: list[int]
) -> None:
    out = tmp_path / "out.jsonl"
    result = export_events(capture, out, scope=scope)
    assert keys_of(out) == [f"k{i}" for i in expected]
    assert result.exported == len(expected)


def test_selected_rows_honour_the_other_conditions(capture: Capture, tmp_path: Path) -> None:
    positions = {
        pos for pos, raw in capture.iter_raw() if orjson.loads(raw)["key"] in {"k2", "k5", "k9", "k11"}
    }
    out = tmp_path / "rows.json"
    export_events(capture, out, scope=EventScope(positions=frozenset(positions)))
    assert [e["key"] for e in json.loads(out.read_text())] == ["k2", "k5", "k9", "k11"]
    export_events(capture, out, scope=EventScope(positions=frozenset(positions), models=frozenset({"users"})))
    assert [e["key"] for e in json.loads(out.read_text())] == ["k2", "k5", "k11"]


def test_what_the_table_shows_is_the_table_filter(capture: Capture, tmp_path: Path) -> None:
    flt = EventFilter(models=frozenset({"orders"}), ops=frozenset({"updated"}), expression="payload.n > `3`")
    out = tmp_path / "shown.jsonl"
    export_events(capture, out, scope=EventScope.from_filter(flt))
    expected = [e["key"] for e in all_envelopes(capture) if flt.matches(e)]
    assert keys_of(out) == expected and expected


def test_empty_selection_gives_valid_empty_files(capture: Capture, tmp_path: Path) -> None:
    scope = EventScope(models=frozenset({"none"}))
    export_events(capture, tmp_path / "e.json", scope=scope)
    assert json.loads((tmp_path / "e.json").read_text()) == []
    export_events(capture, tmp_path / "e.jsonl", scope=scope)
    assert (tmp_path / "e.jsonl").read_bytes() == b""
    export_events(capture, tmp_path / "e.csv", scope=scope)
    assert (tmp_path / "e.csv").read_text().splitlines()[0].startswith("id,received_at")


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_a_cancelled_export_leaves_no_file(capture: Capture, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "out" / f"cancelled.{fmt}"
    target.parent.mkdir()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelledError):
        export_events(capture, target, cancel=cancel)
    assert list(target.parent.iterdir()) == []


class CancelAfter(threading.Event):
    """Reads as set from the ``checks``-th check on: a cancel that lands midway."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks <= 0 or super().is_set()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cancel_midway_keeps_the_previous_file(tmp_path: Path, fmt: str) -> None:
    cap = Capture(tmp_path / "big.sqlite3")
    cap.import_events([make(i) for i in range(20_000)])
    target = tmp_path / "out" / f"out.{fmt}"
    target.parent.mkdir()
    target.write_text("previous export\n")
    cancel = CancelAfter(3)
    with pytest.raises(JobCancelledError):
        export_events(cap, target, cancel=cancel)
    assert cancel.checks <= 0
    assert target.read_text() == "previous export\n"
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    cap.close()


def test_progress_reports_count_rate_and_eta(capture: Capture, tmp_path: Path) -> None:
    seen: list[ExportProgress] = []
    export_events(capture, tmp_path / "p.csv", progress=seen.append)
    last = seen[-1]
    assert last.exported == 30 and last.total == 30 and last.phase == "writing"
    assert last.fraction == 1.0 and last.eta == 0.0 and last.rate > 0


def test_bad_input_names_the_field(capture: Capture, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"out": tmp_path / "x.txt"}, "format"),
        ({"out": tmp_path / "x.jsonl", "fmt": "xml"}, "format"),
        ({"out": tmp_path / "missing" / "x.jsonl"}, "out"),
        ({"out": tmp_path}, "out"),
        ({"out": tmp_path / "x.jsonl", "scope": EventScope(expression="payload.[")}, "filter"),
        ({"out": tmp_path / "x.jsonl", "scope": EventScope(ops=frozenset({"upserted"}))}, "op"),
        ({"out": tmp_path / "x.jsonl", "scope": EventScope(since="2026-12-01", until="2026-11-01")}, "until"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ConfigError) as info:
            export_events(capture, **kwargs)
        assert info.value.field == field, kwargs
        assert info.value.obj == "export" or info.value.obj == "scope"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("capture")) == []


def test_format_inference() -> None:
    assert format_for("a.JSONL") == "jsonl"
    assert format_for("a.ndjson") == "jsonl"
    assert format_for("a.json") == "json"
    assert format_for("a.csv") == "csv"
    assert format_for("a.parquet") == "parquet"
    assert format_for("a.txt", "csv") == "csv"


def test_parse_time_forms() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert parse_time("2026-11-29T10:00:00Z", now=now) == "2026-11-29T10:00:00.000Z"
    assert parse_time("2026-11-29T10:00:00.5+02:00", now=now) == "2026-11-29T08:00:00.500Z"
    assert parse_time("15m", now=now) == "2026-11-29T11:45:00.000Z"
    assert parse_time("2h", now=now) == "2026-11-29T10:00:00.000Z"
    assert parse_time("now", now=now) == "2026-11-29T12:00:00.000Z"
    with pytest.raises(ConfigError) as info:
        parse_time("yesterday", field="until")
    assert info.value.field == "until"


def test_joined_windows_keep_capture_order_across_models(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    cap.import_events([make(i, model=("b", "a")[i % 2]) for i in range(50)])
    expected = [raw for _pos, raw in cap.iter_raw(models=["a", "b"])]
    joined = b"\n".join(j for _n, j in cap.iter_joined(b"\n", models=["b", "a"], span=7))
    assert joined.split(b"\n") == expected
    cap.close()


def test_csv_formula_guard_marks_only_text_a_spreadsheet_would_run(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "guard.sqlite3")
    risky = ['=HYPERLINK("http://x")', "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tTAB", "\rCR"]
    safe = ["plain", "a=b", "", "'already quoted"]
    texts = risky + safe
    cap.import_events([make(i, text=t, amount=-5) for i, t in enumerate(texts)])
    plain, guarded = tmp_path / "plain.csv", tmp_path / "guarded.csv"
    export_events(cap, plain)
    export_events(cap, guarded, csv_guard_formulas=True)
    cap.close()

    def rows(path: Path) -> list[dict[str, str]]:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    assert [r["payload.text"] for r in rows(plain)] == texts  # off by default: exact values
    got = rows(guarded)
    assert [r["payload.text"] for r in got] == ["'" + t for t in risky] + safe
    assert {r["payload.amount"] for r in got} == {"-5"}  # numbers are not text: left alone
    assert [json.loads(r["payload"])["text"] for r in got] == texts  # the JSON column stays exact


def _special_target(kind: str, path: Path, tmp_path: Path) -> None:
    """Make ``path`` a FIFO, a symlink (to a file or nowhere) or a device node like /dev/null."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "real.jsonl").write_text("the real file\n")
        path.symlink_to(tmp_path / "real.jsonl")
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nowhere.jsonl")
    elif kind == "device":
        if os.geteuid() != 0:
            missing_peer(
                "root", "creating a device node (like /dev/null) in a temporary directory needs root"
            )
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "dangling symlink", "device", "directory"])
def test_export_refuses_a_target_that_is_not_a_regular_file(
    capture: Capture, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "x.jsonl"
    _special_target(kind, target, tmp_path)
    before = os.lstat(target)
    with pytest.raises(ConfigError) as info:
        export_events(capture, target)
    assert info.value.field == "out" and info.value.obj == "export"
    assert str(target) in info.value.detail
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert [p.name for p in out.iterdir()] == ["x.jsonl"]
    if kind == "symlink":
        assert (tmp_path / "real.jsonl").read_text() == "the real file\n"


def test_a_stale_part_file_is_removed_and_the_export_written(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".x.jsonl.part").write_bytes(b"half an export from a crash")
    result = export_events(capture, out / "x.jsonl")
    assert result.exported == 30
    assert [p.name for p in out.iterdir()] == ["x.jsonl"]
    assert read_jsonl(out / "x.jsonl") == all_envelopes(capture)


def test_an_export_in_progress_to_the_same_file_is_not_disturbed(capture: Capture, tmp_path: Path) -> None:
    part = tmp_path / ".x.jsonl.part"
    part.write_bytes(b"being written")
    with part.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the export writing it holds it
        with pytest.raises(ConfigError) as info:
            export_events(capture, tmp_path / "x.jsonl")
    assert info.value.field == "out" and "another export" in info.value.detail
    assert part.read_bytes() == b"being written"
    assert not (tmp_path / "x.jsonl").exists()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    with mounted_small_filesystem(tmp_path / "small", "1m") as mount:
        yield mount


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_full_disk_is_a_clear_error_and_leaves_the_previous_file(
    small_filesystem: Path, tmp_path: Path, fmt: str
) -> None:
    cap = Capture(tmp_path / "big.sqlite3")
    cap.import_events([make(i, blob=os.urandom(600).hex()) for i in range(3000)])  # ~4 MB of JSON
    target = small_filesystem / f"x.{fmt}"
    target.write_text("previous export\n")
    with pytest.raises(OutputError) as info:
        export_events(cap, target)
    assert info.value.describe() == f"export: field 'out': disk full writing {str(target)!r}"
    assert target.read_text() == "previous export\n"
    assert [p.name for p in small_filesystem.iterdir()] == [target.name]
    cap.close()


def test_something_else_in_the_part_files_place_is_left_alone(capture: Capture, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("keep me\n")
    part = tmp_path / ".x.jsonl.part"
    part.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError) as info:
        export_events(capture, tmp_path / "x.jsonl")
    assert info.value.field == "out" and "is in the way" in info.value.detail
    assert part.is_symlink() and (tmp_path / "elsewhere").read_text() == "keep me\n"
    assert not (tmp_path / "x.jsonl").exists()
