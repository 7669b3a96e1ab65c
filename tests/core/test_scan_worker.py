"""The filter's scan in a worker process answers exactly what the in-process scan answers, step by
step, is cancelled by a newer scan, and says so when the worker dies (a real capture, a real process)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from eventdesk.core import event_index, scan_worker
from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.event_index import scan
from eventdesk.core.filters import EventFilter
from eventdesk.core.scan_worker import ScanWorker

NOTES = ["Straße", "STRASSE", "\u017ftrasse", "plain", "KELVIN 5 \u212a", 'say "hi"', "Ünïcödé", "none"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    cap = Capture(tmp_path_factory.mktemp("scan") / "c.sqlite3")
    for model in ("accounts", "orders"):
        events = [
            Event(
                datasource="ds",
                model=model,
                op="updated" if i % 3 else "created",
                key=f"k{i}",
                rev=f"{i}-r",
                seq=f"{i}",
                payload={"n": i, "region": "Bangalore" if i % 2 else "Pune", "note": NOTES[i % len(NOTES)]},
            )
            for i in range(600)
        ]
        cap.append(model, events, checkpoint="600")
    yield cap
    cap.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[ScanWorker]:
    w = ScanWorker()
    yield w
    w.close()


def positions(founds: Any) -> list[int]:
    return [p for found in founds for p in found.block]


FILTERS = [
    EventFilter(expression="payload.region == 'Pune'"),
    EventFilter(models=frozenset({"accounts"}), expression="payload.n > `100` && op == 'updated'"),
    EventFilter(expression="length(payload.note) > `5`"),
    EventFilter(expression="payload.missing.deeper"),  # never truthy
    EventFilter(expression="abs(payload.note) == `1`"),  # fails on every envelope: no match
    EventFilter(ops=frozenset({"created"}), text="k1"),
    *(
        EventFilter(text=t)
        for t in ("strasse", "STRASSE", "k", '"hi', "ünï", "\u212a", "k599", "nothing-like-it")
    ),
    EventFilter(text="pune", expression="payload.n < `50`"),
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f"{f.text}|{f.expression}|{f.models}|{f.ops}")
def test_the_worker_finds_what_the_in_process_scan_finds(
    capture: Capture, worker: ScanWorker, flt: EventFilter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_index, "ENVELOPES_CHUNK", 97)  # several steps, sent to the worker too
    monkeypatch.setattr(event_index, "SCREEN_WINDOW", 211)
    before = capture.view_last_pos() + 1
    here = list(scan(capture, flt.compile(), before=before, after=5, cancelled=lambda: False))
    there = list(worker.scan(capture, flt, before=before, after=5, cancelled=lambda: False))
    assert worker.pid is not None and worker.pid != os.getpid()
    assert positions(there) == positions(here)
    assert [f.reached for f in there] == [f.reached for f in here]  # the same steps: the same progress
    assert len(there) > 1


def test_a_newer_scan_replaces_the_running_one(capture: Capture, worker: ScanWorker) -> None:
    before = capture.view_last_pos() + 1
    slow = EventFilter(expression="payload.n == `-1`")
    old = worker.scan(capture, slow, before=before, cancelled=lambda: False)
    next(old, None)  # started: the worker is on it
    flt = EventFilter(text="k599")
    assert positions(worker.scan(capture, flt, before=before, cancelled=lambda: False)) == positions(
        scan(capture, flt, before=before, cancelled=lambda: False)
    )
    old.close()


def test_a_cancelled_scan_stops_and_the_next_one_is_whole(capture: Capture, worker: ScanWorker) -> None:
    before = capture.view_last_pos() + 1
    stop = threading.Event()
    seen = 0
    for _ in worker.scan(
        capture, EventFilter(expression="payload.n >= `0`"), before=before, cancelled=stop.is_set
    ):
        seen += 1
        stop.set()
    assert seen == 1
    flt = EventFilter(expression="payload.region == 'Bangalore'")
    assert len(positions(worker.scan(capture, flt, before=before, cancelled=lambda: False))) == 600


def test_a_worker_that_dies_mid_scan_is_reported_and_the_next_scan_starts_a_new_one(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_index, "ENVELOPES_CHUNK", 20)
    worker = ScanWorker()
    try:
        before = capture.view_last_pos() + 1
        running = worker.scan(
            capture, EventFilter(expression="payload.n == `-1`"), before=before, cancelled=lambda: False
        )
        next(running)
        first = worker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="scan worker stopped"):
            list(running)
        flt = EventFilter(text="k1")
        found = positions(worker.scan(capture, flt, before=before, cancelled=lambda: False))
        assert found == positions(scan(capture, flt, before=before, cancelled=lambda: False))
        assert worker.pid not in (None, first)
    finally:
        worker.close()


def test_a_worker_that_cannot_start_leaves_the_scan_here_and_says_so(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no processes left")

    monkeypatch.setattr(scan_worker._CONTEXT, "Process", refuse)  # the one way to make spawn fail
    worker = ScanWorker()
    flt = EventFilter(expression="payload.region == 'Pune'")
    before = capture.view_last_pos() + 1
    with caplog.at_level(logging.WARNING, logger="eventdesk.core.scan_worker"):
        found = positions(worker.scan(capture, flt, before=before, cancelled=lambda: False))
    assert (
        found == positions(scan(capture, flt, before=before, cancelled=lambda: False)) and len(found) == 600
    )
    assert worker.pid is None
    assert "runs in the window's process" in caplog.text and "no processes left" in caplog.text
