"""The ``nats`` source kind: a NATS JetStream stream through a durable pull consumer (or, live
only, core NATS subjects).

settings.py holds its settings and derives the consumer's name, messages.py turns a message
into an event, consumer.py finds or makes the consumer so that it starts after the
checkpoint, errors.py names what went wrong, and connector.py is :class:`NatsConnector`, the
entry point ``eventdesk.connectors.nats:NatsConnector``. Connecting (credentials, TLS) is the
``nats`` broker kind's (brokers/nats/connection.py).
"""

from eventdesk.connectors.nats.connector import NatsConnector

__all__ = ["NatsConnector"]
