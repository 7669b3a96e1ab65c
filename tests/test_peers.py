"""The test peers are real servers: prove it once, so every later test can rely on them."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from tests.peers.servers import CouchServer, MqttBroker


def test_couch_document_round_trip_through_changes(couch: CouchServer, couch_db: str) -> None:
    doc_id = f"doc-{uuid.uuid4().hex[:6]}"
    couch.request(
        "PUT", f"/{couch_db}/{doc_id}", json.dumps({"name": "Asha", "region": "Bangalore"}).encode()
    )
    changes = json.loads(couch.request("GET", f"/{couch_db}/_changes?include_docs=true"))
    docs = [row["doc"] for row in changes["results"]]
    assert [d["_id"] for d in docs] == [doc_id]
    assert docs[0]["region"] == "Bangalore"
    assert docs[0]["_rev"].startswith("1-")


def test_mqtt_publish_reaches_subscriber(mqtt_broker: MqttBroker, subscriber, unique_topic: str) -> None:  # type: ignore[no-untyped-def]
    sub = subscriber(unique_topic + "/#")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mqtt_broker.port)
    pub.loop_start()
    try:
        pub.publish(unique_topic + "/a", b'{"n": 1}', qos=1).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()
    [msg] = sub.wait_for(1, timeout=10)
    assert msg.topic == unique_topic + "/a"
    assert json.loads(msg.payload) == {"n": 1}


def test_broker_restarts_on_same_port_and_client_reconnects(mqtt_broker: MqttBroker) -> None:
    connects: list[float] = []
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        connects.append(time.monotonic())
        connected.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = on_connect
    client.reconnect_delay_set(0.1, 0.5)
    client.connect("127.0.0.1", mqtt_broker.port, keepalive=5)
    client.loop_start()
    try:
        assert connected.wait(5)
        connected.clear()
        port = mqtt_broker.port
        mqtt_broker.stop()
        time.sleep(0.5)
        assert not client.is_connected()
        mqtt_broker.start()
        assert mqtt_broker.port == port
        assert connected.wait(15), "client did not reconnect to the restarted broker"
        assert len(connects) == 2
    finally:
        client.disconnect()
        client.loop_stop()
