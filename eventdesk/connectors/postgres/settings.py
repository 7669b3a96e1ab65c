"""The settings of a ``postgres`` datasource and of its models: schemas and typed settings.

A datasource is one database, ``postgresql://USER@HOST:PORT/DATABASE``; its password is a
secret field (OS keyring or an environment variable), never part of the URL. A model is one
table (``SCHEMA.TABLE``, by default ``public.<model name>``), followed through one publication
and one replication slot whose names EventDesk derives (:func:`object_names`) and shows.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from eventdesk.core.settings_schema import (
    BATCH_SIZE,
    CONNECT_TIMEOUT,
    Field,
    KindSettings,
    Schema,
    check_pem_file,
    since_field,
)

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# An unquoted identifier, or a double-quoted one ("" inside stands for one quote).
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE = re.compile(rf"^(?:(?P<schema>{_IDENT})\.)?(?P<table>{_IDENT})$")


def split_table(text: str) -> tuple[str, str] | None:
    """``(schema, table)`` as PostgreSQL names them (unquoted names folded to lower case), or None."""
    m = _TABLE.match(text.strip())
    if m is None:
        return None

    def name(part: str | None) -> str:
        if part is None:
            return "public"
        if part.startswith('"'):
            return part[1:-1].replace('""', '"')
        return part.lower()

    return name(m.group("schema")), name(m.group("table"))


def check_table(value: Any) -> str | None:
    text = str(value or "")
    if not text or split_table(text) is not None:
        return None
    return f'not a table name (expected TABLE or SCHEMA.TABLE, quoted with "..." if need be): {text!r}'


def check_url(value: Any) -> str | None:
    """The URL names no more than user, host, port and database (each may be left to libpq's
    defaults: the OS user, port 5432, a database named as the user)."""
    parts = urlsplit(str(value))
    if parts.query or parts.fragment:
        return "no query or fragment in the URL: use the sslmode and ca_file settings"
    if "/" in parts.path.strip("/"):
        return "the URL's path is the database name alone: postgresql://USER@HOST:PORT/DATABASE"
    return None


DATASOURCE_SCHEMA = Schema(
    kind="postgres",
    title="PostgreSQL",
    description="A PostgreSQL database (10 or later) followed through logical replication (pgoutput).",
    fields=(
        Field(
            "url",
            "url",
            label="URL",
            required=True,
            url_schemes=("postgresql", "postgres"),
            validator=check_url,
            help="postgresql://USER@HOST:PORT/DATABASE (the password goes in the secret store).",
        ),
        Field(
            "secret",
            "secret",
            label="Password",
            help="The user's password. Kept in the OS keyring (or read from an environment variable).",
        ),
        Field(
            "sslmode",
            "choice",
            label="SSL mode",
            default="prefer",
            choices=SSLMODES,
            help="libpq's sslmode: disable, allow, prefer, require, verify-ca or verify-full.",
        ),
        Field(
            "ca_file",
            "path",
            label="CA file",
            default="",
            validator=check_pem_file,
            advanced=True,
            help="PEM file of the certificate authority that signed the server's certificate.",
        ),
        CONNECT_TIMEOUT,
    ),
)

MODEL_SCHEMA = Schema(
    kind="postgres-model",
    title="Table",
    description="One table's inserts, updates, deletes and truncations.",
    fields=(
        Field(
            "table",
            "str",
            default="",
            validator=check_table,
            help="SCHEMA.TABLE to follow (empty: public.<model name>).",
        ),
        since_field(
            "now (changes from the slot's creation on) or 0 (the table's rows first, then its changes)"
        ),
        Field(
            "row_filter",
            "str",
            label="Row filter",
            default="",
            advanced=True,
            help="A publication row filter (PostgreSQL 15 or later), an SQL condition such as "
            "id > 1000, on key columns only unless the table has REPLICA IDENTITY FULL (the "
            "server refuses updates otherwise). Empty: every row.",
        ),
        BATCH_SIZE,
    ),
)


@dataclass(frozen=True)
class PostgresDatasourceSettings(KindSettings):
    schema = DATASOURCE_SCHEMA

    url: str
    sslmode: str
    ca_file: str
    connect_timeout: float

    def connect_args(self, password: str | None) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` (libpq's names)."""
        parts = urlsplit(self.url)
        args: dict[str, Any] = {
            "host": parts.hostname,
            "port": parts.port or 5432,
            "sslmode": self.sslmode,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": "eventdesk",
        }
        if parts.username:
            args["user"] = unquote(parts.username)
        if parts.path.strip("/"):
            args["dbname"] = unquote(parts.path.strip("/"))
        if self.ca_file:
            args["sslrootcert"] = self.ca_file
        if password is not None:
            args["password"] = password
        return args

    @property
    def where(self) -> str:
        """``HOST:PORT/DATABASE`` for messages."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


@dataclass(frozen=True)
class PostgresModelSettings(KindSettings):
    schema = MODEL_SCHEMA

    table: str
    since: str
    row_filter: str
    batch_size: int

    def qualified(self, model_name: str) -> tuple[str, str]:
        """``(schema, table)`` this model follows."""
        found = split_table(self.table) if self.table else ("public", model_name)
        if found is None:  # pragma: no cover - the schema's validator refused it already
            raise ValueError(self.table)
        return found


@dataclass(frozen=True)
class ObjectNames:
    """The publication and replication slot of one model (shown to the user, kept stable)."""

    publication: str
    slot: str


def object_names(workspace: str, datasource: str, model: str, schema: str, table: str) -> ObjectNames:
    """Names EventDesk derives for a model: ``eventdesk_<model>_<workspace>_<hash>`` (a slot name
    takes only ``[a-z0-9_]`` and 63 characters). ``<workspace>``, the first 6 characters of the
    workspace's id, keeps two workspaces (two homes) following the same database apart; the hash
    of the datasource, model and table keeps two models with similar names apart and gives an
    edited table new ones (connector.py names the slot the previous table left)."""
    digest = hashlib.sha256(f"{workspace}\0{datasource}\0{model}\0{schema}\0{table}".encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9_]+", "_", model.lower()).strip("_")[:36] or "model"
    owner = workspace_mark(workspace)
    name = f"eventdesk_{base}_{owner}_{digest}" if owner else f"eventdesk_{base}_{digest}"
    return ObjectNames(publication=name, slot=name)


def workspace_mark(workspace: str) -> str:
    """The part of a workspace's id its objects' names carry (see :func:`object_names`)."""
    return re.sub(r"[^a-z0-9]+", "", workspace.lower())[:6]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_sql(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"
