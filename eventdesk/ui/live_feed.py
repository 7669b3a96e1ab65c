"""The Qt adapter over the runtime's batches: buffers them and emits one coalesced signal per tick.

The table never sees one signal per event, only one batch per tick, however fast events come;
when nothing arrives the timer is idle, so an idle window costs no CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from eventdesk.core.capture import CapturedEvent

FLUSH_INTERVAL_MS = 50


class BatchSource(Protocol):
    """What the feed needs from :class:`eventdesk.core.runtime.Runtime`."""

    def on_batch(self, listener: Callable[[str, list[CapturedEvent]], None]) -> Callable[[], None]: ...


class LiveFeed(QObject):
    """Subscribes to ``runtime.on_batch`` and emits ``batch(list[CapturedEvent])`` at most every 50 ms.

    The runtime calls its listeners on the event loop thread, which in the app is the GUI thread
    (qasync), so no locking is needed here.
    """

    batch = Signal(list)

    def __init__(
        self, runtime: BatchSource, parent: QObject | None = None, *, interval_ms: int = FLUSH_INTERVAL_MS
    ) -> None:
        super().__init__(parent)
        self._buffer: list[CapturedEvent] = []
        self._stopped = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)
        self._unsubscribe = runtime.on_batch(self._on_batch)

    @property
    def pending(self) -> int:
        """Events buffered and not yet emitted."""
        return len(self._buffer)

    def _on_batch(self, model: str, events: list[CapturedEvent]) -> None:
        if self._stopped or not events:
            return
        self._buffer.extend(events)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Emit everything buffered now, as one batch."""
        self._timer.stop()
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        self.batch.emit(events)

    def stop(self) -> None:
        """Stop emitting: unsubscribe from the runtime and drop what is buffered."""
        self._unsubscribe()
        self._stopped = True
        self._timer.stop()
        self._buffer = []
