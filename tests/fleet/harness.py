"""A fleet on loopback for the tests: a three-node nats-server cluster (fixture nats_cluster), an
R3 stream, twelve CouchDB models (pouchdb-server) each routed to the stream, and ``eventdesk run
--fleet`` agents in child processes, each with its own home holding a copy of one workspace
file. A writer thread creates documents in every model's database; the checks read the stream
and the fleet bucket with nats-py directly."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from eventdesk.core.home import Home
from tests.brokers.test_nats_cli import wait_stream_count
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
    ended: set[str] = field(default_factory=set)  # agents SIGKILLed or stopped on purpose
    workspace_id: str = ""

    @property
    def read_url(self) -> str:
        """A running node's URL, for the checks."""
        return next(n.url for n in self.cluster.nodes if n.proc is not None)

    @property
    def bucket(self) -> str:
        return "eventdesk-" + self.workspace_id

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

    def start_agent(self, agent: str, ttl: float = TTL) -> RunProcess:
        """``eventdesk run --fleet`` as ``agent`` in a home of its own (a copy of the workspace
        file, no capture yet the first time)."""
        home = self.tmp / f"home-{agent}"
        if not home.exists():
            home.mkdir()
            shutil.copy(self.tmp / "template" / "workspace.json", home / "workspace.json")
        run = RunProcess(
            home_args(home),
            run_args=("--fleet", self.cluster.url, "--agent-id", agent, "--lease-ttl", str(ttl),
                      "--fleet-replicas", "3"),
        )  # fmt: skip
        self.agents[agent] = run
        self.ended.discard(agent)
        return run

    def holders(self) -> dict[str, dict[str, Any]]:
        """Each model's lease as the bucket holds it now (absent: never taken)."""
        return asyncio.run(read_leases(self.read_url, self.bucket))

    def kill(self, agent: str) -> None:
        self.agents[agent].kill()
        self.ended.add(agent)

    def stop_all(self) -> None:
        """Stop every agent not killed on purpose; each must still run and stop cleanly (exit
        0: an agent that ended on its own, on an error, fails here with its output)."""
        for agent, run in self.agents.items():
            if agent not in self.ended:
                self.ended.add(agent)
                alive = run.proc.poll() is None
                rc = run.stop(20)
                assert alive and rc == 0, f"agent {agent} (alive: {alive}, exit {rc}):\n{run.output()}"
        self.outputs()  # kept in tmp

    def held_by(self, agent: str) -> set[str]:
        return {m for m, lease in self.holders().items() if lease["agent"] == agent}

    def wait_held(
        self, timeout: float, *, by: set[str] | None = None, balanced: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Until every model runs under a lease of one of ``by`` (default: any agent); when
        ``balanced``, every live agent holds its fair share."""
        deadline = time.monotonic() + timeout
        leases: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for agent, run in self.agents.items():
                if agent not in self.ended and run.proc.poll() is not None:
                    raise AssertionError(f"agent {agent} ended (exit {run.proc.returncode}):\n{run.output()}")
            try:
                leases = self.holders()
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError,
            ):
                time.sleep(0.2)  # a bucket just created, or a new leader being elected
                continue
            owners = {m: leases.get(m, {}).get("agent") for m in self.dbs}
            running = all(leases.get(m, {}).get("progress", {}).get("state") == "running" for m in self.dbs)
            if running and all(o and (by is None or o in by) for o in owners.values()):
                counts = Counter(owners.values())
                live = [a for a, run in self.agents.items() if run.proc.poll() is None]
                if not balanced or (
                    set(counts) == set(live) and max(counts.values()) <= -(-len(self.dbs) // len(live))
                ):
                    return leases
            time.sleep(0.1)
        raise AssertionError(
            f"models not all held and running after {timeout} s: {leases}\n{self.diagnose()}"
        )

    def check_exactly_once(self, written: set[tuple[str, str, str]], timeout: float = 60) -> None:
        """:func:`check_exactly_once` on this fleet's stream, the agents' output on a failure."""
        try:
            check_exactly_once(self.read_url, written, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None

    def diagnose(self) -> str:
        """What a failed check shows (also kept as diagnosis.txt in tmp): the agents' output,
        each route's position against what its agent captured, each stream's leader and
        replicas as every running node sees them, and the tail of each node's log."""
        text = "\n".join(
            [
                self.outputs(),
                "=== routes (agent: route position / last captured of its model)",
                *self.route_positions(),
                "=== streams",
                *asyncio.run(
                    streams_report(
                        [n.url for n in self.cluster.nodes if n.proc], [STREAM, "KV_" + self.bucket]
                    )
                ),
                "=== nats-server logs",
                self.cluster.log(),
            ]
        )
        (self.tmp / "diagnosis.txt").write_text(text)
        return text

    def route_positions(self) -> list[str]:
        out = []
        for agent in self.agents:
            path = self.tmp / f"home-{agent}" / "capture.sqlite3"
            if not path.exists():
                continue
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                positions = dict(con.execute("SELECT route, pos FROM route_positions").fetchall())
                last = dict(con.execute("SELECT model, MAX(pos) FROM events GROUP BY model").fetchall())
            finally:
                con.close()
            out += [f"{agent}: r-{m}: {positions.get(f'r-{m}')} / {last.get(m)}" for m in sorted(last)]
        return out

    def outputs(self) -> str:
        """The tail of each agent's output (the whole of it kept as agent-<id>.log in tmp)."""
        for a, r in self.agents.items():
            (self.tmp / f"agent-{a}.log").write_text(r.output())
        return "\n".join(f"=== agent {a}\n{r.output()[-4000:]}" for a, r in self.agents.items())


async def streams_report(urls: list[str], streams: list[str]) -> list[str]:
    """Each stream's messages, leader and replicas as each node (URL) answers, or why not."""
    out = []
    for url in urls:
        for stream in streams:
            try:
                nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
            except Exception as exc:
                out.append(f"{url}: cannot connect: {exc!r}")
                continue
            try:
                info = await nc.jetstream(timeout=3).stream_info(stream)
                c = info.cluster
                replicas = [(r.name, r.current, r.active, r.lag) for r in (c.replicas or [])] if c else None
                out.append(
                    f"{url} {stream}: messages={info.state.messages} last_seq={info.state.last_seq} "
                    f"leader={c.leader if c else None} replicas={replicas}"
                )
            except Exception as exc:
                out.append(f"{url} {stream}: {type(exc).__name__}: {exc}")
            finally:
                await nc.close()
    return out


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


async def read_leases(url: str, bucket: str) -> dict[str, dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        # The keys from the stream's subjects, not kv.keys(): that creates a consumer, which
        # needs the cluster's meta leader (a test may just have killed it).
        prefix = f"$KV.{bucket}.lease."
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=prefix + ">")
        for subject in info.state.subjects or {}:
            key = subject[len(f"$KV.{bucket}.") :]
            entry = await kv.get(key)
            out[key[len("lease.") :]] = json.loads(entry.value or b"{}")
        return out
    finally:
        await nc.close()


class Writer:
    """Creates documents in every model's database, round-robin, until stopped; remembers each
    (model, id, rev) written."""

    def __init__(
        self,
        couch: CouchServer,
        dbs: dict[str, str],
        per_round: int = 3,
        pause: float = 0.05,
        prefix: str = "d",
    ) -> None:
        self.prefix = prefix  # of the document ids: one per writer on the same databases
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
            docs = [{"_id": f"{self.prefix}{n:05d}-{j}", "n": n} for j in range(self.per_round)]
            reply = json.loads(
                self.couch.request("POST", f"/{db}/_bulk_docs", json.dumps({"docs": docs}).encode())
            )
            for r in reply:
                self.written.add((model, r["id"], r["rev"]))


def stream_headers(url: str) -> list[dict[str, str]]:
    """The headers of every message the stream holds, read by sequence (no consumer: creating
    one needs the cluster's meta leader, which a test may just have killed)."""

    async def read() -> list[dict[str, str]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            state = (await js.stream_info(STREAM)).state
            out = []
            for seq in range(state.first_seq, state.last_seq + 1):
                msg = await js.get_msg(STREAM, seq)
                out.append(dict(msg.headers or {}))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def check_exactly_once(url: str, written: set[tuple[str, str, str]], timeout: float = 60) -> None:
    """The stream ends up holding every written change once: by Nats-Msg-Id and by key+rev,
    none twice, none missing, nothing else."""
    wait_stream_count(url, STREAM, len(written), timeout)
    time.sleep(1.0)  # anything still on its way would show as one too many
    stored = stream_headers(url)
    ids = Counter(h["Nats-Msg-Id"] for h in stored)
    changes = Counter((h["EventDesk-Model"], h["EventDesk-Key"], h["EventDesk-Rev"]) for h in stored)
    assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:5]
    assert max(changes.values()) == 1, [c for c, n in changes.items() if n > 1][:5]
    assert set(changes) == written, (
        f"missing {sorted(written - set(changes))[:5]}, unexpected {sorted(set(changes) - written)[:5]}"
    )
