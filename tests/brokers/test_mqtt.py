"""MqttPublisher against a real mosquitto: QoS, retain, throughput, faults, auth and TLS."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core.contracts import State
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, PoisonError
from tests.brokers.conftest import (
    MakeBroker,
    MakePublisher,
    PasswordBroker,
    StateRecorder,
    broker_config,
    tls_conf,
)
from tests.peers.servers import MqttBroker, Subscriber
from tests.peers.tls import PkiFiles

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


async def settle(futures: list[asyncio.Future[None]]) -> list[BaseException | None]:
    """Wait for every future; return each one's exception (None for success)."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


async def in_thread(fn: Callable[[], object]) -> None:
    """Run a blocking test-peer call (starting/stopping mosquitto) without blocking the loop."""
    await asyncio.to_thread(fn)


def assert_on_loop_thread(states: StateRecorder) -> None:
    assert states.threads == {threading.get_ident()}, "on_state must run on the loop thread"


# -- publishing ---------------------------------------------------------------------------


@PROTOCOLS
@pytest.mark.asyncio
async def test_each_qos_and_retain_reach_a_subscriber(
    protocol: str,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    sub = subscriber(unique_topic + "/#", qos=2)
    pub, states = make_publisher(broker_config(mqtt_broker.url, protocol=protocol))
    await pub.start()
    await pub.wait_connected()
    assert pub.connected

    for qos in (0, 1, 2):
        await pub.publish(f"{unique_topic}/q{qos}", f"qos {qos}".encode(), qos, False)
    got = {m.topic: m for m in sub.wait_for(3, timeout=10)}
    for qos in (0, 1, 2):
        msg = got[f"{unique_topic}/q{qos}"]
        assert (msg.payload, msg.qos, msg.retain) == (f"qos {qos}".encode(), qos, False)

    await pub.publish(f"{unique_topic}/kept", b"last known", 1, True)
    late = subscriber(f"{unique_topic}/kept", qos=1)  # subscribes after the publish
    [kept] = late.wait_for(1, timeout=10)
    assert (kept.payload, kept.qos, kept.retain) == (b"last known", 1, True)

    assert states.states == [State.CONNECTING, State.RUNNING]
    assert_on_loop_thread(states)


@pytest.mark.asyncio
async def test_five_thousand_qos1_messages_are_all_acked_and_received(
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    sub = subscriber(unique_topic, qos=1)
    pub, _ = make_publisher(broker_config(mqtt_broker.url))
    await pub.start()
    await pub.wait_connected()
    n = 5000
    futures = [pub.publish(unique_topic, b"%05d" % i + b"x" * 300, 1, False) for i in range(n)]
    assert await settle(futures) == [None] * n
    received = sub.wait_for(n, timeout=30)
    assert [m.payload[:5] for m in received] == [b"%05d" % i for i in range(n)]  # in order


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.asyncio
async def test_a_batch_resolves_once_every_message_is_settled(
    qos: int,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    sub = subscriber(unique_topic + "/#", qos=qos)
    # A window of 50 makes most of the batch wait for room (the refill path).
    pub, _ = make_publisher(broker_config(mqtt_broker.url))
    pub.max_inflight = 50
    await pub.start()
    await pub.wait_connected()
    n = 1500
    batch = pub.publish_many([(f"{unique_topic}/{i}", b"%04d" % i) for i in range(n)], qos, False)
    assert not batch.done()
    await asyncio.wait_for(batch, 20)
    assert batch.result() is None
    received = await asyncio.to_thread(sub.wait_for, n, 20)
    assert [m.payload for m in received] == [b"%04d" % i for i in range(n)]  # in order
    assert await asyncio.wait_for(pub.publish_many([], qos, False), 1) is None


@pytest.mark.asyncio
async def test_a_batch_with_a_topic_no_broker_takes_fails_and_stops_there(
    mqtt_broker: MqttBroker, unique_topic: str, make_publisher: MakePublisher
) -> None:
    pub, _ = make_publisher(broker_config(mqtt_broker.url))
    await pub.start()
    await pub.wait_connected()
    batch = pub.publish_many([(f"{unique_topic}/ok", b"1"), (f"{unique_topic}/+", b"2")], 1, False)
    with pytest.raises(PoisonError, match="cannot publish to topic") as refused:
        await asyncio.wait_for(batch, 10)
    assert refused.value.terminal and refused.value.field == "topic"


@PROTOCOLS
@pytest.mark.asyncio
async def test_a_message_over_the_broker_s_maximum_packet_size_is_found_before_sending(
    protocol: str, make_broker: MakeBroker, make_publisher: MakePublisher, unique_topic: str
) -> None:
    broker = make_broker("max_packet_size 100000\n")
    pub, _ = make_publisher(broker_config(broker.url, protocol=protocol))
    await pub.start()
    await pub.wait_connected()
    topic_max, payload_max = pub.message_bounds()
    assert topic_max * 4 <= 65535
    assert pub.check_message(unique_topic, b"x" * 1000, 1) is None
    assert pub.check_message("t/" + "x" * 70_000, b"", 1) is not None
    too_big = pub.check_message(unique_topic, b"x" * 200_000, 1)
    if protocol == "5":  # CONNACK's Maximum Packet Size
        assert payload_max < 100_000
        assert isinstance(too_big, PoisonError) and too_big.field == "payload"
        assert "the broker takes packets of at most 100000 bytes" in too_big.detail
    else:  # MQTT 3.1.1 has no way to say it: only the connection dropping tells
        assert payload_max > 100_000 and too_big is None


@pytest.mark.asyncio
async def test_mqtt5_receive_maximum_is_respected(
    make_broker: MakeBroker,
    make_publisher: MakePublisher,
    unique_topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="eventdesk.brokers.mqtt")
    # The broker advertises Receive Maximum 20 and disconnects clients that exceed it.
    broker = make_broker("max_inflight_messages 20\n")
    sub = Subscriber(port=broker.port, topic=unique_topic, qos=1)
    try:
        pub, states = make_publisher(broker_config(broker.url, protocol="5"))
        await pub.start()
        await pub.wait_connected()
        futures = [pub.publish(unique_topic, b"%04d" % i, 1, False) for i in range(500)]
        assert await settle(futures) == [None] * 500
        assert len(sub.wait_for(500, timeout=20)) == 500
        assert State.RETRYING not in states.states
        assert "at most 20 messages in flight" in caplog.text
    finally:
        sub.close()


@pytest.mark.asyncio
async def test_publish_while_not_connected_fails_at_once(
    make_broker: MakeBroker, make_publisher: MakePublisher
) -> None:
    broker = make_broker(started=False)
    pub, _ = make_publisher(broker_config(broker.url))
    with pytest.raises(BrokerDisconnectedError):
        await pub.publish("t/x", b"x", 1, False)  # not even started
    await pub.start()
    with pytest.raises(BrokerDisconnectedError):
        await pub.publish("t/x", b"x", 1, False)
    with pytest.raises(ValueError, match="QoS"):
        pub.publish("t/x", b"x", 3, False)


# -- faults -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_broker_stop_fails_in_flight_then_reconnects(
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    pub, states = make_publisher(broker_config(mqtt_broker.url))
    await pub.start()
    await pub.wait_connected()

    futures = [pub.publish(unique_topic, b"x" * 300, 1, False) for _ in range(20_000)]
    batch = pub.publish_many([(unique_topic, b"y" * 300)] * 5000, 1, False)  # queued behind them
    await in_thread(mqtt_broker.stop)
    outcomes = await asyncio.wait_for(settle(futures), 10)
    failures = [e for e in outcomes if e is not None]
    assert failures, "the broker acknowledged all 20,000 before it stopped; nothing was in flight"
    assert all(isinstance(e, BrokerDisconnectedError) for e in failures), {type(e) for e in failures}
    with pytest.raises(BrokerDisconnectedError):
        await asyncio.wait_for(batch, 10)  # one future for the batch, failed once
    retrying = await states.wait_for(State.RETRYING, timeout=5)
    assert retrying.detail and retrying.retry_in is not None and retrying.retry_in > 0
    assert not pub.connected
    with pytest.raises(BrokerDisconnectedError):
        await pub.publish(unique_topic, b"while down", 1, False)
    await states.wait_for(State.RETRYING, timeout=5, count=2)  # it keeps trying

    mark = len(states.changes)
    await in_thread(mqtt_broker.start)  # same port
    await states.wait_for(State.RUNNING, timeout=10, after=mark)
    await pub.wait_connected()
    # mosquitto cannot keep sessions across the restart here (its persistence dir is not
    # writable for it), so subscribe afresh before publishing again.
    after = subscriber(unique_topic, qos=1)
    await pub.publish(unique_topic, b"after restart", 1, False)
    [msg] = await asyncio.to_thread(after.wait_for, 1, 10)
    assert msg.payload == b"after restart"
    assert_on_loop_thread(states)


@pytest.mark.asyncio
async def test_started_while_broker_is_down_connects_when_it_comes_up(
    make_broker: MakeBroker, make_publisher: MakePublisher, unique_topic: str
) -> None:
    broker = make_broker(started=False)
    pub, states = make_publisher(broker_config(broker.url))
    await pub.start()
    first = await states.wait_for(State.RETRYING, timeout=5)
    assert first.detail is not None and "refused" in first.detail and "'url'" in first.detail
    await states.wait_for(State.RETRYING, timeout=5, count=3)
    delays = [c.retry_in for c in states.changes if c.state is State.RETRYING]
    assert all(d is not None and 0 < d <= 0.3 for d in delays)

    waiter = asyncio.ensure_future(pub.wait_connected())
    await in_thread(broker.start)
    await asyncio.wait_for(waiter, 10)
    assert states.states[-1] is State.RUNNING
    await pub.publish(unique_topic, b"hello", 1, False)


# -- authentication -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wrong_password_is_terminal_and_names_the_secret(
    password_broker: PasswordBroker, make_publisher: MakePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-" + password_broker.password
    config = broker_config(password_broker.broker.url, username=password_broker.username)
    pub, states = make_publisher(config, secret=wrong)
    await pub.start()
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(pub.wait_connected(), 10)
    err = caught.value
    assert err.terminal and err.field == "secret"
    assert wrong not in str(err) and password_broker.password not in str(err)
    assert "alice" in str(err)
    assert states.states == [State.CONNECTING, State.ERROR]
    assert states.changes[-1].detail is not None and wrong not in states.changes[-1].detail
    assert not pub.connected

    good, _ = make_publisher(config, secret=password_broker.password)
    await good.start()
    await asyncio.wait_for(good.wait_connected(), 10)
    await good.publish("t/auth", b"ok", 1, False)
    await good.close()
    assert password_broker.password not in caplog.text and wrong not in caplog.text


@pytest.mark.asyncio
async def test_missing_credentials_name_the_user_name(
    password_broker: PasswordBroker, make_publisher: MakePublisher
) -> None:
    pub, _ = make_publisher(broker_config(password_broker.broker.url))
    await pub.start()
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(pub.wait_connected(), 10)
    assert caught.value.terminal and caught.value.field == "username"


@pytest.mark.asyncio
async def test_test_connection_reports_success_and_failure(
    password_broker: PasswordBroker, make_broker: MakeBroker
) -> None:
    url = password_broker.broker.url
    config = broker_config(url, username="alice", protocol="5")
    summary = await MqttPublisher.test_connection(config, password_broker.password)
    assert "127.0.0.1" in summary and "MQTT 5" in summary and "alice" in summary
    assert password_broker.password not in summary

    with pytest.raises(BrokerError) as caught:
        await MqttPublisher.test_connection(config, "wrong-password-123")
    assert caught.value.field == "secret" and "wrong-password-123" not in str(caught.value)

    down = make_broker(started=False)
    with pytest.raises(BrokerError) as caught:
        await MqttPublisher.test_connection(broker_config(down.url), None)
    assert caught.value.field == "url" and "refused" in str(caught.value)


# -- TLS ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_with_the_right_ca(
    make_broker: MakeBroker, make_publisher: MakePublisher, pki: PkiFiles
) -> None:
    broker = make_broker(tls_conf(pki))
    config = broker_config(f"mqtts://127.0.0.1:{broker.port}", ca_file=str(pki.ca))
    pub, _ = make_publisher(config)
    await pub.start()
    await asyncio.wait_for(pub.wait_connected(), 10)
    await asyncio.gather(*(pub.publish("t/tls", b"secret sauce", q, False) for q in (0, 1, 2)))
    summary = await MqttPublisher.test_connection(config, None)
    assert "TLS" in summary


@pytest.mark.asyncio
async def test_tls_with_the_wrong_ca_names_the_ca_file(
    make_broker: MakeBroker, make_publisher: MakePublisher, pki: PkiFiles
) -> None:
    broker = make_broker(tls_conf(pki))
    pub, states = make_publisher(broker_config(f"mqtts://127.0.0.1:{broker.port}", ca_file=str(pki.other_ca)))
    await pub.start()
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(pub.wait_connected(), 10)
    err = caught.value
    assert err.terminal and err.field == "ca_file"
    assert str(pki.other_ca) in str(err) and "verif" in str(err)
    assert states.states == [State.CONNECTING, State.ERROR]


@pytest.mark.asyncio
async def test_tls_hostname_is_checked_unless_explicitly_skipped(
    make_broker: MakeBroker, make_publisher: MakePublisher, pki: PkiFiles
) -> None:
    broker = make_broker(tls_conf(pki, wrong_host=True))  # certificate for broker.invalid
    url = f"mqtts://127.0.0.1:{broker.port}"
    strict, _ = make_publisher(broker_config(url, ca_file=str(pki.ca)))
    await strict.start()
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(strict.wait_connected(), 10)
    assert caught.value.terminal and caught.value.field == "url" and "127.0.0.1" in str(caught.value)

    lax, _ = make_publisher(broker_config(url, ca_file=str(pki.ca), tls_insecure=True))
    await lax.start()
    await asyncio.wait_for(lax.wait_connected(), 10)
    await lax.publish("t/lax", b"x", 1, False)


@pytest.mark.asyncio
async def test_mutual_tls(make_broker: MakeBroker, make_publisher: MakePublisher, pki: PkiFiles) -> None:
    broker = make_broker(tls_conf(pki, require_certificate=True))
    url = f"mqtts://127.0.0.1:{broker.port}"
    with_cert, _ = make_publisher(
        broker_config(
            url, ca_file=str(pki.ca), client_cert=str(pki.client.cert), client_key=str(pki.client.key)
        )
    )
    await with_cert.start()
    await asyncio.wait_for(with_cert.wait_connected(), 10)
    await with_cert.publish("t/mtls", b"x", 1, False)

    without, states = make_publisher(broker_config(url, ca_file=str(pki.ca)))
    await without.start()
    with pytest.raises(BrokerError) as caught:
        await asyncio.wait_for(without.wait_connected(), 10)
    assert caught.value.terminal and caught.value.field == "client_cert"
    assert states.states[-1] is State.ERROR


@pytest.mark.asyncio
async def test_bad_tls_settings_fail_before_connecting(
    make_publisher: MakePublisher, pki: PkiFiles, tmp_path: Path
) -> None:
    deleted = tmp_path / "deleted-ca.pem"  # the settings refuse a missing file; this one goes later
    deleted.write_bytes(pki.ca.read_bytes())
    cases = [
        ({"url": "mqtts://127.0.0.1:1", "ca_file": str(deleted)}, "ca_file"),
        ({"url": "mqtts://127.0.0.1:1", "ca_file": str(pki.client.key)}, "ca_file"),  # not a cert
        ({"url": "mqtt://127.0.0.1:1", "ca_file": str(pki.ca)}, "url"),  # TLS file on a plain URL
        (
            {
                "url": "mqtts://127.0.0.1:1",
                "client_cert": str(pki.client.cert),
                "client_key": str(pki.server.key),
            },
            "client_key",
        ),
    ]
    for settings, field in cases:
        url = settings.pop("url")
        config = broker_config(url, **settings)
        deleted.unlink(missing_ok=True)
        pub, states = make_publisher(config)
        await pub.start()
        with pytest.raises(BrokerError) as caught:
            await asyncio.wait_for(pub.wait_connected(), 5)
        assert caught.value.terminal and caught.value.field == field, (settings, caught.value)
        assert states.states == [State.CONNECTING, State.ERROR]


# -- closing ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_flushes_within_timeout_and_leaves_no_threads(
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    sub = subscriber(unique_topic, qos=1)
    before = set(threading.enumerate())
    pub, states = make_publisher(broker_config(mqtt_broker.url))
    await pub.start()
    await pub.wait_connected()
    futures = [pub.publish(unique_topic, b"%d" % i, 1, False) for i in range(2000)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pub.close(timeout=5.0)
    assert loop.time() - started < 5.0
    assert await settle(futures) == [None] * 2000  # all flushed before disconnecting
    assert len(sub.wait_for(2000, timeout=10)) == 2000
    assert states.states[-2:] == [State.STOPPING, State.STOPPED]
    assert set(threading.enumerate()) == before
    assert not pub.connected
    with pytest.raises(BrokerError):
        await pub.wait_connected()
    with pytest.raises(BrokerDisconnectedError):
        await pub.publish(unique_topic, b"late", 1, False)
    await pub.close()  # idempotent


@pytest.mark.asyncio
async def test_a_closed_publisher_can_start_again(
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    make_publisher: MakePublisher,
) -> None:
    sub = subscriber(unique_topic, qos=1)
    pub, states = make_publisher(broker_config(mqtt_broker.url))
    for round_ in range(2):
        await pub.start()
        await pub.wait_connected()
        await pub.publish(unique_topic, b"round %d" % round_, 1, False)
        await pub.close()
    assert [m.payload for m in sub.wait_for(2, timeout=10)] == [b"round 0", b"round 1"]
    assert states.states == [State.CONNECTING, State.RUNNING, State.STOPPING, State.STOPPED] * 2


@pytest.mark.asyncio
async def test_async_context_manager_starts_and_closes(mqtt_broker: MqttBroker, unique_topic: str) -> None:
    states = StateRecorder()
    config = broker_config(mqtt_broker.url)
    async with MqttPublisher(config=config, secret=None, on_state=states) as pub:
        await pub.wait_connected()
        await pub.publish(unique_topic, b"x", 1, False)
    assert states.states == [State.CONNECTING, State.RUNNING, State.STOPPING, State.STOPPED]


@pytest.mark.asyncio
async def test_close_while_retrying_is_prompt(make_broker: MakeBroker, make_publisher: MakePublisher) -> None:
    before = set(threading.enumerate())
    broker = make_broker(started=False)
    pub, states = make_publisher(broker_config(broker.url), fast=False)  # 0.2 s .. 5 s backoff
    await pub.start()
    await states.wait_for(State.RETRYING, timeout=5, count=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pub.close(timeout=1.0)
    assert loop.time() - started < 1.0
    assert states.states[-1] is State.STOPPED
    assert set(threading.enumerate()) == before


def test_a_publisher_abandoned_with_its_loop_is_collected_quietly(
    mqtt_broker: MqttBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher never closed (a crashed caller) whose loop is gone: collecting its paho client
    closes the socket without calling back into the closed loop (no 'Exception ignored')."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    loop = asyncio.new_event_loop()
    pub = MqttPublisher(config=broker_config(mqtt_broker.url), secret=None, on_state=StateRecorder())
    loop.run_until_complete(pub.start())
    loop.run_until_complete(asyncio.wait_for(pub.wait_connected(), 10))
    conn = pub.connection
    assert conn is not None and conn.client.socket() is not None  # connected, socket open
    assert conn.thread is not None
    conn.thread.join(5)  # the connect thread's last frame holds the connection until it ends
    client = weakref.ref(conn.client)
    loop.close()
    del pub, conn
    gc.collect()
    assert client() is None
    assert raised == []
