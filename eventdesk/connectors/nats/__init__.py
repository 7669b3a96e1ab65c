"""The ``nats`` source kind: a NATS JetStream stream through a durable pull consumer (or, live
only, core NATS subjects).

settings.py holds its settings and derives the consumer's name, messages.py turns a message
into an event, consumer.py finds or makes the consumer so that it starts after the
checkpoint (and deletes it when the model is removed with ``--drop-slot``), errors.py names
what went wrong, and connector.py is :class:`NatsConnector`, the entry point
``eventdesk.connectors.nats:NatsConnector``. Connecting (credentials, TLS) is
NATS's, shared with the ``nats`` broker kind (clients/nats/).
"""

from eventdesk.connectors.nats.connector import NatsConnector

__all__ = ["NatsConnector"]
