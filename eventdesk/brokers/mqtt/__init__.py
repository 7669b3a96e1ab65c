"""The ``mqtt`` broker kind: publishing to an MQTT 3.1.1 or 5 broker over paho-mqtt 2.x.

settings.py holds the schema and the typed settings, transport.py the endpoint and TLS,
errors.py what a failure is called, link.py and connection.py one connection driven by the
asyncio loop, paho_private.py the lean QoS 0/1 path (the one user of paho's private names)
and publisher.py :class:`MqttPublisher`, the entry point ``eventdesk.brokers.mqtt:MqttPublisher``.
"""

from eventdesk.brokers.mqtt.publisher import MqttPublisher
from eventdesk.brokers.mqtt.settings import SCHEMA, MqttSettings

__all__ = ["SCHEMA", "MqttPublisher", "MqttSettings"]
