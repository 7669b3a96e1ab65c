"""One status snapshot of a workspace at work: per model, route and broker its state and
figures, and the objects that are invalid.

:func:`build_status` is the only place status is computed: the app (``Runtime.status()``, from
its own states) and ``eventdesk status`` (another process's, from ``Home.live_states()``) both
call it, and the status bar, the tree's counts and ``status --json`` all read the same snapshot.
It reads the capture: call it on the capture thread when the loop must not wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventdesk.core.capture import Capture
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.workspace import Workspace

STOPPED = StateChange(State.STOPPED)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    datasource: str
    state: StateChange
    checkpoint: Any  # the source position it resumes from (opaque; may hold a Decimal)
    events: int  # see build_status's ``events``
    rate: float  # events per second now (0 where it does not run in this process)


@dataclass(frozen=True)
class RouteEntry:
    name: str
    model: str
    broker: str
    enabled: bool
    state: StateChange
    position: int  # the capture position the broker acknowledged everything up to
    backlog: int  # events of its model captured after that position
    quarantined: int  # events set aside, waiting for a retry or a drop


@dataclass(frozen=True)
class BrokerEntry:
    name: str
    state: StateChange


@dataclass(frozen=True)
class InvalidEntry:
    """An object of the workspace file that does not validate (nothing runs it)."""

    object_type: str
    name: str
    detail: str
    refs: Mapping[str, str | None]  # the objects it names: model, broker, datasource
    quarantined: int = 0


@dataclass(frozen=True)
class Status:
    models: tuple[ModelEntry, ...]
    routes: tuple[RouteEntry, ...]
    brokers: tuple[BrokerEntry, ...]
    invalid: tuple[InvalidEntry, ...] = ()
    rate: float = 0.0  # events per second, all models

    @property
    def models_running(self) -> int:
        return sum(1 for m in self.models if m.state.state is State.RUNNING)

    @property
    def brokers_connected(self) -> int:
        return sum(1 for b in self.brokers if b.state.state is State.RUNNING)

    @property
    def backlog(self) -> int:
        return sum(r.backlog for r in self.routes)

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.routes) + sum(i.quarantined for i in self.invalid)

    def to_json(self) -> dict[str, Any]:
        """The shape of ``eventdesk status --json`` (write it with json_codec: a checkpoint may
        hold a Decimal). An invalid object shows in its section with state ``invalid``."""
        models: dict[str, Any] = {
            m.name: {
                "datasource": m.datasource,
                "state": m.state.state.value,
                "detail": m.state.detail,
                "checkpoint": m.checkpoint,
                "events": m.events,
            }
            for m in self.models
        }
        routes: dict[str, Any] = {
            r.name: {
                "model": r.model,
                "broker": r.broker,
                "enabled": r.enabled,
                "state": r.state.state.value,
                "detail": r.state.detail,
                "position": r.position,
                "backlog": r.backlog,
                "quarantined": r.quarantined,
            }
            for r in self.routes
        }
        brokers: dict[str, Any] = {
            b.name: {"state": b.state.state.value, "detail": b.state.detail} for b in self.brokers
        }
        sections = {"model": models, "route": routes, "broker": brokers}
        for bad in self.invalid:
            sections[bad.object_type][bad.name] = {
                "model": bad.refs.get("model"),
                "broker": bad.refs.get("broker"),
                "datasource": bad.refs.get("datasource"),
                "enabled": False,
                "state": "invalid",
                "detail": bad.detail,
                "checkpoint": None,
                "events": 0,
                "backlog": 0,
                "quarantined": bad.quarantined,
            }
        return {"models": models, "routes": routes, "brokers": brokers}


def build_status(
    workspace: Workspace,
    capture: Capture,
    states: Mapping[str, StateChange],
    rates: Mapping[str, float],
    *,
    events: Mapping[str, int] | None = None,
    total_rate: float | None = None,
) -> Status:
    """The snapshot of ``workspace`` from the capture, each object's state (``model/<name>``,
    ``route/…``, ``broker/…``; stopped when absent) and each model's rate.

    ``events``: events per model; None counts each model's events in the capture (a full index
    scan: what ``eventdesk status`` shows; the app passes what it received, as counting every
    second would hold up the capture thread). ``total_rate`` defaults to the sum of ``rates``.
    """
    checkpoints = capture.checkpoints()
    quarantined = capture.quarantine_counts()
    models = tuple(
        ModelEntry(
            name=name,
            datasource=m.datasource,
            state=states.get(f"model/{name}", STOPPED),
            checkpoint=checkpoints.get(name),
            events=capture.count(name) if events is None else events.get(name, 0),
            rate=rates.get(name, 0.0),
        )
        for name, m in list(workspace.models.items())
    )
    routes = []
    for name, r in list(workspace.routes.items()):
        position = capture.route_position(name) or 0
        routes.append(
            RouteEntry(
                name=name,
                model=r.model,
                broker=r.broker,
                enabled=r.enabled,
                state=states.get(f"route/{name}", STOPPED),
                position=position,
                backlog=capture.count(r.model, after=position),
                quarantined=quarantined.get(name, 0),
            )
        )
    brokers = tuple(
        BrokerEntry(name=name, state=states.get(f"broker/{name}", STOPPED))
        for name in list(workspace.brokers)
    )
    invalid = tuple(
        InvalidEntry(
            object_type=bad.object_type,
            name=bad.name,
            detail=bad.error.describe(),
            refs={ref: bad.ref(ref) for ref in ("model", "broker", "datasource")},
            quarantined=quarantined.get(bad.name, 0) if bad.object_type == "route" else 0,
        )
        for bad in list(workspace.invalid.values())
        if bad.object_type in ("model", "route", "broker")
    )
    return Status(
        models=models,
        routes=tuple(routes),
        brokers=brokers,
        invalid=invalid,
        rate=sum(rates.values()) if total_rate is None else total_rate,
    )
