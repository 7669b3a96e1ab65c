"""The settings of a Cloudant/CouchDB datasource and of one of its models (a database).

Each schema drives validation, the CLI's flags and the app's forms; the validated values
become a frozen, typed object (:class:`CloudantDatasourceSettings`,
:class:`CloudantModelSettings`) that the rest of the package reads attribute by attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eventdesk.core.settings_schema import BATCH_SIZE, Field, KindSettings, Schema, since_field

# CouchDB's rule for database names, plus the system databases one may follow.
_DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
_SYSTEM_DATABASES = frozenset({"_users", "_replicator", "_global_changes"})


def check_database_name(value: object) -> str | None:
    name = str(value)
    if name in _SYSTEM_DATABASES or (len(name) <= 238 and _DATABASE_NAME.match(name)):
        return None
    return (
        f"not a CouchDB database name: {name!r} (lower-case letter first, then a-z, 0-9, _$()+-/; "
        "at most 238 characters)"
    )


DATASOURCE_SCHEMA = Schema(
    kind="cloudant",
    title="Cloudant / CouchDB",
    description="An IBM Cloudant or Apache CouchDB server (any server speaking the CouchDB API).",
    fields=(
        Field(
            "url",
            "url",
            label="URL",
            required=True,
            url_schemes=("http", "https"),
            help="Base URL of the server, e.g. https://ACCOUNT.cloudantnosqldb.appdomain.cloud",
        ),
        Field(
            "auth",
            "choice",
            label="Authentication",
            default="none",
            choices=("none", "basic", "iam", "session"),
            help="none; basic (username + password); iam (IBM Cloud API key); session (CouchDB cookie).",
        ),
        Field("username", "str", default="", help="User name for basic or session authentication."),
        Field(
            "secret",
            "secret",
            label="Password / API key",
            help="Password (basic, session) or IAM API key (iam). Kept in the OS keyring.",
        ),
        Field(
            "timeout",
            "float",
            label="Request timeout (s)",
            default=60.0,
            minimum=1,
            maximum=600,
            advanced=True,
            help="How long one request may take before it is retried.",
        ),
    ),
    cross_checks=(
        lambda v: (
            ("username", "basic and session authentication need a username")
            if v["auth"] in ("basic", "session") and not v["username"]
            else None
        ),
    ),
)

MODEL_SCHEMA = Schema(
    kind="cloudant-model",
    title="Database",
    description="One database's change feed.",
    fields=(
        Field(
            "database",
            "str",
            required=True,
            validator=check_database_name,
            help="The database to follow (defaults to the model's name).",
        ),
        since_field("now (new changes only) or 0 (everything)"),
        Field(
            "include_docs",
            "bool",
            label="Include documents",
            default=True,
            help="Fetch each changed document with its change.",
        ),
        Field(
            "selector",
            "json",
            label="Server-side selector",
            default=None,
            json_type="object",
            help='A Mango selector evaluated by the server, e.g. {"region": "Bangalore"}.',
        ),
        BATCH_SIZE,
    ),
)


@dataclass(frozen=True)
class CloudantDatasourceSettings(KindSettings):
    """A Cloudant/CouchDB datasource's settings (its secret is not here: it is in the keyring)."""

    schema = DATASOURCE_SCHEMA
    url: str
    auth: str
    username: str
    timeout: float


@dataclass(frozen=True)
class CloudantModelSettings(KindSettings):
    """One followed database's settings."""

    schema = MODEL_SCHEMA
    database: str
    since: str
    include_docs: bool
    selector: dict[str, Any] | None
    batch_size: int
