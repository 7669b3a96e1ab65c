"""How every kind waits before it tries again: one backoff policy for sources and brokers.

Exponential from ``initial`` to ``cap``, with jitter so that many clients cut off together do
not come back together; a connection that lived ``stable_after`` seconds starts the series
over; a server's ``Retry-After`` is honoured (never waiting less than it asks, up to ``cap``
unless the server asks for longer, bounded by ``retry_after_max``).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """The delays of one connection's retries (not thread-safe: one owner)."""

    initial: float = 0.2
    cap: float = 10.0
    stable_after: float = 5.0  # a connection that lived this long resets the series
    jitter: float = 0.5  # the delay is drawn from [base * (1 - jitter), base]
    retry_after_max: float = 300.0
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    attempt: int = 0
    _up_since: float | None = field(default=None, repr=False)

    def connected(self) -> None:
        """The connection is up: from now, it counts towards ``stable_after``."""
        self._up_since = self.clock()

    def lost(self) -> None:
        """The connection went down: reset the series if it had been stable."""
        if self._up_since is not None and self.clock() - self._up_since >= self.stable_after:
            self.attempt = 0
        self._up_since = None

    def reset(self) -> None:
        self.attempt = 0
        self._up_since = None

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try; counts the attempt."""
        self.lost()
        base = min(self.cap, self.initial * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        delay = base * (1.0 - self.jitter * self.rand())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit() also takes '¹' and other scripts' digits
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())
