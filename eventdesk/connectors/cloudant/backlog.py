"""The backlog: a database's changes up to now, read as ``feed=normal`` pages before the live feed.

Servers send pages faster than a continuous feed. :func:`catch_up` reads them
into the run; a :class:`PageFetcher` thread asks for page N+1 while page N is parsed and
captured, so the server is not idle meanwhile (docs/performance.md, "Reading the feed").
A page is bounded in size (a server or proxy may send one that never ends): a page cut
short gives up its complete changes and the change it was cut in is skipped, by name.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import requests

from eventdesk.connectors.cloudant.changes import (
    describe_row,
    page_end,
    parse_line,
    row_identity,
    split_page,
)
from eventdesk.connectors.cloudant.errors import FeedError, StopRequestedError
from eventdesk.core.contracts import State, StateChange

log = logging.getLogger(__name__)

PAGE_READ_SIZE = 1 << 20  # bytes asked per read of a feed=normal page

# How a fetcher opens the page that starts at a ``since``.
OpenPage = Callable[[Any], AbstractContextManager[requests.Response]]

# The page's bytes; the since of the page fetched after it (or None); whether it ended (a page
# cut at max_page_bytes did not).
FetchedPage = tuple[bytes | bytearray, Any, bool]


class PageFetcher:
    """Reads a backlog's ``feed=normal`` pages one ahead of their reader, on its own thread.

    A page's ``last_seq`` is read from its end as soon as its bytes are in, and the next
    request goes out at once: the server prepares page N+1 while page N is parsed and
    captured, instead of sitting idle meanwhile. At most
    ``AHEAD`` pages wait. A page is read as it arrives and cut at ``max_page_bytes`` (a
    server or proxy may send one that never ends). The fetcher stops by itself after a page
    whose end it cannot read or that was cut (the reader then parses it and starts a new
    fetcher from its ``last_seq``) or that makes no progress; its errors are raised by
    :meth:`get` in the reader's thread.
    """

    AHEAD = 2

    def __init__(
        self, open_page: OpenPage, since: Any, *, max_page_bytes: int, stop_event: threading.Event
    ) -> None:
        self.open_page = open_page
        self.since = since
        self.max_page_bytes = max_page_bytes
        self.stop_event = stop_event  # the run's: set when it is cancelled
        self.pages: queue.Queue[FetchedPage | BaseException] = queue.Queue(self.AHEAD)
        self.closed = threading.Event()
        self.thread = threading.Thread(
            target=self._main, name=f"{threading.current_thread().name}-pages", daemon=True
        )
        self.thread.start()

    def _main(self) -> None:
        since = self.since
        try:
            while not self.closed.is_set():
                with self.open_page(since) as response:
                    body, ended = self._read_page(response)
                if not ended:
                    self._put((body, None, False))
                    return
                end = page_end(body)
                next_since = None if end is None or end[1] == 0 or end[0] == since else end[0]
                if not self._put((body, next_since, True)) or next_since is None:
                    return
                since = next_since
        except BaseException as exc:  # handed to the reader, which classifies it
            self._put(exc)

    def _read_page(self, response: requests.Response) -> tuple[bytearray, bool]:
        """The page's body as it arrives, and whether it ended before ``max_page_bytes``."""
        cap = self.max_page_bytes
        body = bytearray()
        for chunk in response.iter_content(chunk_size=PAGE_READ_SIZE):
            body += chunk
            if len(body) > cap:
                return body, False
            if self.closed.is_set():
                raise StopRequestedError
        return body, True

    def _put(self, item: FetchedPage | BaseException) -> bool:
        while not self.closed.is_set():
            try:
                self.pages.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> FetchedPage:
        """The next page (raises the fetcher's error; StopRequestedError once the run stops)."""
        while True:
            if self.stop_event.is_set():
                raise StopRequestedError
            try:
                item = self.pages.get(timeout=0.05)
            except queue.Empty:
                if not self.thread.is_alive() and self.pages.empty():
                    raise FeedError("the page reader ended unexpectedly") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (at most one page's request)."""
        self.closed.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.pages.get_nowait()
        self.thread.join()


class BacklogRun(Protocol):
    """What the catch-up needs of the run it reads for (a :class:`~.feed.FeedRun`)."""

    position: Any  # where the next page starts; moved past what ``accept`` took
    stop_event: threading.Event
    label: str  # the model's, for the log

    def accept(self, rows: list[Any]) -> None: ...
    def parse_lines(self, lines: list[bytes]) -> list[Any]: ...
    def report(self, change: StateChange) -> None: ...


def catch_up(run: BacklogRun, open_page: OpenPage, *, limit: int, max_page_bytes: int) -> None:
    """Read the backlog as ``feed=normal`` pages of ``limit`` changes, which servers send
    faster than a continuous feed, from ``run.position`` until a page is the last.

    A :class:`PageFetcher` reads the pages ahead, so the server prepares the next page while
    this thread parses the last one. A page that is not valid JSON ends the catch-up: the
    continuous feed, read line by line, then skips just the bad change.
    """

    def new_fetcher() -> PageFetcher:
        return PageFetcher(open_page, run.position, max_page_bytes=max_page_bytes, stop_event=run.stop_event)

    fetcher = new_fetcher()
    try:
        while True:
            body, next_since, ended = fetcher.get()
            if run.stop_event.is_set():
                raise StopRequestedError
            if not ended:
                fetcher.close()
                progressed = _take_cut_page(run, body, max_page_bytes)
                body = b""  # not held while the next page is read
                if not progressed:
                    return
                fetcher = new_fetcher()
                continue
            try:
                page = parse_line(body)
            except ValueError as exc:
                log.warning(
                    "%s: a page of changes is not JSON (%s); reading change by change",
                    run.label,
                    exc,
                )
                return
            rows = page.get("results") if isinstance(page, dict) else None
            if not isinstance(rows, list):
                log.warning("%s: unexpected page of changes; reading change by change", run.label)
                return
            run.accept(rows)
            if page.get("last_seq") is not None:
                run.position = page["last_seq"]
            if len(rows) < limit or page.get("pending") == 0:
                return
            if next_since is None or next_since != run.position:
                # The fetcher could not read this page's end (or read ahead from elsewhere):
                # start over from what was accepted.
                fetcher.close()
                fetcher = new_fetcher()
    finally:
        fetcher.close()


def _take_cut_page(run: BacklogRun, body: bytes | bytearray, max_page_bytes: int) -> bool:
    """Accept the complete changes of a page cut at ``max_page_bytes`` and step over a change
    too long to read; False when that makes no progress (then the continuous feed,
    read line by line, takes over)."""
    label = run.label
    limit_mb = max_page_bytes // (1 << 20)
    rows, head = split_page(body)
    before = run.position
    log.warning(
        "%s: a page of changes went past %d MB without ending; taking the %d complete changes in it",
        label,
        limit_mb,
        len(rows),
    )
    run.accept(run.parse_lines(rows))
    if head is not None:
        _key, seq = row_identity(head)
        what = describe_row(head)
        if seq is not None and seq != before:
            message = f"skipped {what}: its row is longer than {limit_mb} MB"
            log.warning("%s: %s", label, message)
            run.report(StateChange(State.RUNNING, detail=message))
            run.position = seq
            return True
        message = f"{what} is longer than {limit_mb} MB; reading the feed change by change"
    elif rows:
        return True
    else:
        message = (
            f"a page of changes went past {limit_mb} MB without ending; reading the feed change by change"
        )
    log.warning("%s: %s", label, message)
    run.report(StateChange(State.RUNNING, detail=message))
    return bool(run.position != before)
