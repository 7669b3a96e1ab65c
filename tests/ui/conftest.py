"""Fixtures for the widget tests: a real capture and a way to fill it with events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.envelope import Event

MakeEvents = Callable[..., list[CapturedEvent]]


def make_event(model: str, key: str, i: int, *, op: str = "created", payload: Any = None) -> Event:
    return Event(
        datasource="ds-test",
        model=model,
        op=op,  # type: ignore[arg-type]
        key=key,
        rev=f"{i}-r",
        seq=f"{i}-seq",
        payload={"n": i, "region": "Bangalore" if i % 2 else "Pune"} if payload is None else payload,
    )


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Capture]:
    cap = Capture(tmp_path / "c.sqlite3")
    yield cap
    cap.close()


@pytest.fixture
def add_events(capture: Capture) -> MakeEvents:
    """``add_events(model, n, start=0)`` appends n events (keys k<i>) to the capture, returns them."""

    def add(model: str, n: int, start: int = 0, **kw: Any) -> list[CapturedEvent]:
        events = [make_event(model, f"k{i}", i, **kw) for i in range(start, start + n)]
        return capture.append(model, events, checkpoint=f"{start + n}-seq")

    return add
