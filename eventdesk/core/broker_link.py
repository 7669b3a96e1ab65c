"""One publisher per broker, shared by the routes to it (and held open for a hosted broker).

The link creates the broker kind's :class:`~eventdesk.core.contracts.Publisher` on first use,
resolving its secret off the loop, and closes it when its last user lets go. It also keeps the
broker-wide part of poison detection: while one route sends one event at a time to find a poison,
the other routes of the broker send nothing, so a dropped connection is that event's doing.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import Protocol

from eventdesk.core.contracts import Publisher, StateChange
from eventdesk.core.registry import broker_class
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.secrets import resolve_secret


class LinkUser(Protocol):
    """What a link needs of a route that uses it (a RouteWorker)."""

    broker: str
    wake: asyncio.Event
    inflight: collections.deque[tuple[int, int, asyncio.Future[None]]]

    def broker_state(self, change: StateChange) -> None: ...


class BrokerLink:
    """``BrokerLink(hub, name, routes)``: ``routes`` is the runtime's live map of route workers."""

    def __init__(self, hub: RuntimeHub, name: str, routes: Mapping[str, LinkUser]) -> None:
        self.hub = hub
        self.name = name
        self.routes = routes
        self.users = 0
        self.publisher: Publisher | None = None  # made by the first acquire()
        self.started = False
        self.starting = asyncio.Lock()  # two routes acquiring at once make one publisher
        # The route sending one event at a time to find a poison (RouteWorker._failed): the other
        # routes of this broker send nothing meanwhile, so a drop is that event's doing.
        self.isolating: LinkUser | None = None

    @property
    def key(self) -> str:
        return f"broker/{self.name}"

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.publisher.connected

    def release_isolation(self, worker: object) -> None:
        if self.isolating is worker:
            self.isolating = None
            for other in self.routes.values():
                if other.broker == self.name:
                    other.wake.set()

    def alone(self, worker: object) -> bool:
        """Whether no other route of this broker has messages in flight."""
        return not any(w.inflight for w in self.routes.values() if w.broker == self.name and w is not worker)

    def _on_state(self, change: StateChange) -> None:
        self.hub.set_state(self.key, change)
        for worker in self.routes.values():
            if worker.broker == self.name:
                worker.broker_state(change)

    async def acquire(self) -> Publisher:
        """Count one more user; the first one creates and starts the publisher. If that fails,
        the count is not taken."""
        async with self.starting:
            if not self.started:
                if self.publisher is None:
                    cfg = self.hub.workspace.broker(self.name)
                    cls = broker_class(cfg.kind)
                    # The keyring may talk D-Bus and block: never on the loop.
                    secret = await asyncio.to_thread(resolve_secret, cfg.secret, cfg.label)
                    self.publisher = cls(config=cfg, secret=secret, on_state=self._on_state)
                await self.publisher.start()
                self.started = True
            self.users += 1
            assert self.publisher is not None
            return self.publisher

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.started and self.publisher is not None:
            # Under the lock, so that a route acquiring meanwhile (a fleet agent taking a model
            # back within the close's 2 s) waits for the close and starts the publisher again,
            # instead of getting the one being closed.
            async with self.starting:
                if self.users <= 0 and self.started:
                    self.started = False
                    await self.publisher.close()
