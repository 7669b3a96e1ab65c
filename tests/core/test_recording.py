"""Recordings: export -> import round trips, bad lines with line numbers, kept apart from capture."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import orjson
import pytest

from eventdesk.core.capture import Capture
from eventdesk.core.errors import ConfigError, JobCancelledError, NotFoundError
from eventdesk.core.export import export_events
from eventdesk.core.filters import EventFilter, filter_events
from eventdesk.core.recording import (
    import_recording,
    list_recordings,
    open_recording,
    remove_recording,
)
from eventdesk.core.scope import EventScope
from tests.core.test_export import make


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    cap = Capture(tmp_path / "capture.sqlite3")
    events = [make(i, ("accounts", "orders")[i % 2], ("created", "updated")[i % 2]) for i in range(12)]
    # a second revision of k0, for the diff
    second = make(0, "accounts", "updated")
    second.rev = "2-r"
    second.payload = {"n": 100, "text": "changed"}
    cap.import_events([*events, second])
    yield cap
    cap.close()


def envelopes(cap: Capture) -> list[dict[str, object]]:
    return [orjson.loads(raw) for _pos, raw in cap.iter_raw()]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_export_import_round_trip_gives_identical_envelopes(
    capture: Capture, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"export.{fmt}"
    export_events(capture, out)
    rdir = tmp_path / "recordings"
    result = import_recording(rdir, out)
    assert result.imported == 13 and result.bad_lines == 0 and result.duplicates == 0
    assert result.recording.name == "export" and result.recording.events == 13
    rec = open_recording(rdir, "export")
    try:
        assert envelopes(rec) == envelopes(capture)
    finally:
        rec.close()


def test_a_recording_is_browsable_filterable_and_diffable(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    export_events(capture, out)
    rdir = tmp_path / "recordings"
    import_recording(rdir, out, "session-1")
    rec = open_recording(rdir, "session-1")
    try:
        latest = rec.latest(5)
        assert [e.envelope["key"] for e in latest][-1] == "k0"
        previous = rec.previous_revision("accounts", "k0", latest[-1].pos)
        assert previous is not None and previous.envelope["rev"] == "0-r"
        flt = EventFilter(models=frozenset({"orders"}), expression="payload.n > `6`").compile()
        shown = [e.envelope["key"] for e in filter_events(rec.latest(100), flt)]
        assert shown == ["k7", "k9", "k11"]
        with pytest.raises(Exception, match="readonly"):
            rec.import_events([make(99)])
    finally:
        rec.close()
    # kept apart: the live capture did not change, and the recording lives in its own file
    assert capture.count() == 13
    assert [r.name for r in list_recordings(rdir)] == ["session-1"]
    assert not (rdir / "session-1.sqlite3-wal").exists()


def test_bad_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    good = [make(i).to_dict() for i in range(3)]
    lines = [
        json.dumps(good[0]),
        "",
        "{not json",
        json.dumps(good[1]),
        json.dumps({"id": "x", "model": "m"}),
        json.dumps([1, 2]),
        json.dumps({**good[2], "op": "upserted"}),
        json.dumps(good[2]),
        json.dumps(good[2]),  # a duplicate
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_recording(tmp_path / "rec", src)
    assert result.imported == 3 and result.duplicates == 1 and result.bad_lines == 4
    assert [p.line for p in result.problems] == [3, 5, 6, 7]
    assert "not JSON" in result.problems[0].message
    assert "'received_at' is missing" in result.problems[1].message
    assert "JSON object" in result.problems[2].message
    assert "'op'" in result.problems[3].message


def test_pretty_printed_json_arrays_import_with_line_numbers(tmp_path: Path) -> None:
    events = [make(i).to_dict() for i in range(3)]
    events[1] = {"broken": True}
    src = tmp_path / "pretty.json"
    src.write_text(json.dumps(events, indent=2), encoding="utf-8")
    result = import_recording(tmp_path / "rec", src)
    assert result.imported == 2 and result.bad_lines == 1
    line = result.problems[0].line
    assert src.read_text().splitlines()[line - 1].strip() == "{"
    assert '"broken": true' in src.read_text().splitlines()[line]


def test_nothing_importable_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "junk.jsonl"
    src.write_text("hello\nworld\n")
    rdir = tmp_path / "rec"
    with pytest.raises(ConfigError) as info:
        import_recording(rdir, src)
    assert info.value.field == "file" and "line 1" in info.value.describe()
    assert list(rdir.iterdir()) == []
    with pytest.raises(ConfigError) as info:
        import_recording(rdir, tmp_path / "missing.jsonl")
    assert info.value.field == "file"


def test_names_are_unique_or_refused(capture: Capture, tmp_path: Path) -> None:
    out = tmp_path / "day.jsonl"
    export_events(capture, out, scope=EventScope(models=frozenset({"orders"})))
    rdir = tmp_path / "rec"
    assert import_recording(rdir, out).recording.name == "day"
    assert import_recording(rdir, out).recording.name == "day-2"
    with pytest.raises(ConfigError) as info:
        import_recording(rdir, out, "day")
    assert info.value.field == "name"
    with pytest.raises(ConfigError) as info:
        import_recording(rdir, out, "../escape")
    assert info.value.field == "name"
    remove_recording(rdir, "day")
    assert [r.name for r in list_recordings(rdir)] == ["day-2"]
    with pytest.raises(NotFoundError):
        open_recording(rdir, "day")


def test_cancelled_import_leaves_no_recording(tmp_path: Path) -> None:
    src = tmp_path / "many.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(make(i).to_dict()) for i in range(5000)))
    cancel = threading.Event()
    cancel.set()
    rdir = tmp_path / "rec"
    with pytest.raises(JobCancelledError):
        import_recording(rdir, src, cancel=cancel)
    assert list(rdir.iterdir()) == []
