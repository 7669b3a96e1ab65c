"""How Python's cycle collector runs while events stream (``eventdesk run`` and the app)."""

from __future__ import annotations

import gc

# Young-generation threshold: net container allocations between two young passes (default 700).
YOUNG_THRESHOLD = 50_000


def tune_for_streaming() -> None:
    """Freeze what start-up made and let the cycle collector run less often.

    Events are acyclic dicts and lists, freed by reference counting the moment they are
    published; the collector only hunts cycles. With the default threshold it ran a young
    pass every 700 allocations, each walking every young event still buffered. Frozen, the
    start-up heap (modules, Qt wrappers) is never walked again, so a full pass does not stall
    the window. Measurements: docs/performance.md, "The cycle collector".
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
