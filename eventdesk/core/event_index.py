"""Which capture positions an event filter matches: the index behind the live table's virtual view.

:func:`scan` works the answer out newest first, in chunks a caller can stop between (a new
filter cancels the old scan). The models, ops and quarantine parts of a filter run in SQLite
(a contiguous answer is found in one query and kept as a ``range``); text and expression run
here on each stored envelope, after a cheap screen of its raw JSON for the text. The answer
is a :class:`PositionList`: ascending positions kept as blocks (``range`` runs or arrays of
8-byte integers), so 1,000,000 matching events cost at most 8 MB and row ``i`` is found in
O(log blocks). Qt-free: it runs on the table's worker thread and in tests without a display.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from eventdesk.core import json_codec
from eventdesk.core.capture_reads import CaptureReads
from eventdesk.core.filters import EventFilter

POSITIONS_CHUNK = 50_000  # positions per query when only SQLite filters (~40 ms)
ENVELOPES_CHUNK = 2_000  # envelopes per query when an expression filters (~10 ms)
SCREEN_WINDOW = 50_000  # positions SQLite screens per query for a text (~60 ms)

Block: TypeAlias = "range | array[int]"  # array is not subscriptable at run time


class PositionList:
    """Ascending capture positions, in blocks: :meth:`prepend` older blocks, :meth:`extend` newer positions."""

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._starts: list[int] = []  # the list index of each block's first position
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks:
            yield from block

    def __getitem__(self, i: int) -> int:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(i)
        b = bisect.bisect_right(self._starts, i) - 1
        return self._blocks[b][i - self._starts[b]]

    def prepend(self, block: Block) -> None:
        """Add ``block`` (ascending, all below the first position held) in front."""
        if not len(block):
            return
        self._blocks.insert(0, block)
        self._len += len(block)
        self._reindex()

    def extend(self, positions: Sequence[int]) -> None:
        """Add ``positions`` (ascending, all above the last position held) at the end."""
        if not positions:
            return
        last = self._blocks[-1] if self._blocks else None
        if not isinstance(last, array):
            last = array("q")
            self._blocks.append(last)
            self._starts.append(self._len)
        last.extend(positions)
        self._len += len(positions)

    def index_of(self, pos: int) -> int | None:
        """The list index of position ``pos`` (None: not held)."""
        i = self.bisect_left(pos)
        return i if i < self._len and self[i] == pos else None

    def bisect_left(self, pos: int) -> int:
        """The index of the first position ``>= pos`` (``len(self)``: none)."""
        firsts = [b[0] for b in self._blocks]
        b = bisect.bisect_right(firsts, pos) - 1
        if b < 0:
            return 0
        return self._starts[b] + bisect.bisect_left(self._blocks[b], pos)

    def _reindex(self) -> None:
        starts, at = [], 0
        for block in self._blocks:
            starts.append(at)
            at += len(block)
        self._starts = starts


def compact(descending: Sequence[int]) -> Block:
    """An ascending block of the positions ``descending``: a ``range`` when they are contiguous."""
    if not descending:
        return array("q")
    lo, hi = descending[-1], descending[0]
    if hi - lo + 1 == len(descending):
        return range(lo, hi + 1)
    out = array("q", descending)
    out.reverse()
    return out


@dataclass(frozen=True)
class Found:
    """One step of a :func:`scan`: ``block`` (ascending) matched in ``(reached - 1, before)``."""

    block: Block
    reached: int  # the lowest position examined so far (progress: the scan goes down to ``after``)


def text_screen(text: str) -> str | None:
    """What the raw JSON of an envelope must contain (casefolded) for ``text`` to match it, or
    None when that cannot be told from the raw JSON (the text has characters JSON escapes).

    The filter matches ``text`` in the key, model, op, datasource or payload JSON; each of
    those is a stretch of the stored envelope (written by the same ``json_codec.dumps``) and
    casefolding goes character by character, so a text without escaped characters found
    there is found in the casefolded envelope too."""
    needle = text.casefold()
    if any(c in '"\\' or ord(c) < 0x20 or c == "\x7f" for c in needle):
        return None
    return needle


def envelope_matcher(flt: EventFilter) -> Callable[[bytes], bool]:
    """Whether a stored envelope (raw JSON) matches the text and expression of ``flt``."""
    rest = EventFilter(text=flt.text, expression=flt.expression).compile()
    screen = text_screen(flt.text) if flt.text else None

    def match(raw: bytes) -> bool:
        if screen is not None and screen not in raw.decode("utf-8", "replace").casefold():
            return False
        return rest.matches(json_codec.loads(raw))

    return match


def sql_screen(flt: EventFilter) -> str | None:
    """The text of ``flt`` as SQLite can screen envelopes for it (ASCII, lower case), or None."""
    needle = text_screen(flt.text) if flt.text else None
    return needle if needle is not None and needle.isascii() else None


def needs_envelopes(flt: EventFilter) -> bool:
    """The filter looks into envelopes (text, expression): SQLite alone cannot answer it."""
    return bool(flt.text) or bool(flt.expression.strip())


def scan(
    reads: CaptureReads, flt: EventFilter, *, before: int, after: int = 0, cancelled: Callable[[], bool]
) -> Iterator[Found]:
    """The positions in ``(after, before)`` that ``flt`` matches, newest first, one chunk per step;
    stops early once ``cancelled()``."""
    models = None if flt.models is None else sorted(flt.models)
    ops = None if flt.ops is None else sorted(flt.ops)
    if not needs_envelopes(flt):
        count, lo, hi = reads.view_span(
            after=after, before=before, models=models, ops=ops, quarantined=flt.quarantined
        )
        if count == 0 or count == hi - lo + 1:
            yield Found(range(lo, hi + 1) if count else array("q"), after + 1)
            return
        top = before
        while not cancelled():
            found = reads.view_positions(
                POSITIONS_CHUNK, after=after, before=top, models=models, ops=ops, quarantined=flt.quarantined
            )
            if not found:
                return
            top = found[-1]
            yield Found(compact(found), top if len(found) == POSITIONS_CHUNK else after + 1)
        return
    match = envelope_matcher(flt)
    needle = sql_screen(flt)
    if needle is not None:  # SQLite screens a window of positions at a time, Python checks the few left
        top = before
        while top - 1 > after and not cancelled():
            low = max(after, top - 1 - SCREEN_WINDOW)
            rows = reads.view_raw(
                SCREEN_WINDOW,
                after=low,
                before=top,
                models=models,
                ops=ops,
                quarantined=flt.quarantined,
                contains=needle,
            )
            yield Found(compact([pos for pos, raw in rows if match(raw)]), low + 1)
            top = low + 1
        return
    top = before
    while not cancelled():
        rows = reads.view_raw(
            ENVELOPES_CHUNK, after=after, before=top, models=models, ops=ops, quarantined=flt.quarantined
        )
        if not rows:
            return
        top = rows[-1][0]
        hits = [pos for pos, raw in rows if match(raw)]
        yield Found(compact(hits), top if len(rows) == ENVELOPES_CHUNK else after + 1)
