"""The intake: a worker thread's events appended in order, in batches, by the capture thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from eventdesk.core.envelope import Event
from eventdesk.core.intake import Intake, IntakeClosedError


def events(start: int, count: int) -> list[Event]:
    return [
        Event(datasource="d", model="m", op="created", key=f"k{i}", rev="1-a", seq=f"{i}-s", payload={})
        for i in range(start, start + count)
    ]


class Store:
    """Records batches; holds the capture thread while ``gate`` is clear."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[tuple[list[str], Any]] = []
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, batch: list[Event], checkpoint: Any) -> None:
        self.calls += 1
        self.entered.set()
        self.gate.wait(10)
        if self.calls == self.fail_on:
            raise OSError("disk I/O error")
        self.batches.append(([e.key for e in batch], checkpoint))


@pytest.fixture
def capture_thread() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-capture")
    yield executor
    executor.shutdown(wait=True)


async def put_from_thread(intake: Intake, batches: list[list[Event]]) -> None:
    def worker() -> None:
        for batch in batches:
            intake.put(batch)

    await asyncio.to_thread(worker)


@pytest.mark.asyncio
async def test_batches_grow_while_one_is_stored_and_keep_their_order(
    capture_thread: ThreadPoolExecutor,
) -> None:
    store = Store()
    intake = Intake(store=store, executor=capture_thread, loop=asyncio.get_running_loop(), batch_size=4)
    store.gate.clear()
    await put_from_thread(intake, [events(0, 1)])
    assert await asyncio.to_thread(store.entered.wait, 5)
    # While the first batch is being stored, seven more arrive one by one.
    await put_from_thread(intake, [events(i, 1) for i in range(1, 8)])
    store.gate.set()
    await intake.drained()
    assert store.batches == [
        (["k0"], "0-s"),
        (["k1", "k2", "k3", "k4"], "4-s"),  # at most batch_size, checkpoint = the last seq
        (["k5", "k6", "k7"], "7-s"),
    ]


@pytest.mark.asyncio
async def test_put_blocks_at_the_limit_until_the_capture_thread_takes_a_batch(
    capture_thread: ThreadPoolExecutor,
) -> None:
    store = Store()
    intake = Intake(
        store=store, executor=capture_thread, loop=asyncio.get_running_loop(), batch_size=2, limit=3
    )
    store.gate.clear()
    await put_from_thread(intake, [events(0, 1)])
    assert await asyncio.to_thread(store.entered.wait, 5)
    await put_from_thread(intake, [events(1, 3)])  # three wait: the limit
    blocked = threading.Event()
    done = threading.Event()

    def worker() -> None:
        blocked.set()
        intake.put(events(4, 1))
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert blocked.wait(5)
    assert not await asyncio.to_thread(done.wait, 0.3), "put did not wait at the limit"
    store.gate.set()
    assert await asyncio.to_thread(done.wait, 5)
    thread.join(5)
    await intake.drained()
    assert [key for keys, _ in store.batches for key in keys] == [f"k{i}" for i in range(5)]


@pytest.mark.asyncio
async def test_close_stores_what_was_put_and_takes_nothing_more(capture_thread: ThreadPoolExecutor) -> None:
    store = Store()
    intake = Intake(store=store, executor=capture_thread, loop=asyncio.get_running_loop(), batch_size=2)
    store.gate.clear()
    await put_from_thread(intake, [events(0, 1), events(1, 3)])
    intake.close()
    with pytest.raises(IntakeClosedError):
        intake.put(events(4, 1))
    store.gate.set()
    await intake.drained()
    assert [key for keys, _ in store.batches for key in keys] == ["k0", "k1", "k2", "k3"]
    assert intake.waiting == 0


@pytest.mark.asyncio
async def test_a_failed_append_fails_every_later_put_and_drops_what_waited(
    capture_thread: ThreadPoolExecutor,
) -> None:
    store = Store(fail_on=1)
    intake = Intake(store=store, executor=capture_thread, loop=asyncio.get_running_loop(), batch_size=2)
    store.gate.clear()
    await put_from_thread(intake, [events(0, 1)])
    assert await asyncio.to_thread(store.entered.wait, 5)
    await put_from_thread(intake, [events(1, 2)])  # waits behind the batch that will fail
    store.gate.set()
    with pytest.raises(OSError, match="disk I/O error"):
        await asyncio.wait_for(asyncio.shield(intake.failure), 5)
    with pytest.raises(OSError, match="disk I/O error"):
        intake.put(events(3, 1))
    await intake.drained()
    assert store.batches == [] and store.calls == 1  # nothing after the failed batch was stored
    assert isinstance(intake.retrieve_failure(), OSError)


@pytest.mark.asyncio
async def test_a_lone_change_is_stored_by_the_putting_thread_a_backlog_by_the_capture_thread(
    capture_thread: ThreadPoolExecutor,
) -> None:
    threads: list[str] = []

    def store(batch: list[Event], checkpoint: Any) -> None:
        threads.append(threading.current_thread().name)

    intake = Intake(
        store=store, executor=capture_thread, loop=asyncio.get_running_loop(), batch_size=100, inline_max=8
    )

    def worker() -> None:
        intake.put(events(0, 1))  # idle intake, a lone change: stored right here
        intake.put(events(1, 50))  # more than inline_max: the capture thread's job

    thread = threading.Thread(target=worker, name="test-reader")
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    await intake.drained()
    assert threads == ["test-reader", "test-capture_0"]
