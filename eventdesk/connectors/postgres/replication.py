"""One model's logical replication session, run in its worker thread.

psycopg2's ``LogicalReplicationConnection`` speaks the streaming replication protocol. Once
the server, the table, the publication and the slot are in order (server.py), a session sends
``START_REPLICATION SLOT … LOGICAL <lsn> (proto_version '1', publication_names '…')`` and
reads: each XLogData payload is decoded (pgoutput.py), turned into
events (changes.py) and handed to the runtime with ``host.deliver`` in batches. A batch's
checkpoint is the end LSN of the last transaction it completes (a batch cut inside a big
transaction carries the previous one's), and the slot's flush position, sent in standby status
updates, moves only to checkpoints the capture has committed: after a crash the server sends
again what the capture may lack, and the capture stores each change once. Feedback goes on at
the server's pace (a fraction of its ``wal_sender_timeout``) while the capture is busy.
"""

from __future__ import annotations

import asyncio
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from eventdesk.connectors.postgres.changes import ChangeBuilder, stamp
from eventdesk.connectors.postgres.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)
from eventdesk.connectors.postgres.server import TableInfo, Target
from eventdesk.core.envelope import Event

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2
"""Batches handed to the capture and not yet committed; the reader waits beyond that."""

FAST_TAGS = (0x49, 0x55)  # 'I' and 'U': the first byte of an Insert and an Update message

LAG_REPORT_S = 5.0
"""How often (at most) the slot's lag is reported, when it changed."""


class StopRequestedError(Exception):
    """The run was cancelled: unwind the worker thread without reporting anything."""


class ReplicationSession:
    """Reads one replication connection until it fails or ``stop`` is set (worker thread)."""

    def __init__(
        self,
        *,
        target: Target,
        info: TableInfo,
        builder: ChangeBuilder,
        deliver: Callable[[list[Event], Any], Future[None]],
        stop: threading.Event,
        batch_size: int,
        checkpoint: str,
    ) -> None:
        self.target = target
        self.builder = builder
        self.deliver = deliver
        self.stop = stop
        self.batch_size = batch_size
        self.checkpoint = checkpoint  # resume LSN of the last transaction handed over whole
        timeout_s = info.wal_sender_timeout_ms / 1000.0
        # Feedback at a third of the server's timeout, within psycopg2's bounds (at least 1 s;
        # 10 s, its default, at most).
        self.status_interval = 10.0 if timeout_s <= 0 else max(1.0, min(10.0, timeout_s / 3))
        self.pending: list[Event] = []  # events of complete transactions, not yet handed over
        self.open: list[Event] = []  # events of the transaction being read
        self.pending_lsn: str | None = None  # checkpoint of ``pending`` (its last commit's end)
        self.split = False  # the open transaction already went out in part
        self.in_flight: deque[tuple[Future[None], int | None]] = deque()
        self.cursor: Any = None
        self.on_delivered: Callable[[str], None] = lambda lsn: None
        self.on_lag: Callable[[int], None] = lambda lag: None
        self.flushed = 0  # the last position confirmed to the server
        self.fed_at = time.monotonic()  # when keep_alive last sent a status update
        self.lag_reported: tuple[float, int] = (time.monotonic(), 0)

    # -- the read loop ---------------------------------------------------------------------------
    def run(self, conn: Any, start_lsn: int) -> None:
        cur = self.cursor = conn.cursor()
        cur.start_replication(
            slot_name=self.target.names.slot,
            decode=False,
            start_lsn=start_lsn,
            options={"proto_version": "1", "publication_names": self.target.names.publication},
            status_interval=self.status_interval,
        )
        builder = self.builder
        while True:
            if self.stop.is_set():
                raise StopRequestedError
            msg = cur.read_message()
            if msg is None:
                self.settle()
                if not self.in_flight:
                    # Nothing is being stored: hand over now (a lone change goes straight on).
                    # Otherwise the batch grows until the one in flight is committed.
                    self.hand_over(partial=False)
                self.report_lag()
                # Waiting for a commit, look again soon; else sleep until the server sends.
                wait = 0.001 if self.in_flight and self.pending_lsn is not None else 0.2
                select.select([conn], [], [], min(wait, self.status_interval))
                continue
            payload = msg.payload
            # An insert or plain update of the table goes the fast way; the rest is decoded in full.
            event = builder.fast_change(payload) if payload[0] in FAST_TAGS else None
            if event is not None:
                if len(self.open) >= self.batch_size:  # a big transaction: hand over a part
                    self.hand_over(partial=True)
                self.open.append(event)
                continue
            message = decode(payload)
            if isinstance(message, (Insert, Update, Delete, Truncate)):
                event = builder.change(message)
                if event is not None:
                    if len(self.open) >= self.batch_size:
                        self.hand_over(partial=True)
                    self.open.append(event)
            elif isinstance(message, Begin):
                builder.begin(message)
            elif isinstance(message, Commit):
                self.commit(message.end_lsn)
            elif isinstance(message, Relation):
                builder.relation(message)
            # Type and Origin messages carry nothing an event needs.

    def commit(self, end_lsn: int) -> None:
        if self.open or self.split:
            # Even a transaction whose events all went out in partial batches needs its
            # checkpoint recorded (an empty batch carries it).
            self.pending.extend(self.open)
            self.open = []
            self.split = False
            self.pending_lsn = format_lsn(end_lsn)
            if len(self.pending) >= self.batch_size:
                self.hand_over(partial=False)
        elif self.pending_lsn is None and not self.in_flight:
            # A transaction with nothing for us (another table's, or all filtered out): it is safe
            # to confirm, so the slot does not hold WAL back for it.
            self.flush_to(end_lsn)

    def hand_over(self, *, partial: bool) -> None:
        """Give the capture what is complete (and, if ``partial``, the open transaction's
        events so far: their checkpoint is the last complete transaction's)."""
        if self.pending_lsn is not None:
            events, self.pending = self.pending, []
            self.checkpoint, self.pending_lsn = self.pending_lsn, None
            self.submit(events, self.checkpoint, parse_lsn(self.checkpoint))
        if partial and self.open:
            events, self.open = self.open, []
            self.split = True
            # The checkpoint stays where it was (None: none known yet, the capture keeps its own).
            self.submit(events, self.checkpoint or None, None)

    def submit(self, events: list[Event], checkpoint: str | None, flush_lsn: int | None) -> None:
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            self.wait_oldest()
        if self.stop.is_set():
            raise StopRequestedError
        stamp(events)
        self.in_flight.append((self.deliver(events, checkpoint), flush_lsn))

    def wait_oldest(self) -> None:
        """Wait for the oldest batch to be committed, keeping the connection alive meanwhile."""
        future = self.in_flight[0][0]
        while not future.done():
            if self.stop.is_set():
                raise StopRequestedError
            self.keep_alive()
            try:
                future.result(timeout=min(0.2, self.status_interval))
            except TimeoutError:
                continue
            except Exception:
                break
        self.settle()

    def keep_alive(self) -> None:
        """A standby status update once ``status_interval`` has passed since the last one, so
        a busy capture (the reader waiting, not reading) does not make the server drop the
        connection. psycopg2 sends updates by itself only from ``read_message``, and its
        ``send_feedback`` only records positions unless forced."""
        now = time.monotonic()
        if self.cursor is not None and now - self.fed_at >= self.status_interval:
            self.cursor.send_feedback(force=True)
            self.fed_at = now

    def settle(self) -> None:
        """Confirm to the server what the capture has committed."""
        while self.in_flight and self.in_flight[0][0].done():
            future, flush_lsn = self.in_flight.popleft()
            if future.cancelled():
                raise StopRequestedError
            exc = future.exception()
            if exc is not None:
                if isinstance(exc, asyncio.CancelledError):
                    raise StopRequestedError
                raise exc
            if flush_lsn is not None:
                self.flush_to(flush_lsn)
                self.on_delivered(format_lsn(flush_lsn))

    def report_lag(self) -> None:
        """Report how far the confirmed position trails the server's WAL (what the slot holds
        back), every LAG_REPORT_S at most and only when it changed."""
        now = time.monotonic()
        last_time, last_lag = self.lag_reported
        if now - last_time < LAG_REPORT_S or self.cursor is None:
            return
        idle = not (self.in_flight or self.pending or self.open)
        # Idle, psycopg2 confirms the server's WAL end by itself (see flush_to): no lag.
        lag = 0 if idle else max(0, int(self.cursor.wal_end or 0) - self.flushed)
        self.lag_reported = (now, lag)
        if lag != last_lag:
            self.on_lag(lag)

    def flush_to(self, lsn: int) -> None:
        self.flushed = max(self.flushed, lsn)
        if self.cursor is not None:
            # Not forced: psycopg2 records the position and sends it with the next status update
            # (read_message sends one every status_interval, keep_alive while waiting).
            # When a keepalive finds every message received confirmed, psycopg2 itself moves
            # the flush position on to the server's WAL end (nothing of ours lies before it).
            self.cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn)

    def drain(self, timeout: float) -> None:
        """On the way out: wait (a little) for batches in flight, confirming what they cover."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            try:
                self.in_flight[0][0].result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                return
            try:
                self.settle()
            except Exception:
                return
