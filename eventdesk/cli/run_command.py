"""The ``eventdesk run`` sub-command: run models and their routes until SIGINT/SIGTERM, or, with
``--fleet``, a fleet agent that runs the models whose leases it holds; Prometheus metrics and a
health check when asked (``--metrics-port``), JSON log lines for a log shipper.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import TYPE_CHECKING, Any, Protocol

from eventdesk.cli import fleet_commands
from eventdesk.cli.json_logs import ServiceOptions, add_service_options, use_json_logs
from eventdesk.core.contracts import StateChange
from eventdesk.core.cpu_policy import SCHEDULING_POLICIES, apply_scheduling
from eventdesk.core.errors import ConfigError, EventDeskError
from eventdesk.core.home import Home

if TYPE_CHECKING:
    from eventdesk.core.runtime import Runtime
    from eventdesk.core.workspace import Workspace


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="run models and their routes until SIGINT/SIGTERM"
    )
    p.add_argument(
        "--model", action="append", dest="models", metavar="M", help="only this model (repeatable)"
    )
    p.add_argument(
        "--scheduling",
        choices=SCHEDULING_POLICIES,
        default=SCHEDULING_POLICIES[0],
        help="Linux CPU scheduling: 'batch' (default) puts this process under SCHED_BATCH, which "
        "never preempts what runs beside it, such as the database it follows, and gets the same "
        "share of the CPU; 'normal' leaves the policy it was started with, for the lowest latency "
        "on a saturated host (ignored off Linux)",
    )
    p.add_argument(
        "--fresh-capture",
        action="store_true",
        help="start with a new, empty capture (when the workspace's capture is missing, belongs to "
        "another workspace or is damaged): an existing one is moved aside, never deleted; models follow "
        "new changes only and routes start at the end of the new capture (nothing is published again)",
    )
    add_service_options(p)
    fleet_commands.add_run_options(p)
    p.set_defaults(handler=cmd_run)


def describe_state(key: str, change: StateChange) -> str:
    kind, _, name = key.partition("/")
    line = f"{kind} {name!r}: {change.state.value}"
    if change.detail:
        line += f" ({change.detail})"
    if change.retry_in is not None:
        line += f", retrying in {change.retry_in:.1f} s"
    return line


class Drive(Protocol):
    """What runs once the runtime exists, until the stop event, instead of starting every model
    named: a fleet agent (cli/fleet_commands.py), which runs only the models it holds."""

    async def __call__(self, runtime: Runtime, names: list[str], stop: asyncio.Event) -> None: ...

    def models(self) -> list[str]:
        """The models this process runs now (what health and metrics report on)."""
        ...


async def run_models(
    home: Home,
    models: list[str] | None,
    scheduling: str = SCHEDULING_POLICIES[0],
    service: ServiceOptions | None = None,
    drive: Drive | None = None,
) -> int:
    from eventdesk.core.gc_policy import tune_for_streaming
    from eventdesk.core.runtime import Runtime

    service = service or ServiceOptions()

    names = models if models else list(home.workspace.models)
    for name in names:
        home.workspace.model(name)
    for bad in home.workspace.invalid.values():
        service.warn(f"not started: {bad.error.describe()}")
    if not names:
        raise ConfigError("there is no model to run; add one with `eventdesk model add`", obj="workspace")
    runtime = Runtime(home.workspace, home.capture)
    if home.capture_notice:
        service.say(home.capture_notice)
    tune_for_streaming()
    apply_scheduling(scheduling)  # before the runtime starts its threads: they inherit it
    stop = asyncio.Event()
    failure: list[EventDeskError] = []

    def on_terminal(key: str, error: EventDeskError) -> None:
        failure.append(error)
        if not service.keep_going:
            stop.set()

    runtime.on_state(service.state_listener(describe_state))
    runtime.on_terminal(on_terminal)
    metrics = None
    if service.metrics_port:
        # Only when asked: aiohttp and prometheus-client cost `run` ~13 MB and ~140 modules.
        from eventdesk.cli.metrics_server import MetricsServer

        metrics = MetricsServer(
            runtime, drive.models if drive is not None else lambda: names, service.metrics_port
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if metrics is not None:
            await metrics.start()
        if drive is not None:
            await drive(runtime, names, stop)  # a fleet agent (cli/fleet_commands.py)
        else:
            await runtime.start(names)
            leftovers = loop.create_task(warn_leftovers(home.workspace, names, service))
            await stop.wait()
            leftovers.cancel()
    finally:
        await runtime.aclose()
        if metrics is not None:
            await metrics.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if failure:
        raise failure[0]
    service.say("stopped")
    return 0


async def warn_leftovers(workspace: Workspace, names: list[str], service: ServiceOptions) -> None:
    """Once the models run: a warning for each object EventDesk left on their datasources'
    servers that no model follows and that holds something (an unfollowed replication slot
    fills the server's disk). A server that cannot say is left to the models' own errors."""
    from eventdesk.core import server_leftovers

    for datasource in sorted({workspace.model(name).datasource for name in names}):
        try:
            entries = await server_leftovers.list_left(workspace, datasource)
        except EventDeskError:
            continue
        for line in server_leftovers.warnings(datasource, entries):
            service.warn(line)


def cmd_run(home: Home, args: argparse.Namespace) -> int:
    service = ServiceOptions.from_args(args)
    if service.json:
        use_json_logs()
    drive = fleet_commands.FleetDrive(home, args) if args.fleet else None
    return asyncio.run(run_models(home, args.models, args.scheduling, service, drive))
