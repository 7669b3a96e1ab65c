"""The ``nats`` broker kind: publishing to NATS JetStream (or core NATS) over nats-py.

settings.py holds the schema and the typed settings, errors.py what a failure is called,
connection.py the stream check or creation and each message's ``Nats-Msg-Id`` and headers,
and publisher.py :class:`NatsPublisher`, the entry point ``eventdesk.brokers.nats:NatsPublisher``.
Connecting (credentials, TLS) is NATS's, shared with the ``nats`` source kind (clients/nats/).
"""

from eventdesk.brokers.nats.publisher import NatsPublisher
from eventdesk.brokers.nats.settings import SCHEMA, NatsSettings

__all__ = ["SCHEMA", "NatsPublisher", "NatsSettings"]
