"""Where a model taken over resumes and what a holder records (eventdesk/fleet/progress.py),
on a real capture file: no NATS here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.workspace import BrokerConfig, DatasourceConfig, ModelConfig, RouteConfig, Workspace
from eventdesk.fleet.progress import measure, prepare


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    cap = Capture(tmp_path / "c.sqlite3")
    yield cap
    cap.close()


def workspace(routes: int) -> Workspace:
    ws = Workspace()
    ws.put_datasource(DatasourceConfig("couch", "couchdb", {"url": "http://127.0.0.1:5984"}))
    ws.put_model(ModelConfig("m", "couch", {"database": "db"}))
    ws.put_broker(BrokerConfig("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1883"}))
    for i in range(routes):
        ws.put_route(RouteConfig(f"r{i}", "m", "mosq", {"topic": "t/{key}"}))
    return ws


def append(capture: Capture, first: int, count: int) -> None:
    events = [
        Event("couch", "m", "created", f"k{i}", f"1-{i}", f"{i}-seq", {"n": i})
        for i in range(first, first + count)
    ]
    capture.append("m", events, events[-1].seq)


def test_the_resume_point_is_the_last_event_every_route_published(capture: Capture) -> None:
    ws = workspace(routes=2)
    floor = prepare(capture, ws, "m", None)  # the fleet never ran it: the capture stays as it is
    assert floor == 0
    append(capture, 0, 10)
    capture.set_route_position("r0", 8)
    capture.set_route_position("r1", 5)
    found = measure(capture, ws, "m", floor, None)
    assert found.resume == {"seq": "4-seq", "key": "k4", "rev": "1-4"}  # position 5: k4
    assert found.figures["routes"] == {"r0": {"backlog": 2}, "r1": {"backlog": 5}}
    assert found.figures["checkpoint"] == "9-seq"


def test_taking_over_moves_the_checkpoint_and_the_routes_to_the_resume_point(capture: Capture) -> None:
    ws = workspace(routes=2)
    append(capture, 0, 10)  # this agent held the model before and read up to k9
    capture.set_route_position("r0", 10)
    capture.set_route_position("r1", 10)
    # Another agent held it since and published up to k6: resume after it.
    floor = prepare(capture, ws, "m", {"seq": "6-seq", "key": "k6", "rev": "1-6"})
    assert capture.checkpoint("m") == "6-seq"
    assert floor == 7 and capture.route_position("r0") == 7 and capture.route_position("r1") == 7
    # Nothing published under this lease yet: the resume point stays the one taken over.
    kept = {"seq": "6-seq", "key": "k6", "rev": "1-6"}
    assert measure(capture, ws, "m", floor, kept).resume == kept
    # A resume point this capture never saw (read by another agent only): from its end.
    floor = prepare(capture, ws, "m", {"seq": "42-seq", "key": "k42", "rev": "1-42"})
    assert floor == 10 and capture.route_position("r0") == 10 and capture.checkpoint("m") == "42-seq"
    append(capture, 43, 3)  # positions 11-13
    capture.set_route_position("r0", 13)
    capture.set_route_position("r1", 12)
    assert measure(capture, ws, "m", floor, None).resume == {"seq": "44-seq", "key": "k44", "rev": "1-44"}


def test_without_routes_the_checkpoint_is_the_resume_point(capture: Capture) -> None:
    ws = workspace(routes=0)
    floor = prepare(capture, ws, "m", {"seq": "3-seq"})
    assert capture.checkpoint("m") == "3-seq" and floor == 0
    assert measure(capture, ws, "m", floor, {"seq": "3-seq"}).resume == {"seq": "3-seq"}
    append(capture, 4, 2)
    assert measure(capture, ws, "m", floor, {"seq": "3-seq"}).resume == {"seq": "5-seq"}
    prepare(capture, ws, "m", {"seq": None})
    assert capture.checkpoint("m") is None  # the model starts from its own 'since'
