"""What a runner tells a monitoring system: Prometheus metrics (prometheus-client) and a health
verdict, built from the :class:`~eventdesk.core.runtime.Runtime`'s public API only (its
listeners, ``status()``, ``connector_of``).

Counted as they happen (listeners, this process since it started): events captured per model,
events quarantined per route, reconnects (an object going to RETRYING) per object, lease
changes per model (:func:`lease_changed`, for the fleet). Read at each scrape
(:meth:`ServiceMetrics.refresh`, one status snapshot on the capture thread): each object's state,
each route's backlog, published events and quarantined events, each model's source lag (in its
kind's unit, where the kind says: ``Connector.source_lag``).

Health (:meth:`ServiceMetrics.health`): healthy while none of the models this process runs has
stopped, on an error or otherwise; a model connecting or retrying is still healthy (waiting for
its source is not a fault of the runner), and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import EventDeskError
from eventdesk.core.runtime import Runtime
from eventdesk.core.runtime_status import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format

# Lease changes of a fleet's agent, by model and change ("acquired", "released",
# "lost", ...). Module-level so that the code holding leases needs no handle on the metrics:
# it calls lease_changed(); every ServiceMetrics of this process serves it.
LEASE_CHANGES = Counter(
    "eventdesk_lease_changes",
    "Lease changes of this runner, per model and change (acquired, released, lost).",
    ["model", "change"],
    registry=None,
)


def lease_changed(model: str, change: str) -> None:
    """Count one lease change of ``model`` (``change``: acquired, released or lost)."""
    LEASE_CHANGES.labels(model=model, change=change).inc()


@dataclass(frozen=True)
class Health:
    healthy: bool
    models: dict[str, str]  # model name -> state (and why, for one not running)
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.healthy else "unhealthy", "models": self.models,
                "problems": list(self.problems)}  # fmt: skip


@dataclass
class _Snapshot:
    status: Status | None = None
    published: dict[str, int] = field(default_factory=dict)  # route -> events published since start
    lag: dict[str, float] = field(default_factory=dict)


class ServiceMetrics:
    """The metrics and health of one runtime; ``close()`` unsubscribes its listeners."""

    def __init__(self, runtime: Runtime, models: Callable[[], Collection[str]]) -> None:
        self.runtime = runtime
        self.models = models  # the models this process is meant to run (a fleet's change)
        self.registry = CollectorRegistry(auto_describe=True)
        self.captured = Counter(
            "eventdesk_events_captured", "Events captured per model by this process.", ["model"],
            registry=self.registry,
        )  # fmt: skip
        self.quarantined = Counter(
            "eventdesk_events_quarantined", "Events set aside per route by this process.", ["route"],
            registry=self.registry,
        )  # fmt: skip
        self.reconnects = Counter(
            "eventdesk_reconnects",
            "Times an object lost its connection (or failed to connect) and retried, per object.",
            ["kind", "name"],
            registry=self.registry,
        )
        self.registry.register(LEASE_CHANGES)
        self.registry.register(_SnapshotCollector(self))
        self.snapshot = _Snapshot()
        self._start_positions: dict[str, int] = {}  # route -> its position when first seen
        self._states: dict[str, StateChange] = {}  # what the listener saw (absent: not started yet)
        self._stopped_with: dict[str, str] = {}  # model -> the error it stopped on
        self._off = [
            runtime.on_batch(lambda model, events: self.captured.labels(model=model).inc(len(events))),
            runtime.on_quarantine(lambda route, *_: self.quarantined.labels(route=route).inc()),
            runtime.on_state(self._on_state),
            runtime.on_terminal(self._on_terminal),
        ]

    def close(self) -> None:
        for off in self._off:
            off()
        self._off = []
        self.registry.unregister(LEASE_CHANGES)

    def _on_state(self, key: str, change: StateChange) -> None:
        before = self._states.get(key)
        self._states[key] = change
        if change.state is State.RETRYING and (before is None or before.state is not State.RETRYING):
            kind, _, name = key.partition("/")
            self.reconnects.labels(kind=kind, name=name).inc()

    def _on_terminal(self, key: str, error: EventDeskError) -> None:
        kind, _, name = key.partition("/")
        if kind == "model":
            self._stopped_with[name] = error.describe()

    async def refresh(self) -> None:
        """Read what a scrape shows: one status snapshot, and each route's published count (from
        its position at the first refresh: call it once before the routes start)."""
        status = await self.runtime.status()
        published: dict[str, int] = {}
        for route in status.routes:
            start = self._start_positions.setdefault(route.name, route.position)
            # Events of the route's model between its position at start and now: acknowledged here.
            since_start = await self.runtime.db(self.runtime.capture.count, route.model, after=start)
            published[route.name] = max(0, since_start - route.backlog)
        lag: dict[str, float] = {}
        for model in status.models:
            connector = self.runtime.connector_of(model.name)
            value = connector.source_lag() if connector is not None else None
            if value is not None:
                lag[model.name] = value
        self.snapshot = _Snapshot(status=status, published=published, lag=lag)

    def scrape(self) -> bytes:
        """The Prometheus text of the last :meth:`refresh`."""
        return generate_latest(self.registry)

    def health(self) -> Health:
        """Healthy unless a model this process runs has stopped (with an error, or at all)."""
        models: dict[str, str] = {}
        problems: list[str] = []
        for name in sorted(self.models()):
            change = self._states.get(f"model/{name}")
            if change is None:  # not started yet (run starts its models after this server)
                models[name] = "starting"
                continue
            models[name] = change.state.value
            if name in self._stopped_with or change.state in (State.ERROR, State.STOPPED, State.STOPPING):
                why = self._stopped_with.get(name) or change.detail or change.state.value
                models[name] = f"{change.state.value}: {why}"
                problems.append(f"model {name!r} is not running: {why}")
        return Health(healthy=not problems, models=models, problems=tuple(problems))


class _SnapshotCollector(Collector):
    """The metrics read at each scrape, from the last snapshot."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # unknown until the first refresh; nothing to check names against

    def collect(self) -> Iterator[Any]:
        snap = self.metrics.snapshot
        status = snap.status
        if status is None:
            return
        state = GaugeMetricFamily(
            "eventdesk_object_state",
            "1 for each object's current state (kind model, route or broker).",
            labels=["kind", "name", "state"],
        )
        for kind, entries in (("model", status.models), ("route", status.routes), ("broker", status.brokers)):
            for entry in entries:
                state.add_metric([kind, entry.name, entry.state.state.value], 1)
        yield state
        backlog = GaugeMetricFamily(
            "eventdesk_route_backlog", "Events of the route's model captured and not yet acknowledged.",
            labels=["route", "model", "broker"],
        )  # fmt: skip
        held = GaugeMetricFamily(
            "eventdesk_route_quarantined", "Events set aside for the route, waiting for a retry or a drop.",
            labels=["route", "model", "broker"],
        )  # fmt: skip
        published = CounterMetricFamily(
            "eventdesk_events_published",
            "Events the broker acknowledged per route, since this process started.",
            labels=["route", "model", "broker"],
        )
        for r in status.routes:
            labels = [r.name, r.model, r.broker]
            backlog.add_metric(labels, r.backlog)
            held.add_metric(labels, r.quarantined)
            published.add_metric(labels, snap.published.get(r.name, 0))
        yield backlog
        yield held
        yield published
        lag = GaugeMetricFamily(
            "eventdesk_source_lag",
            "How far behind its source a model is, in its kind's unit (nats: messages not captured yet).",
            labels=["model"],
        )
        for model, value in snap.lag.items():
            lag.add_metric([model], value)
        yield lag
