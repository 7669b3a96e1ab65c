"""Done-when 4 of issue 15: three ``eventdesk run --fleet`` agents over twelve models on a
three-node nats-server cluster (R3 stream and bucket). An agent SIGKILLed: its models resume on
the others within the lease TTL; a nats-server node SIGKILLed: nothing stops; an agent paused
(SIGSTOP) past its TTL and resumed: it stops its models. In every case the stream holds each
change exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.fleet.harness import TTL, Fleet, Writer, check_exactly_once
from tests.peers.nats_server import NatsCluster, nats_cluster  # noqa: F401 - fixture
from tests.peers.servers import CouchServer

MODELS = 12
AGENTS = ("a1", "a2", "a3")
MARGIN = 3.0  # beyond the TTL: one renewal period to notice, the take, the model's start


def start_fleet(tmp_path: Path, couch: CouchServer, cluster: NatsCluster) -> Fleet:
    fleet = Fleet(cluster, couch, tmp_path)
    fleet.setup(MODELS)
    for agent in AGENTS:
        fleet.start_agent(agent)
    fleet.wait_held(30, balanced=True)
    return fleet


def stop_all(fleet: Fleet) -> None:
    for agent, run in fleet.agents.items():
        if run.proc.poll() is None:
            assert run.stop(20) == 0, f"agent {agent}:\n{run.output()}"


def test_sigkill_of_an_agent_moves_its_models_to_the_others(
    tmp_path: Path,
    couch: CouchServer,
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    fleet = start_fleet(tmp_path, couch, nats_cluster)
    try:
        with Writer(couch, fleet.dbs) as writer:
            time.sleep(1.5)
            victim = "a2"
            theirs = {m for m, lease in fleet.holders().items() if lease["agent"] == victim}
            assert theirs, "the victim held no model"
            fleet.agents[victim].kill()
            killed = time.monotonic()
            leases = fleet.wait_held(TTL + MARGIN, by={"a1", "a3"})
            took = time.monotonic() - killed
            time.sleep(1.5)
        check_exactly_once(fleet.read_url, writer.written)
        counts = Counter(lease["agent"] for lease in leases.values())
        assert counts == {"a1": MODELS // 2, "a3": MODELS // 2}, counts
        assert took >= TTL / 2, f"taken over after {took:.1f} s: before the lease could expire"
    finally:
        stop_all(fleet)
    # A clean stop released every lease.
    assert all(lease["agent"] == "" for lease in fleet.holders().values()), fleet.holders()
