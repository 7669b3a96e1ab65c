"""What the runtime's parts share: the workspace, the capture and its two threads, each object's
state, and the listeners told of states, batches, terminal errors and quarantined events.

:class:`~eventdesk.core.model_runner.ModelRunner`, :class:`~eventdesk.core.route_worker.RouteWorker`
and :class:`~eventdesk.core.broker_link.BrokerLink` are handed the hub and call it through the
public names below. The UI and the CLI never see it: they use :class:`eventdesk.core.runtime.Runtime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

from eventdesk.core.capture import Capture, CapturedEvent
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import EventDeskError
from eventdesk.core.rate import RateMeter
from eventdesk.core.workspace import Workspace

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., None])

StateListener = Callable[[str, StateChange], None]
# ``listener(route, pos, field, reason)``: the route set the event at capture position ``pos`` aside.
QuarantineListener = Callable[[str, int, str, str], None]
BatchListener = Callable[[str, list[CapturedEvent]], None]
TerminalListener = Callable[[str, EventDeskError], None]
Unsubscribe = Callable[[], None]

STOPPED = StateChange(State.STOPPED)


class Listeners(Generic[F]):
    """Listeners of one kind, called in the order they were added.

    ``items`` is a tuple rebuilt on each change, so calling them is a plain loop (no copy per
    call) and a listener may unsubscribe itself, or another, while they are being called."""

    def __init__(self) -> None:
        self.items: tuple[F, ...] = ()

    def add(self, listener: F) -> Unsubscribe:
        """Add ``listener``; the callable returned removes it (a second call does nothing)."""
        self.items = (*self.items, listener)

        def off() -> None:
            items = list(self.items)
            if listener in items:
                items.remove(listener)
                self.items = tuple(items)

        return off


class RuntimeHub:
    """The shared plumbing of one runtime (see the module docstring)."""

    def __init__(self, workspace: Workspace, capture: Capture) -> None:
        self.workspace = workspace
        self.capture = capture
        # Every capture write runs here, in order (the docs' "eventdesk-capture" thread).
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventdesk-capture")
        # Routes' reads, through a read-only connection of their own (WAL: never wait for appends).
        self.route_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventdesk-route-read")
        self.states: dict[str, StateChange] = {}
        self.state_listeners: Listeners[StateListener] = Listeners()
        self.batch_listeners: Listeners[BatchListener] = Listeners()
        self.terminal_listeners: Listeners[TerminalListener] = Listeners()
        self.quarantine_listeners: Listeners[QuarantineListener] = Listeners()
        self.total = RateMeter()  # events captured per second, all models

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a capture call on the capture thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def read_for_route(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a route's capture read on the route-reading thread (it never waits for appends)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.route_reader, lambda: fn(*args, **kwargs))

    def state_of(self, key: str) -> StateChange:
        return self.states.get(key, STOPPED)

    def set_state(self, key: str, change: StateChange) -> None:
        """Record ``key``'s new state (in memory, and in the capture for `eventdesk status`) and
        tell the state listeners; the same state again is ignored."""
        if self.states.get(key) == change:
            return
        self.states[key] = change
        self.executor.submit(self.capture.set_state, key, change.state.value, change.detail)
        for listener in self.state_listeners.items:
            listener(key, change)

    def show_state(self, key: str, change: StateChange) -> None:
        """Show a state another process recorded: the listeners hear of it, nothing is written."""
        if self.states.get(key) == change:
            return
        self.states[key] = change
        for listener in self.state_listeners.items:
            listener(key, change)

    def forget_state(self, key: str) -> None:
        self.states.pop(key, None)

    def terminal(self, key: str, error: EventDeskError) -> None:
        """``key`` stopped for good on ``error`` (`eventdesk run` exits on it)."""
        for listener in self.terminal_listeners.items:
            listener(key, error)

    def quarantined(self, route: str, pos: int, field: str, reason: str) -> None:
        for listener in self.quarantine_listeners.items:
            listener(route, pos, field, reason)

    def batch(self, model: str, events: list[CapturedEvent]) -> None:
        """Tell the batch listeners (the app's live view) of a committed batch."""
        for listener in self.batch_listeners.items:
            listener(model, events)

    async def close(self) -> None:
        """Let the capture thread finish its queue, then end both threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.route_reader.shutdown)
        await loop.run_in_executor(None, self.executor.shutdown)
