"""``quarantine``: the events a route set aside because its broker can never take them.

``list`` shows them (``--json``: one JSON object per line), ``retry`` hands them back to their
route (a running ``eventdesk run`` picks them up within a second, otherwise the next one does),
``drop`` forgets them (the events stay in the capture) and ``export`` writes them, each with
its event, to a JSON Lines file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from eventdesk.core.capture import QuarantineEntry
from eventdesk.core.errors import ConfigError
from eventdesk.core.export import atomic_output, check_target
from eventdesk.core.home import Home


def _add_selection(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--route", metavar="R", help="only the entries of route R")
    p.add_argument(
        "--pos",
        action="append",
        type=int,
        dest="positions",
        metavar="N",
        help="only the entry at capture position N (repeatable; needs --route)",
    )
    if required:
        p.add_argument("--all", action="store_true", help="every entry (of --route, if given)")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "quarantine",
        help="list, retry, drop or export the events routes set aside",
        description="Events a broker can never take as a route stands (topic too long, payload over the "
        "broker's maximum, a permanent refusal) are set aside per route with the reason, and the route "
        "goes on. Fix the route (or the broker), then retry them; or drop them.",
    )
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("list", help="the quarantined events with their reasons")
    _add_selection(a, required=False)
    a.add_argument("--json", action="store_true", help="one JSON object per line (JSON Lines)")
    a = psub.add_parser("retry", help="send these entries again (the running route picks them up)")
    _add_selection(a, required=True)
    a = psub.add_parser("drop", help="forget these entries (their events stay in the capture)")
    _add_selection(a, required=True)
    a = psub.add_parser("export", help="write the entries, each with its event, as JSON Lines")
    _add_selection(a, required=False)
    a.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.set_defaults(handler=cmd_quarantine)


def _selection(home: Home, args: argparse.Namespace) -> tuple[str | None, list[int] | None]:
    obj = f"quarantine {args.action}"
    route = args.route
    if route is not None:
        home.workspace.route(route)  # NotFoundError naming the route
    positions = args.positions
    if positions and route is None:
        raise ConfigError("--pos needs --route (positions are per route)", obj=obj, field="pos")
    if getattr(args, "all", True) is False and not positions:
        raise ConfigError("say which entries: --pos N (with --route) or --all", obj=obj, field="pos")
    return route, positions


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else f"{text[: width - 20]}... ({len(text)} characters)"


def _line(entry: QuarantineEntry) -> str:
    retry = ", retry asked" if entry.state == "retry" else ""
    return (
        f"  {entry.route}  pos={entry.pos}  {entry.model} {entry.op} key={_short(entry.key)!r}"
        f"  attempts={entry.attempts}{retry}  since {entry.first_at}\n    {entry.reason}"
    )


def cmd_quarantine(home: Home, args: argparse.Namespace) -> int:
    route, positions = _selection(home, args)
    capture = home.capture
    if args.action == "list":
        entries = capture.quarantine_entries(route, positions)
        if args.json:
            out = sys.stdout.buffer
            for entry in entries:
                out.write(orjson.dumps(entry.to_dict()) + b"\n")
            out.flush()
            return 0
        print(f"{len(entries)} event(s) in quarantine" + (":" if entries else ""))
        for entry in entries:
            print(_line(entry))
        return 0
    if args.action == "retry":
        count = capture.quarantine_retry(route, positions)
        print(
            f"{count} event(s) handed back to their route; a running `eventdesk run` sends them within a second"
        )
        return 0
    if args.action == "drop":
        count = capture.quarantine_drop(route, positions)
        print(f"{count} event(s) dropped from the quarantine (they stay in the capture)")
        return 0
    target = check_target(Path(args.out))
    entries = capture.quarantine_entries(route, positions)
    with atomic_output(target) as fh:
        for entry in entries:
            event = capture.get(entry.pos)
            record = entry.to_dict()
            record["event"] = event.envelope if event is not None else None
            fh.write(orjson.dumps(record) + b"\n")
    print(f"exported {len(entries)} quarantined event(s) to {target}")
    return 0
