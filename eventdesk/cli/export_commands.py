"""``export``, ``import``, ``recordings`` and ``replay``: captured events outside the app.

Progress goes to stderr as one rewritten line, and only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import OPS, PAYLOAD_FORMAT_ALIASES, PAYLOAD_FORMATS
from eventdesk.core.errors import ConfigError
from eventdesk.core.export import FORMATS, ExportProgress, export_events
from eventdesk.core.home import Home
from eventdesk.core.recording import (
    IMPORT_FORMATS,
    import_recording,
    list_recordings,
    open_recording,
    remove_recording,
)
from eventdesk.core.replay import Pace, ReplayProgress, ReplayTarget, replay
from eventdesk.core.scope import EventScope, parse_time

MAX_PROBLEMS_SHOWN = 20


def _add_scope_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recording", metavar="NAME", help="take events from an imported recording instead of the capture"
    )
    p.add_argument("--model", action="append", dest="models", metavar="M", help="only model M (repeatable)")
    p.add_argument("--op", action="append", dest="ops", choices=OPS, help="only this op (repeatable)")
    p.add_argument(
        "--since", metavar="TIME", help="received at or after TIME (ISO 8601, 'now', or 15m/2h/3d ago)"
    )
    p.add_argument("--until", metavar="TIME", help="received before TIME")
    p.add_argument("--filter", metavar="JMESPATH", help="only events where this JMESPath expression is true")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export captured events to JSON Lines, JSON, CSV or Parquet",
        description="Export every matching event (streamed, flat memory). The file appears only when complete.",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument(
        "--format", choices=FORMATS, help="default: from the extension (.jsonl, .json, .csv, .parquet)"
    )
    p.add_argument(
        "--bom", action="store_true", help="CSV: start with a UTF-8 BOM (for spreadsheet programs)"
    )
    p.add_argument(
        "--guard-formulas",
        action="store_true",
        help="CSV: put ' before text cells starting with = + - @ tab or CR, so spreadsheet programs "
        "show them instead of running them as formulas (the payload column keeps the exact value)",
    )
    _add_scope_flags(p)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser(
        "import",
        help="import a JSON Lines / JSON export as a read-only recording",
        description="Load an export as a recording kept apart from live capture; bad lines are reported.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", help="the recording's name (default: from the file name)")
    p.add_argument("--format", choices=IMPORT_FORMATS, help="default: from the extension or the content")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("recordings", help="list or remove imported recordings")
    p.add_argument("action", nargs="?", choices=("list", "remove"), default="list")
    p.add_argument("name", nargs="?", help="the recording to remove")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_recordings)

    p = sub.add_parser(
        "replay",
        help="republish captured or recorded events to a broker",
        description="Publish a range of events again, at their original pacing, a fixed rate or as fast "
        "as possible. Target: --route R (its broker, topic, format, QoS), or --broker B --topic T.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--route", help="publish as this route does")
    target.add_argument("--broker", help="publish to this broker (with --topic)")
    p.add_argument("--topic", help="topic template, e.g. replay/{model}/{op} (with --broker)")
    p.add_argument(
        "--format",
        dest="payload_format",
        type=lambda name: PAYLOAD_FORMAT_ALIASES.get(name, name),  # an old name still works
        choices=PAYLOAD_FORMATS,
        default="envelope",
        help="(with --broker)",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="(with --broker)")
    p.add_argument("--retain", action="store_true", help="(with --broker)")
    p.add_argument(
        "--pace",
        default="original",
        help="original (received_at gaps), a speed-up of it (10x), a rate in events/s (50) or fast",
    )
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    _add_scope_flags(p)
    p.set_defaults(handler=cmd_replay)


# -- helpers -------------------------------------------------------------------------------------
def scope_from(args: argparse.Namespace, obj: str) -> EventScope:
    since = None if args.since is None else parse_time(args.since, obj=obj, field="since")
    until = None if args.until is None else parse_time(args.until, obj=obj, field="until")
    return EventScope(
        models=None if not args.models else frozenset(args.models),
        ops=None if not args.ops else frozenset(args.ops),
        since=since,
        until=until,
        expression=(args.filter or "").strip(),
    ).check(obj)


@contextlib.contextmanager
def source_capture(home: Home, recording: str | None) -> Iterator[Capture]:
    if recording is None:
        yield home.capture
        return
    capture = open_recording(home.paths.recordings_dir, recording)
    try:
        yield capture
    finally:
        capture.close()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


class ProgressLine:
    """One line on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()
        self._width = len(text)

    def done(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()


# -- export ----------------------------------------------------------------------------------------
def cmd_export(home: Home, args: argparse.Namespace) -> int:
    scope = scope_from(args, "export")
    line = ProgressLine()

    def progress(p: ExportProgress) -> None:
        what = "scanning columns" if p.phase == "columns" else f"exported {p.exported:,}"
        line.show(
            f"{what} · {p.fraction:.0%} of {p.total:,} · {p.rate:,.0f} events/s · {_duration(p.eta)} left"
        )

    with source_capture(home, args.recording) as capture:
        try:
            result = export_events(
                capture,
                args.out,
                args.format,
                scope,
                csv_bom=args.bom,
                csv_guard_formulas=args.guard_formulas,
                progress=progress if line.enabled else None,
            )
        finally:
            line.done()
    print(
        f"exported {result.exported:,} events ({scope.describe()}) to {result.path} as {result.format}"
        f" in {result.elapsed:.1f} s"
    )
    return 0


# -- import and recordings --------------------------------------------------------------------------
def cmd_import(home: Home, args: argparse.Namespace) -> int:
    line = ProgressLine()
    try:
        result = import_recording(
            home.paths.recordings_dir,
            args.file,
            args.name,
            fmt=args.format,
            progress=(lambda n, imported: line.show(f"line {n:,} · {imported:,} events"))
            if line.enabled
            else None,
        )
    finally:
        line.done()
    rec = result.recording
    print(f"imported {result.imported:,} events as recording {rec.name!r} ({rec.path})")
    if result.duplicates:
        print(f"{result.duplicates:,} duplicate events (same model, key and rev) were stored once")
    if result.bad_lines:
        print(f"eventdesk: warning: {result.bad_lines:,} lines skipped:", file=sys.stderr)
        for problem in result.problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  {args.file}: {problem.describe()}", file=sys.stderr)
        if result.bad_lines > MAX_PROBLEMS_SHOWN:
            print(f"  … and {result.bad_lines - MAX_PROBLEMS_SHOWN:,} more", file=sys.stderr)
    return 0


def cmd_recordings(home: Home, args: argparse.Namespace) -> int:
    rdir = home.paths.recordings_dir
    if args.action == "remove":
        if not args.name:
            raise ConfigError("give the name of the recording to remove", obj="recordings", field="name")
        remove_recording(rdir, args.name)
        print(f"removed recording {args.name!r}")
        return 0
    recordings = list_recordings(rdir)
    if args.json:
        import json

        print(
            json.dumps(
                [
                    {"name": r.name, "events": r.events, "source": r.source, "imported_at": r.imported_at}
                    for r in recordings
                ],
                indent=2,
            )
        )
        return 0
    if not recordings:
        print("no recordings; import one with `eventdesk import FILE`")
    for r in recordings:
        print(f"{r.name}  {r.events:,} events  imported {r.imported_at} from {r.source}")
    return 0


# -- replay ----------------------------------------------------------------------------------------
def _target(home: Home, args: argparse.Namespace) -> ReplayTarget:
    if args.route is not None:
        return ReplayTarget.for_route(home.workspace, args.route)
    if not args.topic:
        raise ConfigError("--broker needs --topic (a topic template)", obj="replay", field="topic")
    return ReplayTarget.for_broker(
        home.workspace,
        args.broker,
        topic=args.topic,
        fmt=args.payload_format,
        qos=args.qos,
        retain=args.retain,
    )


def cmd_replay(home: Home, args: argparse.Namespace) -> int:
    scope = scope_from(args, "replay")
    pace = Pace.parse(args.pace)
    target = _target(home, args)
    if args.connect_timeout <= 0:
        raise ConfigError("must be more than 0", obj="replay", field="connect-timeout")
    line = ProgressLine()

    def progress(p: ReplayProgress) -> None:
        line.show(
            f"published {p.published:,} of ~{p.total:,} · {p.rate:,.0f} events/s · {_duration(p.eta)} left"
        )

    async def run(capture: Capture) -> int:
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, cancel.set)
        try:
            started = time.monotonic()
            result = await replay(
                capture,
                target,
                scope,
                pace,
                progress=progress if line.enabled else None,
                cancel=cancel,
                connect_timeout=args.connect_timeout,
            )
        finally:
            line.done()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        took = time.monotonic() - started
        print(
            f"replayed {result.published:,} events ({scope.describe()}) to {target.broker.label}"
            f" topic {target.topic!r} at {pace.describe()} in {took:.1f} s"
            + (f", {result.resent:,} sent again after reconnecting" if result.resent else "")
        )
        return 0

    with source_capture(home, args.recording) as capture:
        return asyncio.run(run(capture))
