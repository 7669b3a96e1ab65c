"""psycopg2's errors as :class:`ConnectorError`: which object and field is at fault, whether
trying again can help, and what to do, in words a user can act on.

The server's text is kept (it names the table, the setting, the slot), but the password never
appears: libpq does not echo it, and :func:`scrub` masks it should any message carry it.
"""

from __future__ import annotations

import psycopg2
import psycopg2.errorcodes as codes

from eventdesk.core.errors import ConnectorError

# SQLSTATEs that say the server is (for now) not there: try again.
_TRANSIENT = frozenset(
    {
        codes.CANNOT_CONNECT_NOW,  # 57P03 starting up / shutting down
        codes.ADMIN_SHUTDOWN,  # 57P01
        codes.CRASH_SHUTDOWN,  # 57P02
        codes.CONNECTION_EXCEPTION,
        codes.CONNECTION_FAILURE,
        codes.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        codes.TOO_MANY_CONNECTIONS,  # 53300
        codes.OBJECT_IN_USE,  # 55006: the slot is active for another PID (the old one's walsender)
        codes.SERIALIZATION_FAILURE,
        codes.DEADLOCK_DETECTED,
        codes.QUERY_CANCELED,
    }
)


# SQLSTATE classes that pass: connection exceptions, transaction rollbacks, insufficient
# resources, operator intervention, system errors (a full slot table, 53400, is named before).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked (a secret under 4 characters would garble it; libpq never
    echoes a password, this is for safety only)."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


def server_text(exc: BaseException) -> str:
    """The server's (or libpq's) message, first line, without the ``ERROR:`` or ``FATAL:`` tag."""
    text = str(getattr(exc, "pgerror", None) or exc).strip()
    for tag in ("ERROR:", "FATAL:"):
        if text.startswith(tag):
            text = text[len(tag) :].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def classify(
    exc: BaseException, *, datasource: str, model: str | None, secret: str | None, where: str
) -> ConnectorError:
    """A :class:`ConnectorError` for ``exc`` (raised by psycopg2 or the socket under it).

    ``datasource`` and ``model`` are the objects' labels; ``where`` is ``HOST:PORT/DATABASE``.
    """
    if isinstance(exc, ConnectorError):
        return exc
    text = scrub(server_text(exc), secret)
    low = text.lower()
    code = getattr(exc, "pgcode", None)
    model_obj = model or datasource

    def error(
        message: str, *, obj: str = datasource, field: str | None = None, terminal: bool = True
    ) -> ConnectorError:
        return ConnectorError(scrub(message, secret), obj=obj, field=field, terminal=terminal)

    if "password authentication failed" in low or code == codes.INVALID_PASSWORD:
        return error(f"the server refused the password of this user ({where})", field="secret")
    if "no password supplied" in low or "fe_sendauth" in low:
        return error("the server asks for a password and none is set: set the secret", field="secret")
    if "no pg_hba.conf entry" in low:
        return error(
            f"the server's pg_hba.conf has no entry letting this user connect from here: {text}", field="url"
        )
    if code == codes.INVALID_CATALOG_NAME or ("database" in low and "does not exist" in low):
        return error(f"no such database on {where}: {text}", field="url")
    if code == codes.INVALID_AUTHORIZATION_SPECIFICATION or ("role" in low and "does not exist" in low):
        return error(f"no such user: {text}", field="url")
    if "ssl" in low and ("certificate" in low or "root cert" in low or "verify" in low):
        return error(f"the TLS certificate check failed: {text}", field="ca_file")
    if "ssl" in low and ("not support" in low or "server does not" in low or "sslmode" in low):
        return error(f"TLS: {text}", field="sslmode")
    if "logical decoding requires" in low or "wal_level" in low:
        return error(
            "the server's wal_level is not 'logical': set wal_level = logical in postgresql.conf "
            f"and restart the server ({text})"
        )
    if (
        "must be superuser or replication role" in low
        or "permission denied to start wal sender" in low
        or ("replication" in low and "permission denied" in low)
    ):
        return error(
            "the user may not use replication: grant it (ALTER ROLE ... REPLICATION) or use another "
            f"user ({text})",
            field="url",
        )
    if code == codes.CONFIGURATION_LIMIT_EXCEEDED or "all replication slots are in use" in low:
        return error(
            "the server's replication slots are all in use: drop an unused slot or raise "
            f"max_replication_slots ({text})"
        )
    if "must be owner of" in low or code == codes.INSUFFICIENT_PRIVILEGE:
        return error(
            f"not allowed: {text} (to create the publication, the user must own the table and have "
            "CREATE on the database, or an administrator creates the publication)",
            obj=model_obj,
            field="table" if model else None,
        )
    if code == codes.UNDEFINED_TABLE:
        return error(f"no such table: {text}", obj=model_obj, field="table" if model else None)
    if code == codes.UNDEFINED_OBJECT and "replication slot" in low:
        return error(
            f"the replication slot was dropped outside EventDesk ({text}): changes since it was "
            "dropped are lost; remove and add the model again to start over",
            obj=model_obj,
        )
    if code == codes.UNDEFINED_OBJECT and "publication" in low:
        return error(f"the publication was dropped outside EventDesk ({text})", obj=model_obj)
    if (
        code
        in (codes.SYNTAX_ERROR, codes.UNDEFINED_COLUMN, codes.UNDEFINED_FUNCTION, codes.DATATYPE_MISMATCH)
        and model
    ):
        return error(f"the row filter is not valid here: {text}", obj=model_obj, field="row_filter")
    if code == codes.FEATURE_NOT_SUPPORTED and "where" in low:
        return error(
            f"this server does not take row filters (PostgreSQL 15 or later): {text}",
            obj=model_obj,
            field="row_filter",
        )
    if "no copy in progress" in low or "server closed the connection" in low:
        # psycopg2's words for a stream the server ended (a shutdown, a restart, a lost link)
        return error(f"the server ended the replication stream ({where})", terminal=False)
    transient_class = code is not None and code[:2] in _TRANSIENT_CLASSES
    if (
        code in _TRANSIENT
        or transient_class
        or code is None
        or isinstance(exc, (psycopg2.OperationalError, OSError))
    ):
        return error(f"{text} ({where})", terminal=False)
    return error(text)
