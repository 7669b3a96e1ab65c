"""Render the main window offscreen with a populated workspace and save a screenshot.

    python packaging/screenshot.py [OUTPUT.png]

Uses a throw-away EventDesk home with sample datasources, models, a broker and a route, and
real events appended to its capture; no network and no keyring are needed. States and rates
are set as the runtime would report them, so the tree, banner and chart show something.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import time
from pathlib import Path

from screenshot_desk import SCREENSHOTS, desk, run, save

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.home import Home

CITIES = ("Bangalore", "Pune", "Chennai", "Mumbai", "Delhi")


def populate(home: Home) -> None:
    home.add_datasource(
        "cloudant-prod",
        "cloudant",
        {"url": "https://acme.cloudantnosqldb.appdomain.cloud", "auth": "iam"},
    )
    home.add_datasource("couch-local", "couchdb", {"url": "http://localhost:5984"})
    home.add_model("accounts", "cloudant-prod", {"database": "accounts", "include_docs": True})
    home.add_model("orders", "cloudant-prod", {"database": "orders"})
    home.add_model("inventory", "couch-local", {"database": "inventory", "since": "0"})
    home.add_broker("mosquitto", "mqtt", {"url": "mqtt://broker.local:1883"})
    home.add_route("accounts-to-mosquitto", "accounts", "mosquitto", {"topic": "acme/{model}/{op}/{key}"})

    capture = home.capture
    for batch in range(4):
        accounts = []
        for i in range(8):
            n = batch * 8 + i
            key = f"acct-{n % 11:04d}"
            rev = n // 11 + 1
            accounts.append(
                Event(
                    datasource="cloudant-prod",
                    model="accounts",
                    op="created" if rev == 1 else ("deleted" if n == 30 else "updated"),
                    key=key,
                    rev=f"{rev}-{hashlib.md5(f'{key}{rev}'.encode()).hexdigest()}",  # noqa: S324 - sample data
                    seq=f"{n + 1}-g1AAAABteJzLYWBgYMpgTmHgz8tPSTV0MDQy1zMAQsMcoEQiQ1L9",
                    payload={
                        "_id": key,
                        "name": f"Customer {n % 11}",
                        "region": CITIES[(n + rev) % len(CITIES)],
                        "balance": round(1000 + 137.5 * n * rev, 2),
                        "tier": "gold" if rev > 2 else "silver",
                    },
                    source={"connector": "cloudant", "db": "accounts"},
                )
            )
        capture.append("accounts", accounts, checkpoint=accounts[-1].seq)
        orders = [
            Event(
                datasource="cloudant-prod",
                model="orders",
                op="created",
                key=f"ord-{batch}{i:03d}",
                rev=f"1-{hashlib.md5(f'{batch}{i}'.encode()).hexdigest()}",  # noqa: S324 - sample data
                seq=f"{batch * 5 + i}-g1AAAAB",
                payload={"order": f"ord-{batch}{i:03d}", "items": i + 1, "total": 19.99 * (i + 1)},
                source={"connector": "cloudant", "db": "orders"},
            )
            for i in range(5)
        ]
        capture.append("orders", orders, checkpoint=orders[-1].seq)
    capture.set_route_position("accounts-to-mosquitto", capture.last_pos("accounts") - 3)


async def render(output: Path) -> None:
    async with desk(populate) as (_home, window):
        # the states the runtime would report (shown, as the app shows a runner's: nothing runs here)
        window.runtime.show_foreign(
            {
                "model/accounts": StateChange(State.RUNNING),
                "model/orders": StateChange(State.RUNNING),
                "model/inventory": StateChange(
                    State.RETRYING,
                    "model 'inventory': connection refused (http://localhost:5984)",
                    retry_in=8,
                ),
                "broker/mosquitto": StateChange(State.RUNNING),
                "route/accounts-to-mosquitto": StateChange(State.RUNNING),
            }
        )
        tree = window.tree.tree_model
        now = time.monotonic()
        for k in range(60):
            t = now - 60 + k
            rates = {"accounts": 11 + 3 * math.sin(k / 6) + (k % 3) * 0.4, "orders": 3 + math.cos(k / 9)}
            window.rate_chart.add_sample(t, rates)
        await asyncio.sleep(1.5)  # history loads, the tick computes the backlog
        window._tick.stop()  # noqa: SLF001 - keep the sample rates below (no connector really runs here)
        tree.set_rate("accounts", 12.3)
        tree.set_rate("orders", 3.1)
        table = window.table
        row = next(
            (
                r
                for r in range(table.model.rowCount() - 1, -1, -1)
                if table.model.event_at(r).envelope["op"] == "updated"
            ),
            0,
        )
        table.table.selectRow(row)
        await asyncio.sleep(0.8)
        window.refresh_status()
        window.status.rate.setText("15.4 ev/s")
        window.status.connectors.setText("Connectors: 2/3 running")
        await asyncio.sleep(0.3)  # let the layouts settle before grabbing
        save(window.grab(), output)


if __name__ == "__main__":
    sys.exit(run(render, SCREENSHOTS / "main-window.png"))
