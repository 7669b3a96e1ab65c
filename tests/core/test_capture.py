"""Capture: one transaction per batch, idempotent appends, checkpoints and route positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event


def ev(key: str, rev: str, model: str = "accounts", seq: object = 1) -> Event:
    return Event(
        datasource="couch",
        model=model,
        op="created" if rev.startswith("1-") else "updated",
        key=key,
        rev=rev,
        seq=seq,
        payload={"_id": key, "_rev": rev},
    )


def test_append_is_idempotent_and_moves_checkpoint(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    added = cap.append("accounts", [ev("a", "1-x", seq="1-abc"), ev("b", "1-y", seq="2-abc")], "2-abc")
    assert [e.envelope["key"] for e in added] == ["a", "b"]
    assert cap.checkpoint("accounts") == "2-abc"
    replay = cap.append("accounts", [ev("b", "1-y", seq="2-abc"), ev("b", "2-z", seq=3)], 3)
    assert [e.envelope["rev"] for e in replay] == ["2-z"]
    assert cap.checkpoint("accounts") == 3  # opaque: an int stays an int
    assert cap.count("accounts") == 3


def test_read_after_and_positions(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    cap.append("accounts", [ev(f"k{i}", "1-a") for i in range(5)], 5)
    cap.append("orders", [ev("o1", "1-a", model="orders")], 1)
    rows = cap.read_after("accounts", 0, 3)
    assert len(rows) == 3
    cap.set_route_position("r", rows[-1][0])
    assert cap.route_position("r") == rows[-1][0]
    assert cap.count("accounts", after=rows[-1][0]) == 2
    assert cap.route_position("unknown") is None


def test_previous_revision_and_latest(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    cap.append("accounts", [ev("a", "1-x"), ev("b", "1-y"), ev("a", "2-x")], 3)
    latest = cap.latest(2)
    assert [e.envelope["rev"] for e in latest] == ["1-y", "2-x"]
    prev = cap.previous_revision("accounts", "a", latest[-1].pos)
    assert prev is not None
    assert prev.envelope["rev"] == "1-x"


def test_a_failed_batch_leaves_nothing(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    cap.append("accounts", [ev("a", "1-x")], 1)
    bad = ev("b", "1-y")
    bad.payload = {"x": object()}  # cannot be serialised
    with pytest.raises(TypeError):
        cap.append("accounts", [ev("c", "1-z"), bad], 2)
    assert cap.count() == 1
    assert cap.checkpoint("accounts") == 1


def test_append_rows_returns_what_a_route_would_read(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    cap._insert_rows = 2  # several INSERT statements per batch
    first = cap.append_rows("accounts", [ev("a", "1-x"), ev("b", "1-y"), ev("e", "1-v")], 2)
    assert first.after == 0 and first.rows == cap.read_route_rows("accounts", 0, 10)  # all new
    cap.append("orders", [ev("o", "1-a", model="orders")], 1)
    before = cap.last_pos("accounts")
    # Replays of a and b among new revisions: only the new ones are stored and returned.
    batch = [ev("a", "1-x"), ev("c", "1-z"), ev("b", "1-y"), ev("a", "2-x"), ev("d", "1-w")]
    appended = cap.append_rows("accounts", batch, 7)
    assert appended.after == before
    assert [e.envelope["key"] for e in appended.events] == ["c", "a", "d"]
    assert appended.rows == cap.read_route_rows("accounts", before, 10)
    assert [row[0] for row in appended.rows] == [e.pos for e in appended.events]
    assert cap.append_rows("accounts", batch[:3], 7).events == []  # all replays


def test_a_full_disk_stops_appends_with_disk_full_and_loses_nothing_committed(tmp_path: Path) -> None:
    from eventdesk.core.errors import DiskFullError
    from tests.small_filesystem import fill, small_filesystem

    with small_filesystem(tmp_path / "fs", "2m") as fs:
        cap = Capture(fs / "capture.sqlite3")
        filler = fill(fs, leave=256 * 1024)
        body = "x" * 2000

        def batch(n: int) -> list[Event]:
            return [
                Event(
                    datasource="couch",
                    model="accounts",
                    op="created",
                    key=f"k{n}-{i}",
                    rev="1-a",
                    seq=n,
                    payload={"body": body},
                )
                for i in range(20)
            ]

        def append_until_full() -> int:
            for n in range(1000):
                cap.append("accounts", batch(n), n)
            raise AssertionError("1,000 batches of 40 KB fitted in 256 KB")

        with pytest.raises(DiskFullError) as full:  # not "cannot rollback - no transaction is active"
            append_until_full()
        committed = cap.checkpoint("accounts") + 1  # the checkpoint moved with each committed batch
        assert f"disk full at {fs / 'capture.sqlite3'}" in str(full.value)
        assert committed > 0
        assert cap.count("accounts") == committed * 20
        filler.unlink()
        cap.append("accounts", [ev("after", "1-a")], "after")  # space again: it goes on
        assert cap.count("accounts") == committed * 20 + 1
        cap.close()
