"""``datasource leftovers NAME``: what EventDesk left on a datasource's server (replication slots
and publications, durable consumers), what each holds and which model follows it; ``--drop
OBJECT`` drops one nobody follows. ``test datasource`` ends with a warning per object nobody
follows that holds something (:func:`warn_leftovers`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from eventdesk.core import server_leftovers
from eventdesk.core.errors import EventDeskError
from eventdesk.core.home import Home

ACTION = "leftovers"


def register_action(datasource_actions: Any) -> None:
    """Add ``leftovers`` to the ``datasource`` command's actions."""
    a = datasource_actions.add_parser(
        ACTION,
        help="what EventDesk left on the datasource's server (replication slots, consumers)",
        description="Lists the objects EventDesk made on the datasource's server -- PostgreSQL "
        "replication slots and publications, NATS durable consumers -- with what each holds there "
        "and the model that follows it. One no model follows (a model removed without --drop-slot, "
        "a table edited, a workspace deleted) holds WAL or messages until it is dropped.",
    )
    a.add_argument("name", help="the datasource")
    a.add_argument(
        "--drop",
        metavar="OBJECT",
        help="drop this object (its exact name); refused if a model follows it or a session reads it",
    )
    a.add_argument(
        "--other-workspace",
        action="store_true",
        help="with --drop: also drop an object named for another workspace (when no other home follows it)",
    )
    a.add_argument("--json", action="store_true")
    a.set_defaults(handler=cmd_leftovers)


def cmd_leftovers(home: Home, args: argparse.Namespace) -> int:
    ws = home.workspace
    if args.drop is not None:
        summary = asyncio.run(
            server_leftovers.drop_left(ws, args.name, args.drop, other_workspace=args.other_workspace)
        )
        print(json.dumps({"dropped": args.drop, "summary": summary}) if args.json else summary)
        return 0
    entries = asyncio.run(server_leftovers.list_left(ws, args.name))
    if args.json:
        print(json.dumps([server_leftovers.to_json(e) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"datasource {args.name!r}: EventDesk left nothing on its server")
        return 0
    head = ("OBJECT", "KIND OF OBJECT", "HELD", "ACTIVE", "FOLLOWED BY")
    rows = [
        (
            e.name,
            e.what,
            server_leftovers.held_text(e),
            "?" if e.active is None else ("yes" if e.active else "no"),
            server_leftovers.follower_text(e),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for row in (head, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def warn_leftovers(home: Home, datasource: str) -> None:
    """After ``test datasource``: a line per object nobody follows that holds something (on
    stderr; a server that cannot say is mentioned, not an error: the test passed)."""
    try:
        entries = asyncio.run(server_leftovers.list_left(home.workspace, datasource))
    except EventDeskError as exc:
        print(
            f"eventdesk: could not list what EventDesk left on the server: {exc.describe()}", file=sys.stderr
        )
        return
    for line in server_leftovers.warnings(datasource, entries):
        print(f"warning: {line}", file=sys.stderr)
