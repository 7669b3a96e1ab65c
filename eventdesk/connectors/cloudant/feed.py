"""The feed loop: one worker thread per running model, following a database's ``_changes``.

:class:`FeedRun` is one call of ``CloudantConnector.run``. Its thread catches up on the
backlog in ``feed=normal`` pages (:func:`~.backlog.catch_up`), then
follows the continuous feed, parses its lines and puts the events into the runtime's
:class:`~eventdesk.core.intake.Intake`. A failure is retried from the last ``seq`` read, with
the delays of :class:`~eventdesk.core.retry_policy.Backoff`; a terminal one ends the run. The
loop side stops the thread by shutting its sockets down, so a cancel returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from ibm_cloud_sdk_core import ApiException
from ibmcloudant.cloudant_v1 import CloudantV1
from urllib3.exceptions import ProtocolError

from eventdesk.connectors.cloudant.backlog import catch_up
from eventdesk.connectors.cloudant.changes import (
    change_to_event,
    describe_row,
    since_param,
)
from eventdesk.connectors.cloudant.errors import FeedError, StopRequestedError, classify, scrub
from eventdesk.connectors.cloudant.feed_stream import LineSplitter, ReadPacer
from eventdesk.connectors.cloudant.settings import CloudantModelSettings
from eventdesk.connectors.cloudant.transport import (
    READ_SIZE,
    SocketTracker,
    abort_response,
    feed_bytes,
    make_service,
    post_changes,
    track_sockets,
)
from eventdesk.core import json_codec
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event, new_event_ids, utc_now_iso
from eventdesk.core.errors import ConnectorError
from eventdesk.core.retry_policy import Backoff, parse_retry_after

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedTuning:
    """The knobs of one run's reader: ``CloudantConnector``'s class attributes (documented
    there), which tests override to make faults quick."""

    heartbeat_ms: int
    backoff_start: float
    backoff_cap: float
    stable_after: float
    stop_timeout: float
    max_line_bytes: int
    max_page_bytes: int
    busy_gap: float
    coalesce: float
    linger: float
    linger_rate: float


class FeedRun:
    """One call of ``CloudantConnector.run``: a worker thread and the loop side feeding it.

    The worker opens the continuous feed, parses lines into the host's intake and reconnects
    with backoff; the loop side waits for it to end and stops it. Only the loop side calls
    ``host``.
    """

    def __init__(
        self, connector: Connector, tuning: FeedTuning, since: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        settings = CloudantModelSettings.from_validated(connector.model.settings)
        self.connector = connector
        self.label = connector.model.label
        self.tuning = tuning
        self.loop = loop
        self.database = settings.database
        self.batch_size = settings.batch_size
        self.include_docs = settings.include_docs
        self.selector = settings.selector
        # Where the next connection starts: the last seq read (and buffered) in this run.
        self.position: Any = settings.since if since is None else since
        # The delays between tries (the worker thread's; a page fetcher reports a connection
        # to it only while the worker waits for that fetcher).
        self.backoff = Backoff(
            initial=self.tuning.backoff_start,
            cap=self.tuning.backoff_cap,
            stable_after=self.tuning.stable_after,
        )
        self.intake = connector.host.intake(self.batch_size)
        self.stop_event = threading.Event()
        self.stopping = False  # loop side: no state reports once set
        self.finished: asyncio.Future[None] = loop.create_future()
        self.sockets = SocketTracker()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._opened = False
        self._running_reported = False
        self._ended = False
        self.thread = threading.Thread(
            target=self._main, name=f"eventdesk-cloudant-{connector.model.name}", daemon=True
        )

    # -- loop side ---------------------------------------------------------------------------
    async def wait_done(self) -> None:
        """Wait until the worker ends or a batch cannot be captured; re-raise the error.

        What the worker put before it ended is captured before this returns.
        """
        intake = self.intake
        await asyncio.wait({self.finished, intake.failure}, return_when=asyncio.FIRST_COMPLETED)
        if not intake.failure.done():
            await intake.drained()
        failure = intake.retrieve_failure()
        if failure is not None:
            raise failure
        self.finished.result()

    async def stop(self) -> None:
        """End the worker within ``tuning.stop_timeout``: close its socket under it; what it read is
        still captured (at most the intake's limit, one or two batches)."""
        deadline = time.monotonic() + self.tuning.stop_timeout
        self.stopping = True
        self.stop_event.set()
        self.intake.close()
        self.sockets.shutdown_all()
        with self._lock:
            response = self._response
        if response is not None:  # the one path left when a proxy is used
            abort_response(response)
        await self.intake.drained()
        self.intake.retrieve_failure()  # the host reports it; retrieved so asyncio stays quiet
        if not self.finished.done():
            await asyncio.wait({self.finished}, timeout=max(0.0, deadline - time.monotonic()))
        if self.finished.done():
            self.finished.exception()  # retrieved: nobody else will
            self.thread.join(0.1)  # it has already called back; only its return is left
        if self.thread.is_alive():
            log.warning("%s: the reader thread is still connecting; it ends on its own", self.label)

    def _finish(self, error: BaseException | None) -> None:
        if not self.finished.done():
            if error is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(error)

    def _set_state(self, change: StateChange) -> None:
        if not self.stopping:
            self.connector.host.set_state(change)

    # -- worker thread -----------------------------------------------------------------------
    def _call_loop(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(callback, *args)

    def report(self, change: StateChange) -> None:
        self._call_loop(self._set_state, change)

    def _main(self) -> None:
        error: BaseException | None = None
        service: CloudantV1 | None = None
        connector = self.connector
        try:
            service = make_service(
                connector.datasource, connector.secret, read_timeout=2 * self.tuning.heartbeat_ms / 1000
            )
            track_sockets(service, self.sockets)
            self._follow(service)
        except StopRequestedError:
            pass
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # a bug or an SDK surprise (unless stop() broke a read on purpose)
            if not self.stop_event.is_set():
                log.exception("%s: the changes reader failed", self.label)
                error = ConnectorError(
                    scrub(f"unexpected {type(exc).__name__}: {exc}", connector.secret),
                    obj=self.label,
                    terminal=True,
                )
        finally:
            if service is not None:
                service.get_http_client().close()
            self._call_loop(self._finish, error)

    def _follow(self, service: CloudantV1) -> None:
        """Read, and after a failure that is not terminal wait (backoff) and read again."""
        connector = self.connector
        backoff = self.backoff
        while True:
            opened_at = time.monotonic()
            try:
                self._read_once(service)
            except StopRequestedError:
                raise
            except (ApiException, requests.RequestException, ProtocolError, OSError, FeedError) as exc:
                if self.stop_event.is_set():
                    raise StopRequestedError from None
                error = classify(exc, connector.datasource, connector.model, connector.secret)
                if error.terminal:
                    raise error from None
                response = exc.http_response if isinstance(exc, ApiException) else None
                retry_after = (
                    None if response is None else parse_retry_after(response.headers.get("Retry-After"))
                )
                # The series starts over after a feed that stayed open ``stable_after`` seconds
                # (open_feed reports the opening); a server's Retry-After is waited out.
                delay = backoff.next_delay(retry_after)
                log.info("%s: %s; retrying in %.1f s", self.label, error.describe(), delay)
                self.report(StateChange(State.RETRYING, detail=error.describe(), retry_in=round(delay, 3)))
                self._running_reported = False
                if self.stop_event.wait(delay):
                    raise StopRequestedError from None
            else:  # the server ended the feed cleanly (last_seq): reopen, gently if it was at once
                backoff.reset()
                if time.monotonic() - opened_at < 1.0 and self.stop_event.wait(self.tuning.backoff_start):
                    raise StopRequestedError

    def _read_once(self, service: CloudantV1) -> None:
        """Catch up from ``position`` in pages, then follow the continuous feed until it ends."""
        self._opened = False
        self._ended = False
        if self.position == "now":  # pin "now" so a reconnect does not skip what happened meanwhile
            info = service.get_database_information(db=self.database).get_result()
            if isinstance(info, dict) and info.get("update_seq") is not None:
                self.position = info["update_seq"]
        self._catch_up(service)
        tuning = self.tuning
        pacer = ReadPacer(
            busy_gap=tuning.busy_gap,
            coalesce=tuning.coalesce,
            linger=tuning.linger,
            linger_rate=tuning.linger_rate,
            full_read=READ_SIZE // 4,
        )
        with self.open_feed(service, feed="continuous") as response:
            splitter = LineSplitter(self.tuning.max_line_bytes)
            for chunk in feed_bytes(response, pacer, self.stop_event):
                if self.stop_event.is_set():
                    raise StopRequestedError
                dropped = splitter.dropped
                lines = splitter.feed(chunk)
                if splitter.dropped != dropped:
                    message = (
                        f"skipped {describe_row(splitter.dropped_head)}: "
                        f"its line is longer than {self.tuning.max_line_bytes // (1 << 20)} MB"
                    )
                    log.warning("%s: %s", self.label, message)
                    self.report(StateChange(State.RUNNING, detail=message))
                if lines:
                    self.accept(self.parse_lines(lines))
            if not self._ended:
                raise FeedError("the server closed the changes feed")

    def _catch_up(self, service: CloudantV1) -> None:
        """Read the backlog from ``position`` in ``feed=normal`` pages (backlog.py)."""
        limit = min(max(self.batch_size, 100), 1000)  # bounds the memory one page takes

        def open_page(since: Any) -> contextlib.AbstractContextManager[requests.Response]:
            return self.open_feed(service, feed="normal", limit=limit, since=since)

        catch_up(self, open_page, limit=limit, max_page_bytes=self.tuning.max_page_bytes)

    @contextlib.contextmanager
    def open_feed(
        self, service: CloudantV1, *, feed: str, limit: int | None = None, since: Any = None
    ) -> Iterator[requests.Response]:
        """POST ``_changes`` from ``position`` (or ``since``) as a stream the loop side can abort.

        Called by the worker thread and by its page fetcher's thread.
        """
        params: dict[str, Any] = {
            "feed": feed,
            "include_docs": self.include_docs,
            "since": since_param(self.position if since is None else since),
            "limit": limit,
        }
        if feed == "continuous":
            params["heartbeat"] = self.tuning.heartbeat_ms
        response = post_changes(service, self.database, params, self.selector)
        with self._lock:
            if self.stop_event.is_set():
                response.close()
                raise StopRequestedError
            self._response = response
        try:
            if not self._opened:
                self._opened = True
                self.backoff.connected()
            if not self._running_reported:
                self._running_reported = True
                self.report(StateChange(State.RUNNING))
            yield response
        finally:
            with self._lock:
                self._response = None
            response.close()

    def parse_lines(self, lines: list[bytes]) -> list[Any]:
        """The JSON rows of ``lines``; heartbeats dropped, non-JSON lines skipped with a warning."""
        rows: list[Any] = []
        # One scan for long numbers over all the lines, not one per line.
        exact = json_codec.needs_exact(b"\n".join(lines))
        parse = json_codec.loads_exact if exact else json_codec.loads_scanned
        for line in lines:
            if not line.strip():
                continue  # heartbeat
            try:
                rows.append(parse(line))
            except ValueError as exc:
                log.warning(
                    "%s: skipped a line of the changes feed that is not JSON (%d bytes): %s",
                    self.label,
                    len(line),
                    exc,
                )
        return rows

    def accept(self, rows: list[Any]) -> None:
        """Buffer the changes among ``rows`` and move ``position`` past them."""
        label = self.label
        names = {
            "datasource": self.connector.datasource.name,
            "model": self.connector.model.name,
            "database": self.database,
        }
        events: list[Event] = []
        position = self.position
        feed_error: str | None = None
        ids = iter(new_event_ids(len(rows)))  # one lock and clock read, not one per change
        received_at = utc_now_iso()
        for row in rows:
            if not isinstance(row, dict):
                log.warning("%s: skipped a row of the changes feed that is not an object", label)
            elif "id" in row:
                event = change_to_event(row, **names, event_id=next(ids), received_at=received_at)
                if event is None:
                    log.warning("%s: skipped a change without a usable id or seq", label)
                    continue
                events.append(event)
                position = event.seq
            elif "last_seq" in row:
                position = row["last_seq"]
                self._ended = True
            elif "error" in row:
                feed_error = f"the changes feed reported {row.get('error')}: {row.get('reason')}"
                break
            else:
                log.warning("%s: skipped a row of the changes feed that is not a change", label)
        if events:
            try:
                self.intake.put(events)
            except Exception:  # closed (stopping), or an earlier batch failed: the loop reports it
                raise StopRequestedError from None
        self.position = position
        if feed_error is not None:
            raise FeedError(feed_error)
