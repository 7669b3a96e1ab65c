"""Render the main window over a capture of 1,000,000 events, its table scrolled deep into it.

    python packaging/screenshot_history.py [OUTPUT.png]

The capture is made fast by the tests' own maker (tests/ui/big_capture.py: a few seconds); the
window opens on it, counts it, and goes to a time (Go to time…) 412,345 events back from the
newest, where a row is selected and its detail shown.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from screenshot_desk import ROOT, SCREENSHOTS, desk, run, save, wait_for

from eventdesk.core.home import Home

sys.path.insert(0, str(ROOT))  # tests/ is not installed: the capture maker is taken from there
from tests.ui.big_capture import BIG, MODELS, fill_capture, received_at


def populate(home: Home) -> None:
    home.add_datasource("couch", "couchdb", {"url": "http://localhost:5984"})
    for model in MODELS:
        home.add_model(model, "couch", {"database": model})
    path = home.capture.path
    fill_capture(path, BIG)


async def render(output: Path) -> None:
    async with desk(populate) as (_home, window):
        table = window.table
        await wait_for(lambda: not table.model.loading and table.model.rowCount() >= BIG, 60, "the count")
        row = table.go_to_time(received_at(412_345))
        assert row is not None
        table.table.selectRow(row + 5)
        await asyncio.sleep(1.0)  # the detail pane shows the selected event
        window.refresh_status()
        await asyncio.sleep(0.3)
        save(window.grab(), output)


if __name__ == "__main__":
    sys.exit(run(render, SCREENSHOTS / "table-deep-in-a-million.png"))
