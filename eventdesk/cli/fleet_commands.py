"""The fleet on the command line: ``eventdesk run --fleet URL|NAME`` (its options, and what runs the
agent beside the runtime) and ``eventdesk fleet status``. The fleet itself: eventdesk/fleet/."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from eventdesk.core import json_codec
from eventdesk.core.home import Home
from eventdesk.fleet.reach import fleet_settings
from eventdesk.fleet.settings import DEFAULT_TTL, FleetSettings, bucket_name

if TYPE_CHECKING:
    from eventdesk.core.runtime import Runtime
    from eventdesk.fleet.agent import FleetAgent


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``run``'s fleet options."""
    p.add_argument(
        "--fleet",
        metavar="URL|NAME",
        help="run as one agent of a fleet sharing this workspace: agents split the models between "
        "them through a key-value bucket on these NATS JetStream servers (comma-separated "
        "nats://HOST:PORT), or on those of the workspace's nats broker or datasource NAME, with "
        "its credentials and this host's secret; see docs/fleet.md",
    )
    p.add_argument("--agent-id", metavar="ID", help="this agent's name in the fleet (default HOST-PID)")
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="S",
        help=f"seconds a model's lease lasts without renewal (renewed every sixth; default {DEFAULT_TTL:g}): "
        "how soon another agent resumes the models of one that died",
    )
    p.add_argument(
        "--fleet-replicas",
        type=int,
        default=1,
        metavar="N",
        help="replicas of the fleet bucket when this agent creates it (3 on a three-node cluster)",
    )


def agent_settings(home: Home, args: argparse.Namespace) -> FleetSettings:
    return fleet_settings(home.workspace, args.fleet, args.agent_id, args.lease_ttl, args.fleet_replicas)


def adopt_missing_capture(home: Home) -> None:
    """An agent's capture is its own cache and outbox: a copy of the fleet's workspace file on a
    new host starts one (an empty capture; the fleet bucket says where each model resumes)
    instead of refusing because the capture the copied file names is not here."""
    if home.workspace.capture_id is not None and not home.paths.capture_file.exists():
        print(f"fleet: starting this agent's capture at {home.paths.capture_file}", flush=True)
        # Home adopts a capture when the workspace names none (a pre-capture-id workspace).
        home.workspace.capture_id = None
    home.capture  # noqa: B018 (opens, or creates and adopts, the capture now)


class FleetDrive:
    """What ``run --fleet`` does once its runtime exists (cli/run_command.py calls it with the
    runtime, the models and the stop event): hosted brokers, then the agent; ``models()`` is
    what the agent holds now, for health and metrics."""

    def __init__(self, home: Home, args: argparse.Namespace) -> None:
        from eventdesk.fleet.bucket import FleetBucket

        self.settings = agent_settings(home, args)  # bad options fail before anything starts
        adopt_missing_capture(home)
        self.bucket = FleetBucket(self.settings, bucket_name(home.workspace.workspace_id))
        self.home = home
        self.agent: FleetAgent | None = None

    async def __call__(self, runtime: Runtime, names: list[str], stop: asyncio.Event) -> None:
        from eventdesk.fleet.agent import FleetAgent

        await runtime.start_services()
        print(
            f"fleet: agent {self.settings.agent!r} in bucket {self.bucket.bucket!r} on {self.bucket.where}"
            + (f" via {self.settings.via}" if self.settings.via else "")
            + f" (lease TTL {self.settings.ttl:g} s)",
            flush=True,
        )
        from eventdesk.fleet.watch import fleet_models

        # A copy of the workspace made after the desk pressed "Watch live" holds the desk's watch
        # model (fleet/watch.py): the desk's to run, not the fleet's.
        shared = set(fleet_models(self.home.workspace))
        if left := sorted(set(names) - shared):
            print(
                f"fleet: leaving {', '.join(map(repr, left))} to the desk (its watch of the fleet)",
                flush=True,
            )
        self.agent = FleetAgent(runtime, self.settings, self.bucket, [n for n in names if n in shared])
        await self.agent.run(stop)

    def models(self) -> list[str]:
        return sorted(self.agent.held) if self.agent is not None else []


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fleet", help="the fleet of agents running this workspace"
    )
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    s = sub.add_parser("status", help="agents, their models, lease ages, backlog per model and route")
    s.add_argument(
        "--fleet",
        required=True,
        metavar="URL|NAME",
        help="the fleet's NATS servers (comma-separated), or the nats broker or datasource the agents' --fleet names",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=fleet_status)


def fleet_status(home: Home, args: argparse.Namespace) -> int:
    from eventdesk.fleet.status import read_fleet_status, reader_settings, render
    from eventdesk.fleet.watch import fleet_models

    ws = home.workspace
    settings = reader_settings(ws, args.fleet, "status")
    status = asyncio.run(read_fleet_status(settings, ws.workspace_id, fleet_models(ws)))
    if args.json:
        print(json_codec.dumps(status.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(render(status)))
    return 0
