"""The capture's quarantine: entries per route with their reason, retried, dropped, forgotten."""

from __future__ import annotations

from pathlib import Path

from eventdesk.core.capture import QUARANTINE_HELD, QUARANTINE_RETRY, Capture
from tests.core.test_capture import ev


def test_entries_are_kept_per_route_retried_dropped_and_forgotten_with_the_route(tmp_path: Path) -> None:
    cap = Capture(tmp_path / "c.sqlite3")
    rows = cap.append_rows("accounts", [ev(f"k{i}", "1-a") for i in range(4)], 4).rows
    p1, p2 = rows[1][0], rows[2][0]
    cap.quarantine_add("out", p1, "topic", "too long")
    cap.quarantine_add("out", p2, "payload", "too big")
    cap.quarantine_add("other", p1, "topic", "too long")
    cap.quarantine_add("out", p1, "topic", "still too long")  # met again: one entry, one more attempt
    entries = cap.quarantine_entries("out")
    assert [(e.pos, e.key, e.field, e.reason, e.state, e.attempts) for e in entries] == [
        (p1, "k1", "topic", "still too long", QUARANTINE_HELD, 2),
        (p2, "k2", "payload", "too big", QUARANTINE_HELD, 1),
    ]
    assert entries[0].to_dict()["model"] == "accounts"
    assert cap.quarantine_counts() == {"out": 2, "other": 1}

    assert cap.quarantine_retry("out", [p2]) == 1
    assert [row[0] for row in cap.quarantine_due("out")] == [p2]
    assert cap.quarantine_due("other") == []
    assert cap.quarantine_entries("out", [p2])[0].state == QUARANTINE_RETRY
    cap.quarantine_add("out", p2, "payload", "too big again")  # the retry failed: held again
    assert cap.quarantine_due("out") == []
    cap.quarantine_retry("out")
    cap.quarantine_release("out", p2)  # the retry was published
    assert [e.pos for e in cap.quarantine_entries("out")] == [p1]

    assert cap.quarantine_drop("out", []) == 0
    assert cap.quarantine_drop(None, [p1]) == 2  # both routes' entries for that event
    cap.quarantine_add("out", p2, "payload", "too big")
    cap.forget(route="out")
    assert cap.quarantine_counts() == {}
    assert cap.count("accounts") == 4  # quarantine never touches the events
