"""A logging filter that lets the same warning through at most once per interval, with a count.

A flood of one error (a client hammering a receiver, a socket that keeps failing) otherwise
writes one line per occurrence: stderr grows by megabytes a second and hides everything else.
Records of one kind (same logger, level and first line of the message template) pass once per
interval; the next one that passes says how many were held back: "… (and 1,099 more in the
last 10 s)".
"""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL = 10.0
_MAX_KINDS = 1000  # distinct kinds remembered; forgetting them all only lets one of each through again


class RepeatedMessageFilter(logging.Filter):
    """Pass a warning or error of a given kind at most once per ``interval`` seconds."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind -> (passed at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # asked for with -v: shown as it comes
        kind = (record.name, record.levelno, str(record.msg).partition("\n")[0][:200])
        now = time.monotonic()
        with self._lock:
            passed_at, held = self._kinds.get(kind, (None, 0))
            if passed_at is not None and now - passed_at < self.interval:
                self._kinds[kind] = (passed_at, held + 1)
                return False
            if len(self._kinds) >= _MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = (now, 0)
        if held:
            since = now - passed_at if passed_at is not None else self.interval
            span = f"{since:.0f}" if since >= 10 else f"{since:.1f}"
            record.msg = f"{record.msg} (and {held:,} more in the last {span} s)"
        return True


def throttle(*logger_names: str, interval: float = DEFAULT_INTERVAL) -> None:
    """Install one :class:`RepeatedMessageFilter` on each named logger (once; idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatedMessageFilter) for f in logger.filters):
            logger.addFilter(RepeatedMessageFilter(interval))
