"""The built-in MQTT broker (kind ``local``): republishing that works with nothing installed.

EventDesk runs an MQTT 3.1.1 broker itself, on 127.0.0.1 and a configurable port, so any MQTT
client (``mosquitto_sub``, MQTT Explorer, paho) can subscribe to what EventDesk republishes.
The broker is amqtt, installed from PyPI with EventDesk, rather than a managed ``mosquitto``
child: mosquitto is faster (docs/performance.md) but is not there on a fresh machine, which is
the case this kind exists for; a user who has mosquitto configures an ``mqtt`` broker instead.
Inside: ``settings``, ``errors``, ``embedded`` (the amqtt broker on its own thread) and
``publisher`` (:class:`LocalBrokerPublisher`).
"""

from __future__ import annotations

from eventdesk.brokers.local.embedded import BROKERS, EmbeddedBroker, EmbeddedBrokers, amqtt_version
from eventdesk.brokers.local.errors import check_port_free, port_in_use_error
from eventdesk.brokers.local.publisher import LocalBrokerPublisher
from eventdesk.brokers.local.settings import DEFAULT_PORT, SCHEMA, LocalBrokerSettings

__all__ = [
    "BROKERS",
    "DEFAULT_PORT",
    "SCHEMA",
    "EmbeddedBroker",
    "EmbeddedBrokers",
    "LocalBrokerPublisher",
    "LocalBrokerSettings",
    "amqtt_version",
    "check_port_free",
    "port_in_use_error",
]
