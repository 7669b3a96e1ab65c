"""The ``postgres`` source kind: a table's changes through logical replication (pgoutput).

settings.py holds its settings, pgoutput.py decodes the replication messages, values.py turns
column text into JSON values, changes.py makes events of them, server.py checks the server and
keeps the model's publication and slot, replication.py runs the stream, snapshot.py copies the
table for ``--since 0``, errors.py names what went wrong, and connector.py ties them together
as :class:`PostgresConnector`.
"""

from eventdesk.connectors.postgres.connector import PostgresConnector

__all__ = ["PostgresConnector"]
