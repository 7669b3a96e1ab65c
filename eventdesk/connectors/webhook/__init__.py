"""The ``webhook`` source kind: systems that announce their changes by HTTP POST.

A datasource is one local HTTP server (aiohttp, on the running loop); each model is one path
on it; a POSTed JSON object (or an array of them) becomes one event per object, and the request
is answered 2xx only once they are committed. Inside: ``settings`` (schemas, typed settings),
``access`` (signatures, who may send), ``body`` (a body's events), ``errors``, ``server`` (the
HTTP server, its limits and timeouts) and ``connector`` (the model's receiver and group commit).
"""

from __future__ import annotations

from eventdesk.connectors.webhook.access import (
    exposure_problem,
    is_loopback,
    sign,
    signature_ok,
    signature_problem,
)
from eventdesk.connectors.webhook.body import BodyRules
from eventdesk.connectors.webhook.connector import WebhookConnector, check_port_free
from eventdesk.connectors.webhook.errors import BadRequestError
from eventdesk.connectors.webhook.server import SERVERS, WebhookServer, WebhookServers
from eventdesk.connectors.webhook.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    WebhookDatasourceSettings,
    WebhookModelSettings,
    model_path,
)

__all__ = [
    "DATASOURCE_SCHEMA",
    "MODEL_SCHEMA",
    "SERVERS",
    "BadRequestError",
    "BodyRules",
    "WebhookConnector",
    "WebhookDatasourceSettings",
    "WebhookModelSettings",
    "WebhookServer",
    "WebhookServers",
    "check_port_free",
    "exposure_problem",
    "is_loopback",
    "model_path",
    "sign",
    "signature_ok",
    "signature_problem",
]
