"""The hand-over from a connector's worker thread to capture, without a turn of the loop.

A connector that reads in a thread (a blocking SDK) puts the events it parsed into an
:class:`Intake`. The capture thread takes them from there in batches, appends each batch in
one transaction (its checkpoint is the batch's last ``seq``) and only then tells the loop,
which hands the new events to routes and live views: the loop never waits on SQLite, and
nothing reaches a route before it is captured. A lone change after a quiet spell is stored by
the worker thread itself, sparing a thread hand-off on the live path. Batches grow with the
backlog (the next one accumulates while one is appended, up to ``batch_size``), and the
worker blocks once ``limit`` events wait, so back-pressure reaches the server through TCP.
Measurements: docs/performance.md, "The hand-over from the feed thread to the capture".
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from typing import Any

from eventdesk.core.envelope import Event

INLINE_GAP_S = 0.002
"""A small batch is stored inline only if the previous put was at least this long ago."""

Store = Callable[[list[Event], Any], None]
"""Appends one batch with its checkpoint (called on the capture thread)."""


class IntakeClosedError(Exception):
    """The intake was closed (the connector is stopping): nothing more is taken."""


class Intake:
    """Events put by one worker thread, stored in order by ``store`` on ``executor`` (or, for
    a small batch while the intake is idle, on the worker thread: see ``inline_max``).

    ``failure`` (a loop future) gets the exception of a failed append; every later put raises
    it too, and what was waiting is dropped, so no checkpoint moves past a batch that was not
    captured.
    """

    def __init__(
        self,
        *,
        store: Store,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
        batch_size: int,
        limit: int | None = None,
        inline_max: int = 0,
    ) -> None:
        self._store = store
        self._executor = executor
        self._loop = loop
        self.batch_size = max(1, batch_size)
        self.limit = limit if limit is not None else 2 * self.batch_size
        # Batches of at most this many events, when nothing else of this intake is being
        # stored, are stored by the putting thread itself (0: always by the executor).
        self.inline_max = inline_max
        self._last_put = 0.0  # monotonic time of the last put (worker thread)
        self._cond = threading.Condition()
        self._events: list[Event] = []
        self._job: ThreadFuture[None] | None = None  # the drain step submitted and not yet done
        self._closed = False
        self._error: BaseException | None = None
        self.failure: asyncio.Future[None] = loop.create_future()

    # -- worker thread -------------------------------------------------------------------------
    def put(self, events: list[Event]) -> None:
        """Queue ``events`` for capture; blocks while ``limit`` events wait.

        Raises the append error once one failed, IntakeClosedError once closed.
        """
        if not events:
            return
        quiet_since = self._last_put
        with self._cond:
            while len(self._events) >= self.limit and not self._closed:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._closed:
                raise IntakeClosedError
            self._events.extend(events)
            now = self._last_put = time.monotonic()
            if self._job is not None:
                return  # the step under way takes these next
            # Inline only after a quiet spell (no put for INLINE_GAP_S): in a stream the thread
            # keeps reading while the capture thread stores, and the batches grow.
            inline = len(self._events) <= self.inline_max and now - quiet_since >= INLINE_GAP_S
            job = self._job = ThreadFuture() if inline else self._executor.submit(self._step)
        if inline:
            # A lone change: store it on this thread, sparing the hand-off to the capture
            # thread (the Capture's lock keeps SQLite to one thread at a time, and this
            # intake's batches still go in order: no step of it is under way).
            job.set_running_or_notify_cancel()
            try:
                self._step()
            finally:
                job.set_result(None)

    # -- capture thread ------------------------------------------------------------------------
    def _step(self) -> None:
        """Append one batch; submit the next step if more wait (a step per batch lets the
        capture thread's other work, such as route positions, go in between)."""
        with self._cond:
            batch = self._events[: self.batch_size]
            del self._events[: self.batch_size]
            self._cond.notify_all()
        try:
            if batch:
                self._store(batch, batch[-1].seq)
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self._events.clear()
                self._job = None
                self._cond.notify_all()
            self._call_loop(self._fail, exc)
            return
        with self._cond:
            self._job = self._executor.submit(self._step) if self._events else None
            self._cond.notify_all()

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _fail(self, exc: BaseException) -> None:
        if not self.failure.done():
            self.failure.set_exception(exc)

    # -- any thread ----------------------------------------------------------------------------
    def close(self) -> None:
        """Take nothing more; what was put is still stored (see :meth:`drained`)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._events)

    # -- loop ----------------------------------------------------------------------------------
    async def drained(self) -> None:
        """Return once everything put so far is stored (or has failed)."""
        while True:
            with self._cond:
                job = self._job
            if job is None:
                return
            await asyncio.wait({asyncio.wrap_future(job)})

    def retrieve_failure(self) -> BaseException | None:
        """The append error, if any, marked as seen (asyncio then stays quiet about it)."""
        if self.failure.done() and not self.failure.cancelled():
            return self.failure.exception()
        return None
