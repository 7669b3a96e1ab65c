"""The backlog's ``feed=normal`` pages, read one ahead of the thread that parses them.

While the feed thread parses and captures page N, a :class:`PageFetcher` thread has already
asked for page N+1, so the server is not idle meanwhile (docs/performance.md, "Reading the
feed"). It also bounds a page's size: a server or proxy may send one that never ends.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import requests

from eventdesk.connectors.cloudant.changes import page_end
from eventdesk.connectors.cloudant.errors import FeedError, StopRequestedError

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
