"""``eventdesk fleet status``: the fleet of a workspace as its bucket shows it: the agents (from
their heartbeats), each model's lease (holder, age, last renewal) and what its holder last
recorded (checkpoint, backlog per route)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.quantities import amount_text
from eventdesk.core.workspace import Workspace
from eventdesk.fleet.bucket import Entry, FleetBucket
from eventdesk.fleet.lease import Lease
from eventdesk.fleet.reach import fleet_settings
from eventdesk.fleet.settings import (
    AGENT_PREFIX,
    DEFAULT_TTL,
    LEASE_PREFIX,
    FleetSettings,
    bucket_name,
    unescape_token,
)


@dataclass(frozen=True)
class FleetStatus:
    agents: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"agents": self.agents, "models": self.models}


def build_fleet_status(
    snapshot: dict[str, Entry], models: list[str], now: float | None = None
) -> FleetStatus:
    """The status from a bucket snapshot (``FleetBucket.snapshot``). Ages come from the writers'
    wall clocks: a host whose clock is off shows odd ages, nothing worse. ``models``: the
    workspace's, shown even when no agent ever took them."""
    now = time.time() if now is None else now
    agents: dict[str, dict[str, Any]] = {}
    leases: dict[str, dict[str, Any]] = {name: _unheld() for name in models}
    for key, entry in snapshot.items():
        if key.startswith(AGENT_PREFIX) and entry.value:
            try:
                beat = json_codec.loads(entry.value)
            except ValueError:
                continue
            if not isinstance(beat, dict):
                continue
            agents[str(beat.get("agent") or unescape_token(key[len(AGENT_PREFIX) :]))] = {
                "host": beat.get("host"),
                "pid": beat.get("pid"),
                "models": beat.get("models") or [],
                "seen_ago": round(now - float(beat.get("at") or 0.0), 1),
                "ttl": beat.get("ttl"),
                "up_for": round(now - float(beat.get("started_at") or now), 1),
            }
        elif key.startswith(LEASE_PREFIX):
            name = unescape_token(key[len(LEASE_PREFIX) :])
            lease = Lease.decode(entry.value)
            if lease is None:
                leases[name] = _unheld()
                continue
            routes = lease.progress.get("routes") or {}
            leases[name] = {
                "agent": lease.agent or None,
                "lease_age": round(now - lease.taken_at, 1) if lease.agent else None,
                "renewed_ago": round(now - lease.renewed_at, 1),
                "ttl": lease.ttl,
                "revision": entry.revision,
                "state": lease.progress.get("state"),
                "checkpoint": lease.progress.get("checkpoint"),
                "source_lag": lease.progress.get("source_lag"),
                "resume": lease.resume,
                "routes": routes if isinstance(routes, dict) else {},
            }
    return FleetStatus(agents=dict(sorted(agents.items())), models=dict(sorted(leases.items())))


def _unheld() -> dict[str, Any]:
    return {
        "agent": None,
        "lease_age": None,
        "renewed_ago": None,
        "ttl": None,
        "revision": None,
        "state": None,
        "checkpoint": None,
        "source_lag": None,
        "resume": None,
        "routes": {},
    }


def lag_text(lag: Any) -> str:
    """A model's source lag as its holder recorded it (``{"value", "unit"}``): "12 messages", "1.7 MB of WAL"."""
    if not isinstance(lag, dict) or not isinstance(lag.get("value"), int | float):
        return "—"
    return amount_text(lag["value"], str(lag.get("unit") or ""))


def reader_settings(workspace: Workspace, fleet: str, reader: str) -> FleetSettings:
    """How a reader of the bucket (not an agent) reaches it: ``fleet`` is URLs or the name of a
    nats broker or datasource (fleet/reach.py; blocks on the keyring: off a UI's loop)."""
    return fleet_settings(workspace, fleet, reader, DEFAULT_TTL, 1)


async def read_fleet_status(
    settings: FleetSettings, workspace_id: str, models: list[str], *, timeout: float = 5.0
) -> FleetStatus:
    """One read of a workspace's fleet bucket (``eventdesk fleet status`` and the app's Fleet
    window): a NotFoundError when no agent ever made the bucket."""
    bucket = FleetBucket(settings, bucket_name(workspace_id), timeout=timeout)
    try:
        await bucket.open(create=False)
        snapshot = await bucket.snapshot()
    finally:
        await bucket.close()
    return build_fleet_status(snapshot, models)


def render(status: FleetStatus) -> list[str]:
    """The text form, one line per agent, model and route."""
    lines = ["agents:"]
    for agent, a in status.agents.items():
        expired = a["ttl"] is not None and a["seen_ago"] > float(a["ttl"])
        lines.append(
            f"  {agent}: host={a['host']} pid={a['pid']} models={len(a['models'])}"
            f" seen {a['seen_ago']} s ago{' (silent past its TTL)' if expired else ''}"
        )
    if not status.agents:
        lines.append("  (none)")
    lines.append("models:")
    for name, m in status.models.items():
        if m["agent"] is None:
            lines.append(f"  {name}: free" + (f" (last state {m['state']})" if m["state"] else ""))
        else:
            lines.append(
                f"  {name}: {m['agent']} lease {m['lease_age']} s renewed {m['renewed_ago']} s ago"
                f" state={m['state']} checkpoint={json_codec.dumps(m['checkpoint']).decode()}"
                + (f" source lag={lag_text(m['source_lag'])}" if m["source_lag"] else "")
            )
        for route, r in m["routes"].items():
            lines.append(f"    route {route}: backlog={r.get('backlog')}")
    return lines
