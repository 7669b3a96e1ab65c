"""The webhook kind's settings: the schemas (validation, CLI flags, forms) and their typed form.

A datasource is one listening server (address, port, body limit, shared secret and how a body
names its op and key); a model is one path on it, which may name its own op and key fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventdesk.core.settings_schema import Field, KindSettings, Schema, check_host
from eventdesk.core.workspace import ModelConfig

DEFAULT_PORT = 8787
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_SIGNATURE_HEADER = "X-Hub-Signature-256"


def _check_path(value: Any) -> str | None:
    if value and (not str(value).startswith("/") or any(c in str(value) for c in "?# ")):
        return "a path starts with '/' and has no '?', '#' or spaces, e.g. /hooks/accounts"
    return None


def _check_header(value: Any) -> str | None:
    text = str(value)
    if text and not all(c.isalnum() or c in "-_" for c in text):
        return f"not an HTTP header name: {text!r}"
    return None


DATASOURCE_SCHEMA = Schema(
    kind="webhook",
    title="Webhook",
    description="Receive change events by HTTP POST on a local address (GitHub-, Stripe-style webhooks).",
    fields=(
        Field(
            "host",
            "str",
            label="Listen address",
            default="127.0.0.1",
            required=True,
            validator=check_host,
            help="Address to listen on; 0.0.0.0 accepts other machines too (set a shared secret then).",
        ),
        Field(
            "allow_unsigned",
            "bool",
            label="Allow unsigned requests from other machines",
            default=False,
            help="Listen on a non-loopback address without a shared secret: anyone who can reach "
            "the port can add events. Off: such a datasource is refused.",
        ),
        Field(
            "port",
            "int",
            default=DEFAULT_PORT,
            minimum=1,
            maximum=65535,
            help="TCP port to listen on; each model is a path on it.",
        ),
        Field(
            "max_body",
            "int",
            label="Max body size (bytes)",
            default=DEFAULT_MAX_BODY,
            minimum=64,
            maximum=256 * 1024 * 1024,
            help="Larger requests are refused with 413.",
        ),
        Field(
            "secret",
            "secret",
            label="Shared secret",
            help="Optional. When set, every request must carry an HMAC-SHA256 of its body made with "
            "this secret, in the signature header. Kept in the OS keyring.",
        ),
        Field(
            "signature_header",
            "str",
            default=DEFAULT_SIGNATURE_HEADER,
            validator=_check_header,
            help="Header holding the signature: 'sha256=<hex>' (GitHub) or plain hex.",
        ),
        Field(
            "op_field",
            "str",
            label="Op field",
            default="op",
            help="JSON field naming the change (created/updated/deleted); absent means created.",
        ),
        Field(
            "op_header",
            "str",
            label="Op header",
            default="X-Event-Op",
            validator=_check_header,
            advanced=True,
            help="Header naming the change, used when the body has no op field.",
        ),
        Field(
            "key_field",
            "str",
            label="Key field",
            default="id",
            required=True,
            help="JSON field holding the document's id (the event key).",
        ),
    ),
)

MODEL_SCHEMA = Schema(
    kind="webhook-model",
    title="Webhook path",
    description="One path on the datasource's server; each POST to it is one event (or an array of them).",
    fields=(
        Field(
            "path",
            "str",
            default="",
            validator=_check_path,
            help="Empty: /hooks/<model name>.",
        ),
        Field("op_field", "str", label="Op field", default="", help="Empty: the datasource's op field."),
        Field("key_field", "str", label="Key field", default="", help="Empty: the datasource's key field."),
    ),
)


@dataclass(frozen=True)
class WebhookDatasourceSettings(KindSettings):
    """A webhook datasource's settings, typed (the shared secret is not one: it is in the keyring)."""

    schema = DATASOURCE_SCHEMA
    host: str
    allow_unsigned: bool
    port: int
    max_body: int
    signature_header: str
    op_field: str
    op_header: str
    key_field: str


@dataclass(frozen=True)
class WebhookModelSettings(KindSettings):
    """A webhook model's settings, typed: its path, and op and key fields that override the
    datasource's (empty: the datasource's)."""

    schema = MODEL_SCHEMA
    path: str
    op_field: str
    key_field: str


def model_path(model: ModelConfig) -> str:
    """The path ``model`` receives on: its own, or ``/hooks/<model name>``."""
    return WebhookModelSettings.from_validated(model.settings).path or f"/hooks/{model.name}"
