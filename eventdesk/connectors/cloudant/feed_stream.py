"""The continuous feed's bytes made into lines: HTTP chunk decoding, line splitting, read pacing.

The transport reads the feed's socket in bulk (:func:`~eventdesk.connectors.cloudant.transport.feed_bytes`)
instead of chunk by chunk; these classes are what that needs: :class:`ChunkedBody` decodes
the HTTP/1.1 chunks, :class:`LineSplitter` cuts the body into change lines (bounding a
line's size), :class:`ReadPacer` decides how long to let changes gather between reads.
Why each exists, with its measurements: docs/performance.md, "Reading the feed".
"""

from __future__ import annotations

from eventdesk.connectors.cloudant.changes import ROW_HEAD_BYTES


class LineSplitter:
    """Cuts a byte stream into lines; a long line is joined once, not once per chunk.

    A line longer than ``max_line`` is dropped (counted in ``dropped``; its first bytes kept
    in ``dropped_head`` to name it) rather than held in memory without bound.
    """

    def __init__(self, max_line: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._max_line = max_line
        self._skipping = False
        self.dropped = 0
        self.dropped_head = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the lines that ``chunk`` completes (without their newline)."""
        pieces = chunk.split(b"\n")
        tail = pieces.pop()
        lines: list[bytes] = []
        for piece in pieces:
            if self._skipping:
                self._skipping = False  # the end of the line being dropped
                continue
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts = []
                self._size = 0
            lines.append(piece)
        if tail and not self._skipping:
            self._parts.append(tail)
            self._size += len(tail)
            if self._size > self._max_line:
                self.dropped_head = b"".join(self._parts[:8])[:ROW_HEAD_BYTES]
                self._parts = []
                self._size = 0
                self._skipping = True
                self.dropped += 1
        return lines


class ChunkedBody:
    """Decodes an HTTP/1.1 chunked body fed in pieces of any size (``Transfer-Encoding: chunked``).

    :meth:`feed` returns the body bytes a piece completes; ``ended`` is set by the last chunk.
    Raises ValueError on a malformed chunk header.
    """

    MAX_HEADER = 1024  # a chunk-size line (hex size plus extensions) is never longer

    def __init__(self) -> None:
        self._pending = b""  # an incomplete chunk-size line
        self._left = 0  # bytes of the current chunk still to come, its closing CRLF included
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data, self._pending = self._pending + data, b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.ended:
            left = self._left
            if left:
                take = min(left, end - pos)
                body = min(take, left - 2)  # the last two bytes of a chunk are its CRLF
                if body > 0:
                    out.append(data[pos : pos + body])
                pos += take
                self._left = left - take
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self._pending = data[pos:]
                if len(self._pending) > self.MAX_HEADER:
                    raise ValueError("a chunk header is too long")
                break
            size_text = data[pos:eol].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
            pos = eol + 2
            if size == 0:
                self.ended = True  # trailers, if any, are not needed
            else:
                self._left = size + 2
        return b"".join(out)


class ReadPacer:
    """How long the continuous feed's reader waits before its next read (Nagle's idea, and
    Kafka's ``linger.ms``): every read, and so every batch captured, published and
    acknowledged, has a fixed cost, so while changes stream in it pays to let a few gather.

    - A read that waited for its data (``busy_gap`` or more) ends a quiet spell: no pause, so
      a change after a quiet spell (a trickle, up to a few hundred changes/s) has no delay.
    - A read that found a lot waiting (``full_read`` bytes or more) is behind: no pause.
    - Otherwise changes are streaming in: pause ``coalesce``, or ``linger`` while they arrive
      at ``linger_rate`` changes/s or more, for at most ``linger`` of added delay.

    The values and what they gained: docs/performance.md, "Reading the feed".
    """

    def __init__(
        self, *, busy_gap: float, coalesce: float, linger: float, linger_rate: float, full_read: int
    ) -> None:
        self.busy_gap = busy_gap
        self.coalesce = coalesce
        self.linger = linger
        self.linger_rate = linger_rate
        self.full_read = full_read
        self._last = float("-inf")  # when the previous read returned

    def after_read(self, size: int, changes: int, *, waited: float, now: float) -> float:
        """The pause after a read of ``size`` bytes holding ``changes`` changes, which waited
        ``waited`` seconds for its data and returned at ``now``."""
        since, self._last = now - self._last, now
        if size >= self.full_read or waited >= self.busy_gap:
            return 0.0
        if changes >= self.linger_rate * since:
            return self.linger
        return self.coalesce
