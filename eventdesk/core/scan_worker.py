"""The live table's filter scan in a process of its own, so its Python never holds the window's GIL.

A text or JMESPath filter over 1,000,000 envelopes is a JSON parse and an expression per event;
run on a thread of the GUI process it shares the GIL with the table's painting, and the event
loop stalls for 0.15-0.45 s at a time. :class:`ScanWorker` runs :func:`~eventdesk.core.event_index.scan`
in a worker process instead (multiprocessing's ``spawn`` context: a process running Qt threads is
never forked). The worker opens the capture read-only itself (WAL: it never waits for the writer)
and reads it with the same ``view_*`` reads; each step comes back as it is found (a ``range`` as
its ends, an array as its 8-byte integers' bytes), so the count still grows on screen. A newer
scan or :meth:`ScanWorker.cancel` stops the running one at the worker's next step (a shared
token it checks between chunks). Qt-free.

When the process cannot start, the scan runs in this process as before, and a log line says so;
the answer is the same either way (both run the same :func:`scan`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import queue
import threading
import weakref
from array import array
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from eventdesk.core import event_index
from eventdesk.core.capture_reads import CaptureReads
from eventdesk.core.event_index import Found, scan
from eventdesk.core.filters import EventFilter

log = logging.getLogger(__name__)

NICENESS = 5  # the worker's CPU priority below the window's
_CONTEXT = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads


def _filter_fields(flt: EventFilter) -> tuple[Any, ...]:
    models = None if flt.models is None else sorted(flt.models)
    ops = None if flt.ops is None else sorted(flt.ops)
    return flt.text, models, ops, flt.expression, flt.quarantined


def _filter_from(fields: tuple[Any, ...]) -> EventFilter:
    text, models, ops, expression, quarantined = fields
    return EventFilter(
        text=text,
        models=None if models is None else frozenset(models),
        ops=None if ops is None else frozenset(ops),
        expression=expression,
        quarantined=quarantined,
    )


def _encode(found: Found) -> tuple[int, int, bytes | None, int]:
    """``(lo, hi, None, reached)`` for a run ``lo..hi``, ``(0, 0, bytes, reached)`` for an array."""
    block = found.block
    if isinstance(block, range):
        return block.start, block.stop, None, found.reached
    return 0, 0, block.tobytes(), found.reached


def _decode(lo: int, hi: int, raw: bytes | None, reached: int) -> Found:
    if raw is None:
        return Found(range(lo, hi), reached)
    block = array("q")
    block.frombytes(raw)
    return Found(block, reached)


def _replaced(wanted: Any, token: int) -> bool:
    return bool(wanted.value != token)


def _serve(commands: Connection, answers: Connection, wanted: Any) -> None:
    """The worker process: run each scan it is sent, answering each step, until the pipe closes."""
    reads: CaptureReads | None = None
    with contextlib.suppress(OSError, AttributeError):  # no nice() on Windows: same priority there
        os.nice(NICENESS)  # background work: on a busy machine the window's thread gets the CPU first
    try:
        while True:
            token, path, fields, before, after, chunks = commands.recv()
            event_index.POSITIONS_CHUNK, event_index.ENVELOPES_CHUNK, event_index.SCREEN_WINDOW = chunks
            error = ""
            try:
                if reads is None or reads.path != Path(path):
                    if reads is not None:
                        reads.close()
                    reads = CaptureReads(path, readonly=True)
                flt = _filter_from(fields).compile()
                cancelled = functools.partial(_replaced, wanted, token)
                for found in scan(reads, flt, before=before, after=after, cancelled=cancelled):
                    answers.send(("found", token, *_encode(found)))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # one bad scan is reported, the worker serves the next
                error = f"{type(exc).__name__}: {exc}"
            answers.send(("done", token, error))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the window closed its end: leave quietly
    finally:
        if reads is not None:
            reads.close()


def _read_answers(ref: weakref.ref[ScanWorker], answers: Connection) -> None:
    """The worker's answers, each to the scan waiting for it (on a thread of its own, holding
    the :class:`ScanWorker` only weakly: a dropped one is finalized, which closes the pipe and ends this)."""
    while True:
        try:
            kind, token, *rest = answers.recv()
        except (EOFError, OSError):
            break
        me = ref()
        if me is None:
            return
        me.deliver(token, (kind, *rest))
        del me
    me = ref()
    if me is not None:
        me.lose(answers)


def _stop(process: Any, commands: Connection, answers: Connection) -> None:
    commands.close()  # the worker's recv ends: it leaves
    answers.close()
    process.join(timeout=2)
    if process.is_alive():
        process.terminate()
        process.join(timeout=2)


class ScanWorker:
    """One worker process serving one caller's scans, one at a time; started on first use.

    A thread here reads the worker's answers and hands each to the scan it belongs to (its
    token), so a scan that was replaced never reads the answers of the one that replaced it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the process, its pipes and who waits for which token
        self._wanted = _CONTEXT.Value("q", 0, lock=False)  # the scan the worker should run (0: none)
        self._tokens = 0
        self._process: Any = None
        self._commands: Connection | None = None
        self._answers: Connection | None = None
        self._waiting: dict[int, queue.SimpleQueue[tuple[Any, ...]]] = {}
        self._finalizer: weakref.finalize[Any, ScanWorker] | None = None
        self._unavailable = False

    @property
    def pid(self) -> int | None:
        """The worker process's id (None: not running)."""
        return None if self._process is None else int(self._process.pid)

    def cancel(self) -> None:
        """Stop the running scan at the worker's next step."""
        self._wanted.value = 0

    def close(self) -> None:
        """End the worker process (a later scan starts a new one)."""
        self.cancel()
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._process = self._commands = self._answers = self._finalizer = None

    def scan(
        self,
        reads: CaptureReads,
        flt: EventFilter,
        *,
        before: int,
        after: int = 0,
        cancelled: Callable[[], bool],
    ) -> Iterator[Found]:
        """What :func:`~eventdesk.core.event_index.scan` yields over ``reads``, worked out in the
        worker process over the same capture file (in this one, on ``reads``, when that cannot start)."""
        answers: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        with self._lock:
            commands = self._start()
            if commands is not None:
                self._tokens += 1
                token = self._tokens
                self._waiting[token] = answers
                self._wanted.value = token  # the running scan, if any, stops at its next step
                chunks = (event_index.POSITIONS_CHUNK, event_index.ENVELOPES_CHUNK, event_index.SCREEN_WINDOW)
                commands.send((token, str(reads.path), _filter_fields(flt), before, after, chunks))
        if commands is None:
            yield from scan(reads, flt, before=before, after=after, cancelled=cancelled)
            return
        try:
            while True:
                kind, *rest = answers.get()
                if kind == "lost":
                    raise RuntimeError("the filter's scan worker stopped; filter again to restart it")
                if kind == "done":
                    if rest[0] and not cancelled():
                        raise RuntimeError(rest[0])
                    return
                if cancelled():
                    return
                yield _decode(*rest)
        finally:
            with self._lock:
                self._waiting.pop(token, None)
                if self._wanted.value == token:  # left early: the worker need not go on
                    self._wanted.value = 0

    def deliver(self, token: int, answer: tuple[Any, ...]) -> None:
        """Hand ``answer`` to the scan ``token`` (dropped when that one is gone)."""
        with self._lock:
            waiting = self._waiting.get(token)
        if waiting is not None:
            waiting.put(answer)

    def lose(self, answers: Connection) -> None:
        """The worker behind ``answers`` is gone: tell every waiting scan; the next one starts another."""
        with self._lock:
            if answers is self._answers:
                self._commands = self._answers = None
            for waiting in self._waiting.values():
                waiting.put(("lost",))

    def _start(self) -> Connection | None:
        """The pipe to a running worker (started now if need be); None: it cannot start. Under the lock."""
        if self._commands is not None and self._process is not None and self._process.is_alive():
            return self._commands
        if self._unavailable:
            return None
        if self._finalizer is not None:
            self._finalizer()
        try:
            commands_in, commands = _CONTEXT.Pipe(duplex=False)
            answers, answers_out = _CONTEXT.Pipe(duplex=False)
            process = _CONTEXT.Process(
                target=_serve,
                args=(commands_in, answers_out, self._wanted),
                name="eventdesk-scan",
                daemon=True,
            )
            process.start()
        except (OSError, RuntimeError) as exc:
            self._unavailable = True
            log.warning(
                "the filter scan runs in the window's process (its worker process did not start: %s)", exc
            )
            return None
        commands_in.close()
        answers_out.close()
        threading.Thread(
            target=_read_answers, args=(weakref.ref(self), answers), name="scan-answers", daemon=True
        ).start()
        self._process, self._commands, self._answers = process, commands, answers
        self._finalizer = weakref.finalize(self, _stop, process, commands, answers)
        return commands
