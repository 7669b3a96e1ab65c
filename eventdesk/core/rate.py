"""Events-per-second meters for models and the whole runtime."""

from __future__ import annotations

import time
from collections import deque


class RateMeter:
    """Counts over a sliding window; cheap to update on every batch."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self.total = 0
        self._marks: deque[tuple[float, int]] = deque()

    def add(self, count: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.total += count
        self._marks.append((now, count))
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        return sum(c for _, c in self._marks) / self.window

    def _trim(self, now: float) -> None:
        while self._marks and self._marks[0][0] < now - self.window:
            self._marks.popleft()
