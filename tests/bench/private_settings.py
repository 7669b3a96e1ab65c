"""The benchmarks' window settings (QSettings: layout, pane sizes) go to a temporary directory of
the run, never to the user's own ~/.config/EventDesk; child processes inherit the same place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def private_settings() -> Iterator[Path]:
    """Inside the block, ``XDG_CONFIG_HOME`` (where Qt keeps QSettings on Linux) is a temporary
    directory: set before any QSettings is made, it holds for this process and its children."""
    before = os.environ.get("XDG_CONFIG_HOME")
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-config-") as tmp:
        os.environ["XDG_CONFIG_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if before is None:
                os.environ.pop("XDG_CONFIG_HOME", None)
            else:
                os.environ["XDG_CONFIG_HOME"] = before
