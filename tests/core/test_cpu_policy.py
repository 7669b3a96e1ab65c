"""apply_scheduling in a process of its own (it changes the scheduling of every thread)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from eventdesk.core.cpu_policy import apply_scheduling

pytestmark = pytest.mark.usefixtures("linux_scheduling")

PROBE = """
import os, sys, threading
from eventdesk.core.cpu_policy import apply_scheduling
early = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
early.start()  # a thread that exists before the policy is applied
changed = apply_scheduling(sys.argv[1])
later = threading.Thread(target=lambda: print(os.sched_getscheduler(0)))
later.start(); later.join()  # a thread started afterwards
print(changed, os.sched_getscheduler(0), os.sched_getscheduler(early.native_id))
"""


def probe(policy: str, start_policy: int | None = None) -> tuple[int, str]:
    """(the policy of a thread started after ``apply_scheduling(policy)``, the rest of the report)."""

    def start_under() -> None:
        if start_policy is not None:
            os.sched_setscheduler(0, start_policy, os.sched_param(0))

    out = subprocess.run(
        [sys.executable, "-c", PROBE, policy],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=start_under,
    ).stdout.split("\n")
    return int(out[0]), out[1]


def test_batch_moves_every_thread_including_later_ones() -> None:
    later, rest = probe("batch")
    assert later == os.SCHED_BATCH
    assert rest == f"True {os.SCHED_BATCH} {os.SCHED_BATCH}"


def test_normal_leaves_the_default_policy() -> None:
    later, rest = probe("normal")
    assert later == os.SCHED_OTHER
    assert rest == f"False {os.SCHED_OTHER} {os.SCHED_OTHER}"


def test_a_policy_set_on_purpose_is_left_as_it_is() -> None:
    later, rest = probe("batch", start_policy=os.SCHED_IDLE)  # as `chrt -i 0 eventdesk run`
    assert later == os.SCHED_IDLE
    assert rest == f"False {os.SCHED_IDLE} {os.SCHED_IDLE}"


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scheduling policy 'fast'; choose one of batch, normal"):
        apply_scheduling("fast")
