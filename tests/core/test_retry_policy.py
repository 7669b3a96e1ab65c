"""The one backoff policy every kind retries with (eventdesk/core/retry_policy.py)."""

from __future__ import annotations

import email.utils

from hypothesis import given
from hypothesis import strategies as st

from eventdesk.core.retry_policy import Backoff, parse_retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_to_the_cap_and_jitter_stays_within_its_band() -> None:
    b = Backoff(initial=0.5, cap=4.0, jitter=0.5, rand=lambda: 0.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = Backoff(initial=0.5, cap=4.0, jitter=0.5, rand=lambda: 1.0)
    assert [low.next_delay() for _ in range(4)] == [0.25, 0.5, 1.0, 2.0]


@given(st.floats(0, 1), st.integers(0, 60))
def test_a_delay_never_exceeds_the_cap_nor_falls_below_half_the_base(r: float, attempt: int) -> None:
    b = Backoff(initial=0.2, cap=10.0, jitter=0.5, rand=lambda: r, attempt=attempt)
    base = min(10.0, 0.2 * 2.0 ** min(attempt, 30))
    delay = b.next_delay()
    assert base / 2 - 1e-9 <= delay <= base + 1e-9 <= 10.0 + 1e-9


def test_a_stable_connection_starts_the_series_over_and_a_short_one_does_not() -> None:
    clock = Clock()
    b = Backoff(initial=1.0, cap=60.0, stable_after=5.0, jitter=0.0, clock=clock)
    for _ in range(3):
        b.next_delay()
    b.connected()
    clock.now += 1.0  # dropped again after a second: keep growing
    assert b.next_delay() == 8.0
    b.connected()
    clock.now += 5.0  # lived long enough: start over
    assert b.next_delay() == 1.0


def test_retry_after_is_honoured_but_bounded() -> None:
    b = Backoff(initial=0.2, cap=10.0, jitter=0.0, retry_after_max=120.0)
    assert b.next_delay(retry_after=30.0) == 30.0
    assert b.next_delay(retry_after=1000.0) == 120.0
    assert b.next_delay(retry_after=0.1) == 0.8  # never less than the policy's own delay


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000.0) == 30.0
    past = email.utils.formatdate(999_000.0, usegmt=True)
    assert parse_retry_after(past, now=lambda: 1_000_000.0) == 0.0


@given(st.text(max_size=40))
def test_any_header_text_parses_or_is_ignored(text: str) -> None:
    value = parse_retry_after(text)
    assert value is None or value >= 0.0
