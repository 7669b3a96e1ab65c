"""How ``eventdesk run`` shares the CPU with what it follows: its Linux scheduling policy.

A follower often runs on the same host as the database it follows (or the broker it feeds).
Under the default policy each of its threads, woken by a few changes, may preempt whatever
runs on that core, such as the database producing the very feed being followed.
``SCHED_BATCH`` keeps the same fair share of the CPU and the same nice value, but a woken
thread waits for the running one's slice instead of preempting it; on an idle core it still
runs at once. A policy set on purpose (`chrt`) is kept. Measurements: docs/performance.md,
"SCHED_BATCH for eventdesk run".
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

# "batch": SCHED_BATCH for the threads under the default policy; "normal": the policy the
# process was started with, untouched (a real-time or idle policy set with chrt stays either way).
SCHEDULING_POLICIES = ("batch", "normal")


def apply_scheduling(policy: str) -> bool:
    """Apply ``policy`` (one of SCHEDULING_POLICIES) to every thread of this process; threads
    started afterwards inherit it from the thread that starts them. True if any thread changed.

    "batch" moves the threads that run under the default policy (SCHED_OTHER) to SCHED_BATCH;
    "normal" changes nothing. Where the platform has no such policy (macOS, Windows) or the
    system refuses it, the process runs as it was (logged; never an error).
    """
    if policy not in SCHEDULING_POLICIES:
        raise ValueError(
            f"unknown scheduling policy {policy!r}; choose one of {', '.join(SCHEDULING_POLICIES)}"
        )
    batch = getattr(os, "SCHED_BATCH", None)
    if policy == "normal":
        return False
    if batch is None or not hasattr(os, "sched_setscheduler"):
        log.debug("the batch scheduling policy is not available on this platform")
        return False
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the calling thread only
        threads = [0]
    changed = False
    for tid in threads:
        try:
            if os.sched_getscheduler(tid) != os.SCHED_OTHER:
                continue  # set on purpose (chrt): left as it is
            os.sched_setscheduler(tid, batch, os.sched_param(0))
            changed = True
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except OSError as exc:
            log.warning("could not set the batch scheduling policy: %s", exc)
            break
    return changed
