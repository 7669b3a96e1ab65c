"""What a fleet agent records of a model it runs, and where a model taken over resumes; both
read and write the agent's own capture (call them on the capture thread: ``Runtime.db``).

The fleet's resume point of a model is the last event *every enabled route of it* has had
acknowledged by its broker (its source position ``seq``, with its ``key`` and ``rev``), taken
from the local capture after it committed; without routes, the model's checkpoint. An agent that
takes the model over reads its source again from there: what the last holder had captured but
not yet published is read and published again, and what it had published already is published
again too but dropped by the stream's duplicate window (the same Nats-Msg-Id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventdesk.core.capture import Capture
from eventdesk.core.workspace import Workspace


@dataclass
class Progress:
    """A model's figures as recorded in its lease."""

    resume: dict[str, Any] | None
    figures: dict[str, Any]


def _route_names(workspace: Workspace, model: str) -> list[str]:
    return [r.name for r in workspace.routes_of_model(model) if r.enabled]


def prepare(capture: Capture, workspace: Workspace, model: str, resume: dict[str, Any] | None) -> int:
    """[capture thread] Before an agent starts ``model`` under a lease it just took: its
    checkpoint becomes the fleet's ``resume`` point and its routes publish from that event on
    (from the end of what this capture holds of the model when it does not hold that event).
    Returns the route position set (the floor under which nothing new was captured).

    With no resume point (the fleet has never run the model) the capture's own checkpoint and
    positions stay as they are.
    """
    routes = _route_names(workspace, model)
    if resume is None:
        positions = [capture.route_position(r) for r in routes]
        known = [p for p in positions if p is not None]
        return min(known) if known else capture.last_pos(model)
    capture.set_checkpoint(model, resume.get("seq"))
    pos = None
    if "key" in resume:
        pos = capture.position_of(model, str(resume["key"]), resume.get("rev"))
    if pos is None:
        pos = capture.last_pos(model)
    for route in routes:
        capture.set_route_position(route, pos)
    return pos


def measure(
    capture: Capture, workspace: Workspace, model: str, floor: int, resume: dict[str, Any] | None
) -> Progress:
    """[capture thread] ``model``'s resume point and figures now, from what this capture
    committed. ``floor`` is what :func:`prepare` returned: a route position not above it means
    nothing was published under this lease yet, and ``resume`` (the point the lease was taken
    at) stays."""
    routes = _route_names(workspace, model)
    last = capture.last_pos(model)
    positions = {r: capture.route_position(r) or 0 for r in routes}
    figures: dict[str, Any] = {
        "checkpoint": capture.checkpoint(model),
        "routes": {r: {"backlog": capture.count(model, after=p)} for r, p in positions.items()},
    }
    if not routes:
        if last > floor:
            resume = {"seq": figures["checkpoint"]}
        return Progress(resume, figures)
    low = min(positions.values())
    if low > floor:
        event = capture.last_event_upto(model, low)
        if event is not None and event.pos > floor:
            env = event.envelope
            resume = {"seq": env.get("seq"), "key": env.get("key"), "rev": env.get("rev")}
    return Progress(resume, figures)
