"""IBM Cloudant / Apache CouchDB connector: follows a database's ``_changes`` feed."""

from __future__ import annotations

from typing import Any, ClassVar

from eventdesk.core.contracts import Connector
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

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
            "database", "str", required=True, help="The database to follow (defaults to the model's name)."
        ),
        Field(
            "since",
            "choice",
            default="now",
            choices=("now", "0"),
            help="Where the first run starts: now (new changes only) or 0 (everything). Later runs resume "
            "from the checkpoint.",
        ),
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
            help='A Mango selector evaluated by the server, e.g. {"region": "Bangalore"}.',
        ),
        Field(
            "batch_size",
            "int",
            label="Batch size",
            default=1000,
            minimum=1,
            maximum=10000,
            advanced=True,
            help="Largest number of changes handed over at once.",
        ),
    ),
)


class CloudantConnector(Connector):
    kind: ClassVar[str] = "cloudant"
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA

    async def run(self, since: Any) -> None:
        raise NotImplementedError("being written")

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        raise NotImplementedError("being written")
