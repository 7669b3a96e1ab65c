"""The nats broker kind against a three-node cluster whose stream elects a new leader: what the
old leader left unacknowledged is sent again as soon as the election says so, not after the
PubAck timeout, and lands once."""

from __future__ import annotations

import asyncio

import nats
import pytest

from eventdesk.brokers.nats import NatsPublisher
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, BrokerNoAckError
from tests.brokers.conftest import StateRecorder
from tests.brokers.test_nats_publisher import fields, nats_config, stream_messages
from tests.peers.nats_server import NatsCluster, nats_cluster, step_down, stream_leader  # noqa: F401 - fixture

pytestmark = pytest.mark.asyncio

ACK_TIMEOUT = 120.0  # far beyond the test's waits: a resend must come from the election


async def started(cluster: NatsCluster) -> NatsPublisher:
    config = nats_config(cluster.url, stream="ED", create_stream=True, subjects="ed.>", replicas=3)
    publisher = NatsPublisher(config=config, secret=None, on_state=StateRecorder())
    publisher.backoff_initial, publisher.backoff_max = 0.05, 0.3
    publisher.ack_timeout = ACK_TIMEOUT
    await publisher.start()
    await publisher.wait_connected()
    await asyncio.wait_for(publisher.publish_with_fields([("ed.warm", b"x")], [fields(-1)], 1, False), 20)
    return publisher


async def leader_index(cluster: NatsCluster, url: str) -> int:
    name = await stream_leader(url, "ED")
    return next(i for i, n in enumerate(cluster.nodes) if n.server_name == name)


async def test_a_batch_the_old_leader_left_is_resent_on_the_election(nats_cluster: NatsCluster) -> None:  # noqa: F811
    """A batch on a subject the stream does not bind (a plain subscriber takes it and never
    answers, as a dying leader never would): the stream's real election fails it at once."""
    cluster = nats_cluster
    publisher = await started(cluster)
    assert publisher._nc is not None and publisher._nc.connected_url is not None
    own = publisher._nc.connected_url  # the quiet subscriber's interest must be there already
    nc = await nats.connect(f"nats://{own.hostname}:{own.port}")
    try:
        await nc.subscribe("quiet.>")
        await nc.flush()
        pending = publisher.publish_with_fields([("quiet.x", b"{}")], [fields(0)], 1, False)
        await asyncio.sleep(0.3)
        assert not pending.done()
        await step_down(cluster.nodes[0].url, "ED")
        with pytest.raises(BrokerNoAckError) as caught:
            await asyncio.wait_for(pending, 30)
        assert "elected a new leader" in str(caught.value)
        assert publisher.connected
    finally:
        await nc.close()
        await publisher.close(1.0)


async def test_the_leaders_loss_mid_stream_is_resent_before_the_ack_timeout(
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    """SIGKILL of the stream's leader (not the node the publisher talks to) while batches flow:
    each refused or unanswered batch fails with the election's reason, well before the PubAck
    timeout, is sent again like a route does, and every message is stored once."""
    cluster = nats_cluster
    publisher = await started(cluster)
    try:
        assert publisher._nc is not None and publisher._nc.connected_url is not None
        own_port = publisher._nc.connected_url.port
        leader = await leader_index(cluster, cluster.nodes[0].url)
        while cluster.nodes[leader].port == own_port:  # the publisher's own node: elect another
            await step_down(cluster.nodes[0].url, "ED")
            leader = await leader_index(cluster, cluster.nodes[0].url)
        total, step, acked, killed = 2000, 100, 0, False
        reasons: list[str] = []
        while acked < total:
            chunk = range(acked, min(total, acked + step))
            sent = publisher.publish_with_fields(
                [(f"ed.k{i}", b"x") for i in chunk], [fields(i) for i in chunk], 1, False
            )
            if acked >= 500 and not killed:
                cluster.kill(leader)
                killed = True
            try:
                await asyncio.wait_for(sent, 30)  # never the 120 s PubAck timeout
            except BrokerNoAckError as exc:
                reasons.append(str(exc))
                continue
            except (BrokerDisconnectedError, BrokerError):
                await publisher.wait_connected()
                continue
            acked += len(chunk)
        assert reasons, "the leader's loss never failed a batch"
        assert all("no PubAck" not in r for r in reasons), reasons
        survivor = next(n.url for i, n in enumerate(cluster.nodes) if i != leader)
        stored = await stream_messages(survivor, "ED")
        keys = [m.headers["EventDesk-Key"] for m in stored if m.subject != "ed.warm"]
        assert sorted(keys) == sorted(f"k{i}" for i in range(total))  # none missing, none twice
    finally:
        await publisher.close(1.0)
