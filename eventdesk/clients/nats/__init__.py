"""NATS, as the ``nats`` source kind (connectors/nats/) and broker kind (brokers/nats/) both
speak it: settings.py holds the connection fields (URL, credentials, TLS) and the checks of
URLs, stream names and subjects, connection.py nats-py's connect options and one connection,
errors.py why connecting failed and the JetStream API error codes, headers.py the envelope
headers the broker writes and the source reads back.
"""
