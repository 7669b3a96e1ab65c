"""The nats broker kind against a real nats-server -js: PubAck, de-duplication by Nats-Msg-Id,
an outage mid-stream, hostile values in subjects and the named misconfigurations."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.js.api import StreamConfig

from eventdesk.brokers.nats import SCHEMA, NatsPublisher
from eventdesk.brokers.nats.connection import msg_id
from eventdesk.brokers.nats.errors import stream_error
from eventdesk.core.contracts import MessageFields, State
from eventdesk.core.errors import (
    BrokerDisconnectedError,
    BrokerError,
    BrokerNoAckError,
    ConfigError,
    PoisonError,
)
from eventdesk.core.topic_template import TopicTemplate, check_template
from eventdesk.core.workspace import BrokerConfig
from tests.brokers.conftest import StateRecorder
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture
from tests.peers.tls import make_test_pki

pytestmark = pytest.mark.asyncio


def nats_config(url: str, name: str = "n1", **settings: Any) -> BrokerConfig:
    return BrokerConfig(
        name=name,
        kind="nats",
        settings=SCHEMA.validate({"url": url, **settings}, f"broker {name!r}"),
        secret=None,
    )


MakeNats = Callable[..., tuple[NatsPublisher, StateRecorder]]


@pytest_asyncio.fixture
async def make_nats() -> AsyncIterator[MakeNats]:
    made: list[NatsPublisher] = []

    def make(config: BrokerConfig, secret: str | None = None) -> tuple[NatsPublisher, StateRecorder]:
        recorder = StateRecorder()
        publisher = NatsPublisher(config=config, secret=secret, on_state=recorder)
        publisher.backoff_initial, publisher.backoff_max = 0.05, 0.3
        made.append(publisher)
        return publisher, recorder

    yield make
    for publisher in made:
        await publisher.close(1.0)


def fields(i: int, rev: str | None = "1-a", key: str | None = None) -> MessageFields:
    return MessageFields("ds", "accounts", "created", key or f"k{i}", rev, f"id{i}")


async def stream_messages(url: str, stream: str) -> list[Any]:
    """Every message the stream holds (direct gets by sequence)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            out.append(await js.get_msg(stream, seq))
        return out
    finally:
        await nc.close()


async def test_pubacks_and_duplicates_land_once(nats_server: NatsServer, make_nats: MakeNats) -> None:  # noqa: F811
    config = nats_config(nats_server.url, stream="ED", create_stream=True, subjects="ed.>")
    publisher, _ = make_nats(config)
    await publisher.start()
    await publisher.wait_connected()
    messages = [(f"ed.accounts.k{i}", json.dumps({"n": i}).encode()) for i in range(500)]
    batch = [fields(i) for i in range(500)]
    await asyncio.wait_for(publisher.publish_with_fields(messages, batch, 1, False), 20)
    # The same batch again, as after a crash: the stream's duplicate window drops it all.
    await asyncio.wait_for(publisher.publish_with_fields(messages, batch, 1, False), 20)
    stored = await stream_messages(nats_server.url, "ED")
    assert len(stored) == 500
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert ids == [msg_id(f, subject) for f, (subject, _) in zip(batch, messages, strict=True)]
    first = stored[0]
    assert first.headers["EventDesk-Model"] == "accounts"
    assert first.headers["EventDesk-Op"] == "created"
    assert first.headers["EventDesk-Key"] == "k0"
    assert first.headers["EventDesk-Rev"] == "1-a"
    assert json.loads(first.data) == {"n": 0}


async def test_two_routes_of_one_model_into_one_stream_both_land(
    nats_server: NatsServer,  # noqa: F811
    make_nats: MakeNats,
) -> None:
    publisher, _ = make_nats(nats_config(nats_server.url, stream="ED", create_stream=True, subjects="ed.>"))
    await publisher.start()
    await publisher.wait_connected()
    batch = [fields(i) for i in range(20)]
    envelope = [(f"ed.accounts.k{i}", b'{"envelope": %d}' % i) for i in range(20)]
    payload = [(f"ed.payload.k{i}", b'{"n": %d}' % i) for i in range(20)]
    await asyncio.wait_for(publisher.publish_with_fields(envelope, batch, 1, False), 20)
    await asyncio.wait_for(publisher.publish_with_fields(payload, batch, 1, False), 20)
    await asyncio.wait_for(publisher.publish_with_fields(payload, batch, 1, False), 20)  # a resend
    stored = await stream_messages(nats_server.url, "ED")
    assert sorted(m.subject for m in stored) == sorted(s for s, _ in envelope + payload)


async def test_msg_id_is_deterministic_and_tells_revisions_apart() -> None:
    s = "ed.accounts"
    assert msg_id(fields(1), s) == msg_id(fields(1), s)
    assert msg_id(fields(1, rev="2-b"), s) != msg_id(fields(1), s)
    # Without a rev, the capture id decides (the same captured event keeps its id).
    assert msg_id(fields(1, rev=None), s) == msg_id(
        MessageFields("ds", "accounts", "updated", "k1", None, "id1"), s
    )
    assert msg_id(fields(1, rev=None), s) != msg_id(fields(2, rev=None, key="k1"), s)
    # Two routes of one model, two subjects: two messages, not a message and its duplicate.
    assert msg_id(fields(1), s) != msg_id(fields(1), "ed.accounts.payload")


HOSTILE = ["a.b", "*", ">", "a b", "tab\there", "new\nline", "", ".", "x.>", "$SYS", "%2E", "a/b"]


async def test_hostile_keys_stay_one_token(nats_server: NatsServer, make_nats: MakeNats) -> None:  # noqa: F811
    template = TopicTemplate("ed.{model}.{key}", NatsPublisher.topic_separator)
    subjects = [template.render_fields("ds", "accounts", "created", key) for key in HOSTILE]
    for subject in subjects:
        assert NatsPublisher.validate_topic(subject) is None, subject
        assert subject.count(".") == 2, subject
    assert len(set(subjects)) == len(subjects)
    config = nats_config(nats_server.url, stream="H", create_stream=True, subjects="ed.accounts.*")
    publisher, _ = make_nats(config)
    await publisher.start()
    await publisher.wait_connected()
    batch = [fields(i, key=key) for i, key in enumerate(HOSTILE)]
    await asyncio.wait_for(publisher.publish_with_fields([(s, b"{}") for s in subjects], batch, 1, False), 10)
    stored = await stream_messages(nats_server.url, "H")
    assert [m.subject for m in stored] == subjects  # every one landed on its own single token
    assert "new%0Aline" in [m.headers["EventDesk-Key"] for m in stored]  # no header injection


async def test_validate_topic_refuses_what_nats_refuses() -> None:
    for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb"]:
        assert NatsPublisher.validate_topic(bad) is not None, bad
    assert NatsPublisher.validate_topic("ed.accounts.created") is None
    assert check_template("ed.{model}.{op}", NatsPublisher.validate_topic) is None
    assert check_template("ed.*.{op}", NatsPublisher.validate_topic) is not None


async def test_outage_mid_stream_nothing_missing_nothing_twice(
    nats_server: NatsServer,  # noqa: F811
    make_nats: MakeNats,
) -> None:
    config = nats_config(nats_server.url, stream="O", create_stream=True, subjects="ed.>")
    publisher, recorder = make_nats(config)
    await publisher.start()
    await publisher.wait_connected()
    total, step = 3000, 100
    acked = 0  # like a route: a batch's position moves only on its PubAcks; a failure resends it
    restarted = False
    while acked < total:
        chunk = range(acked, min(total, acked + step))
        if acked >= 1000 and not restarted:
            # Batches in flight while the server goes away: some are stored, their PubAcks lost.
            inflight = publisher.publish_with_fields(
                [(f"ed.o.k{i}", b"x") for i in chunk], [fields(i) for i in chunk], 1, False
            )
            nats_server.stop()
            restarted = True
            with pytest.raises(BrokerError):
                await asyncio.wait_for(inflight, 20)
            nats_server.start()
        try:
            await publisher.wait_connected()
            await asyncio.wait_for(
                publisher.publish_with_fields(
                    [(f"ed.o.k{i}", b"x") for i in chunk], [fields(i) for i in chunk], 1, False
                ),
                20,
            )
        except (BrokerDisconnectedError, BrokerError):
            continue
        acked += len(chunk)
    assert State.RETRYING in recorder.states
    stored = await stream_messages(nats_server.url, "O")
    keys = [m.headers["EventDesk-Key"] for m in stored]
    assert sorted(keys) == sorted(f"k{i}" for i in range(total))  # none missing, none twice
    assert len({m.headers["Nats-Msg-Id"] for m in stored}) == total


async def test_a_puback_that_never_comes_is_no_ack_not_a_drop(
    nats_server: NatsServer,  # noqa: F811
    make_nats: MakeNats,
) -> None:
    """A stream that does not answer while the connection is up (here a plain subscriber takes
    the subject and never replies; in a cluster, a stream electing its leader) fails the batch
    with BrokerNoAckError, which the route resends without counting it as a drop."""
    publisher, _ = make_nats(nats_config(nats_server.url, stream="S", create_stream=True, subjects="ed.>"))
    publisher.ack_timeout = 0.3
    await publisher.start()
    await publisher.wait_connected()
    nc = await nats.connect(nats_server.url)
    try:
        await nc.subscribe("quiet.>")
        await nc.flush()
        with pytest.raises(BrokerNoAckError) as caught:
            await asyncio.wait_for(
                publisher.publish_with_fields([("quiet.x", b"{}")], [fields(0)], 1, False), 10
            )
        assert "no PubAck" in str(caught.value)
        assert publisher.connected
    finally:
        await nc.close()


async def test_a_cluster_electing_its_leader_is_retried_and_jetstream_off_is_not() -> None:
    # nats-server answers 503 / 10008 "JetStream system temporarily unavailable" while its
    # cluster elects a meta leader (seen in the fleet's node-loss tests): a publisher
    # (re)connecting then retries; 503 / 10076 is JetStream off, for good.
    electing = nats.js.errors.ServiceUnavailableError(
        code=503, err_code=10008, description="JetStream system temporarily unavailable"
    )
    error = stream_error(electing, "broker 'js'", "ED")
    assert not error.terminal and error.field == "stream" and "electing" in str(error)
    off = nats.js.errors.ServiceUnavailableError(
        code=503, err_code=10076, description="JetStream not enabled"
    )
    assert stream_error(off, "broker 'js'", "ED").terminal


async def test_missing_stream_is_named(nats_server: NatsServer, make_nats: MakeNats) -> None:  # noqa: F811
    config = nats_config(nats_server.url, stream="NOPE")
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    assert caught.value.field == "stream" and "does not exist" in str(caught.value)
    assert "--create-stream" in str(caught.value)


async def test_subject_bound_to_no_stream_is_poison(nats_server: NatsServer, make_nats: MakeNats) -> None:  # noqa: F811
    publisher, _ = make_nats(nats_config(nats_server.url, stream="S", create_stream=True, subjects="ed.>"))
    await publisher.start()
    await publisher.wait_connected()
    with pytest.raises(PoisonError) as caught:
        await asyncio.wait_for(publisher.publish_with_fields([("other.x", b"{}")], [fields(0)], 1, False), 10)
    assert caught.value.field == "topic"
    assert "other.x" in str(caught.value) and "stream" in str(caught.value)


async def test_wrong_password_is_named_and_never_echoed(tmp_path: Path) -> None:
    canary = "s3cr3t-canary-9f1"
    conf = 'authorization {\n  user: ed\n  password: "right-one"\n}\n'
    server = NatsServer(tmp_path / "auth", extra_conf=conf)
    server.start()
    try:
        config = nats_config(server.url, username="ed")
        with pytest.raises(BrokerError) as caught:
            await NatsPublisher.test_connection(config, canary)
        assert caught.value.field == "secret" and caught.value.terminal
        assert "authorization" in str(caught.value)
        assert canary not in str(caught.value) and canary not in repr(caught.value)
        summary = await NatsPublisher.test_connection(config, "right-one")
        assert "connected to nats://127.0.0.1" in summary and "right-one" not in summary
    finally:
        server.stop()


async def test_permission_denied_is_named(tmp_path: Path, make_nats: MakeNats) -> None:
    conf = (
        "authorization {\n  users = [\n    {user: ed, password: pw, permissions: {publish: "
        '{allow: ["ed.ok.>", "$JS.API.>"]}, subscribe: {allow: ["_INBOX.>"]}}}\n  ]\n}\n'
    )
    server = NatsServer(tmp_path / "perm", extra_conf=conf)
    server.start()
    try:
        nc = await nats.connect(server.url, user="ed", password="pw")
        await nc.jetstream().add_stream(StreamConfig(name="P", subjects=["ed.>"]))
        await nc.close()
        publisher, _ = make_nats(nats_config(server.url, username="ed", stream="P"), "pw")
        await publisher.start()
        await publisher.wait_connected()
        await asyncio.wait_for(publisher.publish_with_fields([("ed.ok.a", b"1")], [fields(0)], 1, False), 10)
        with pytest.raises(PoisonError) as caught:
            await asyncio.wait_for(
                publisher.publish_with_fields([("ed.no.a", b"1")], [fields(1)], 1, False), 10
            )
        assert "permission denied" in str(caught.value) and "ed.no.a" in str(caught.value)
    finally:
        server.stop()


async def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match="nats://"):
        SCHEMA.validate({"url": "http://x:1"}, "broker 'n'")
    with pytest.raises(ConfigError, match="stream name"):
        SCHEMA.validate({"url": "nats://x:1", "create_stream": True, "subjects": "ed.>"}, "broker 'n'")
    with pytest.raises(ConfigError, match="subjects"):
        SCHEMA.validate({"url": "nats://x:1", "create_stream": True, "stream": "S"}, "broker 'n'")
    with pytest.raises(ConfigError, match="secret"):
        SCHEMA.validate({"url": "nats://u:pw@x:1"}, "broker 'n'")
    ok = SCHEMA.validate({"url": "nats://a:1, nats://b:2", "stream": "S"}, "broker 'n'")
    assert ok["delivery"] == "jetstream"


async def test_tls_needs_the_right_ca(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    conf = f'tls {{\n  cert_file: "{pki.server.cert}"\n  key_file: "{pki.server.key}"\n}}\n'
    server = NatsServer(tmp_path / "tls", extra_conf=conf)
    server.start()
    try:
        url = f"tls://127.0.0.1:{server.port}"
        summary = await NatsPublisher.test_connection(nats_config(url, ca_file=str(pki.ca)), None)
        assert "connected to tls://127.0.0.1" in summary
        with pytest.raises(BrokerError) as caught:
            await NatsPublisher.test_connection(nats_config(url, ca_file=str(pki.other_ca)), None)
        assert caught.value.field == "ca_file" and caught.value.terminal
        assert "certificate could not be verified" in str(caught.value)
        # A nats:// URL to a server that wants TLS: nats-py upgrades, the system's CAs refuse.
        with pytest.raises(BrokerError) as plain:
            await NatsPublisher.test_connection(nats_config(server.url), None)
        assert plain.value.field == "ca_file" and "certificate" in str(plain.value)
    finally:
        server.stop()


async def test_nkey_without_the_nkeys_package_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = tmp_path / "user.nk"
    seed.write_text("SUAM2SEEDNOTREALBUTSHAPEDLIKEONE\n")
    real_find_spec = importlib.util.find_spec
    # As on a machine without it, whether or not this one has it (the seed cannot be checked).
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nkeys" else real_find_spec(name, *a)
    )
    config = nats_config("nats://127.0.0.1:1", nkey=str(seed))
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    assert caught.value.field == "nkey" and "nkeys" in str(caught.value)


async def test_core_delivery_reaches_a_plain_subscriber(nats_server: NatsServer, make_nats: MakeNats) -> None:  # noqa: F811
    nc = await nats.connect(nats_server.url)
    got: list[Any] = []
    try:
        sub = await nc.subscribe("core.>")
        await nc.flush()
        publisher, _ = make_nats(nats_config(nats_server.url, delivery="core"))
        await publisher.start()
        await publisher.wait_connected()
        messages = [(f"core.k{i}", b"%d" % i) for i in range(50)]
        await asyncio.wait_for(
            publisher.publish_with_fields(messages, [fields(i) for i in range(50)], 0, False), 5
        )
        for _ in range(50):
            got.append(await sub.next_msg(timeout=5))
    finally:
        await nc.close()
    assert [m.data for m in got] == [b"%d" % i for i in range(50)]  # in order
    assert got[3].headers["Nats-Msg-Id"] == msg_id(fields(3), "core.k3")


async def test_a_replay_to_nats_escapes_subjects_and_a_second_replay_lands_nowhere(
    nats_server: NatsServer,  # noqa: F811
    make_nats: MakeNats,
    tmp_path: Path,
) -> None:
    from eventdesk.core.capture import Capture
    from eventdesk.core.envelope import Event
    from eventdesk.core.replay import ReplayTarget, replay

    config = nats_config(nats_server.url, stream="RP", create_stream=True, subjects="rp.>")
    publisher, _ = make_nats(config)
    await publisher.start()
    capture = Capture(tmp_path / "c.sqlite3")
    try:
        events = [
            Event(
                datasource="ds",
                model="accounts",
                op="created",
                key=key,
                rev=f"1-{i}",
                seq=i,
                payload={"n": i},
            )
            for i, key in enumerate(["a.b", "x y", "plain"])
        ]
        capture.append_rows("accounts", events, 2)
        target = ReplayTarget(config, "rp.{model}.{key}")
        first = await replay(capture, target, publisher=publisher)
        again = await replay(capture, target, publisher=publisher)  # the same events: same Msg-Ids
        assert first.published == again.published == 3
        stored = await stream_messages(nats_server.url, "RP")
        assert [m.subject for m in stored] == ["rp.accounts.a%2Eb", "rp.accounts.x%20y", "rp.accounts.plain"]
        assert [m.headers["EventDesk-Rev"] for m in stored] == ["1-0", "1-1", "1-2"]
    finally:
        capture.close()
