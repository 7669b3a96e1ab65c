"""A fleet on loopback for the tests: a three-node nats-server cluster (fixture nats_cluster), an
R3 stream, twelve CouchDB models (pouchdb-server) each routed to the stream, and ``eventdesk run
--fleet`` agents in child processes, each with its own home holding a copy of one workspace
file. A writer thread creates documents in every model's database; the checks read the stream
and the fleet bucket with nats-py directly."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig

from eventdesk.core.home import Home
from tests.cli.harness import RunProcess, home_args
from tests.peers.nats_server import NatsCluster
from tests.peers.servers import CouchServer

STREAM = "EDFLEET"
TTL = 3.0  # the agents' lease TTL: failover waits on it, so the tests keep it short


@dataclass
class Fleet:
    """The workspace (``template``), the agents' homes and the databases of the models."""

    cluster: NatsCluster
    couch: CouchServer
    tmp: Path
    dbs: dict[str, str] = field(default_factory=dict)  # model -> database
    agents: dict[str, RunProcess] = field(default_factory=dict)
    workspace_id: str = ""

    @property
    def read_url(self) -> str:
        """One node's URL (node 0, which the tests never kill) for the checks."""
        return self.cluster.nodes[0].url

    def setup(self, models: int) -> None:
        create_stream(self.read_url)
        home = Home.open(str(self.tmp / "template"), lock="edit")
        try:
            home.add_datasource("couch", "couchdb", {"url": self.couch.url})
            settings = {"url": self.cluster.url, "stream": STREAM}
            home.add_broker("js", "nats", settings)
            for i in range(models):
                name = f"m{i:02d}"
                self.dbs[name] = self.couch.create_database(name)
                home.add_model(name, "couch", {"database": self.dbs[name], "since": "0"})
                home.add_route(f"r-{name}", name, "js", {"topic": "ed.{model}.{op}", "format": "envelope"})
            self.workspace_id = home.workspace.workspace_id
        finally:
            home.close()

    def start_agent(self, agent: str) -> RunProcess:
        """``eventdesk run --fleet`` as ``agent`` in a home of its own (a copy of the workspace
        file, no capture yet the first time)."""
        home = self.tmp / f"home-{agent}"
        if not home.exists():
            home.mkdir()
            shutil.copy(self.tmp / "template" / "workspace.json", home / "workspace.json")
        run = RunProcess(
            home_args(home),
            run_args=("--fleet", self.cluster.url, "--agent-id", agent, "--lease-ttl", str(TTL),
                      "--fleet-replicas", "3"),
        )  # fmt: skip
        self.agents[agent] = run
        return run

    def holders(self) -> dict[str, dict[str, Any]]:
        """Each model's lease as the bucket holds it now (absent: never taken)."""
        return asyncio.run(read_leases(self.read_url, self.workspace_id))

    def wait_held(
        self, timeout: float, *, by: set[str] | None = None, balanced: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Until every model runs under a lease of one of ``by`` (default: any agent), each
        agent with its fair share when ``balanced``."""
        deadline = time.monotonic() + timeout
        leases: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            leases = self.holders()
            owners = {m: leases.get(m, {}).get("agent") for m in self.dbs}
            running = all(leases.get(m, {}).get("progress", {}).get("state") == "running" for m in self.dbs)
            if running and all(o and (by is None or o in by) for o in owners.values()):
                counts = Counter(owners.values())
                agents = len(by) if by is not None else len(counts)
                if not balanced or max(counts.values()) <= -(-len(self.dbs) // agents):
                    return leases
            time.sleep(0.1)
        raise AssertionError(f"models not all held and running after {timeout} s: {leases}\n{self.outputs()}")

    def outputs(self) -> str:
        return "\n".join(f"=== agent {a}\n{r.output()[-4000:]}" for a, r in self.agents.items())


def create_stream(url: str) -> None:
    async def create() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(
                StreamConfig(name=STREAM, subjects=["ed.>"], num_replicas=3, duplicate_window=300)
            )
        finally:
            await nc.close()

    asyncio.run(create())


async def read_leases(url: str, workspace_id: str) -> dict[str, dict[str, Any]]:
    bucket = "eventdesk-" + workspace_id
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        for key in keys:
            if key.startswith("lease."):
                entry = await kv.get(key)
                out[key[len("lease.") :]] = json.loads(entry.value or b"{}")
        return out
    finally:
        await nc.close()


class Writer:
    """Creates documents in every model's database, round-robin, until stopped; remembers each
    (model, id, rev) written."""

    def __init__(
        self, couch: CouchServer, dbs: dict[str, str], per_round: int = 3, pause: float = 0.05
    ) -> None:
        self.couch = couch
        self.dbs = dbs
        self.per_round = per_round
        self.pause = pause
        self.written: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._round = 0

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.write_round()
            time.sleep(self.pause)

    def write_round(self) -> None:
        n = self._round
        self._round += 1
        for model, db in self.dbs.items():
            docs = [{"_id": f"d{n:05d}-{j}", "n": n} for j in range(self.per_round)]
            reply = json.loads(
                self.couch.request("POST", f"/{db}/_bulk_docs", json.dumps({"docs": docs}).encode())
            )
            for r in reply:
                self.written.add((model, r["id"], r["rev"]))


def check_exactly_once(url: str, written: set[tuple[str, str, str]], timeout: float = 60) -> None:
    """The stream ends up holding every written change once: by Nats-Msg-Id and by key+rev,
    none twice, none missing, nothing else."""
    from tests.brokers.test_nats_cli import stream_messages, wait_stream_count

    wait_stream_count(url, STREAM, len(written), timeout)
    time.sleep(1.0)  # anything still on its way would show as one too many
    stored = stream_messages(url, STREAM)
    ids = Counter(m.headers["Nats-Msg-Id"] for m in stored)
    changes = Counter(
        (m.headers["EventDesk-Model"], m.headers["EventDesk-Key"], m.headers["EventDesk-Rev"]) for m in stored
    )
    assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:5]
    assert max(changes.values()) == 1, [c for c, n in changes.items() if n > 1][:5]
    assert set(changes) == written, (
        f"missing {sorted(written - set(changes))[:5]}, unexpected {sorted(set(changes) - written)[:5]}"
    )
