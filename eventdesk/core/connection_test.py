"""Testing the connection of a saved datasource, model or broker: the kind's ``test_connection``
with the secret looked up off the loop, bounded by a timeout, every failure an EventDeskError
naming the object (never the secret). Used by ``Runtime.test_connection`` (the app's Test
action) and ``eventdesk test``.
"""

from __future__ import annotations

import asyncio
import logging

from eventdesk.core.errors import BrokerError, ConfigError, ConnectorError, EventDeskError
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.workspace import Workspace

log = logging.getLogger(__name__)

TEST_TIMEOUT = 30.0  # how long a test waits for an answer, the secret lookup included
TESTABLE = ("datasource", "model", "broker")


async def check_connection(workspace: Workspace, kind: str, name: str, timeout: float = TEST_TIMEOUT) -> str:
    """Connect once to the saved ``kind`` ``name`` of ``workspace`` (a model: its datasource and
    database) and return the kind's summary; raise an EventDeskError naming the object (and
    field): NotFoundError for an unknown name, SecretStoreError for a secret that cannot be had,
    ConnectorError (datasource, model) or BrokerError (broker) for the rest."""
    if kind not in TESTABLE:
        raise ConfigError(f"cannot test a {kind}; only a datasource, model or broker", obj=f"{kind} {name!r}")
    label = f"{kind} {name!r}"
    error: type[EventDeskError] = BrokerError if kind == "broker" else ConnectorError
    try:
        async with asyncio.timeout(timeout):
            if kind == "broker":
                broker = workspace.broker(name)
                # The keyring may talk D-Bus and block: never on the loop.
                secret = await asyncio.to_thread(resolve_secret, broker.secret, broker.label)
                return await broker_class(broker.kind).test_connection(broker, secret)
            model = workspace.model(name) if kind == "model" else None
            ds = workspace.datasource(model.datasource if model is not None else name)
            secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
            return await connector_class(ds.kind).test_connection(ds, secret, model)
    except EventDeskError:
        raise
    except TimeoutError:
        raise error(f"no answer within {timeout:g} s", obj=label) from None
    except NotImplementedError as exc:
        raise error(f"testing is not available for its kind ({exc})", obj=label) from None
    except Exception as exc:  # a kind's bug or an unexpected library error: say what it was
        log.exception("testing %s failed", label)
        raise error(f"{type(exc).__name__}: {exc}", obj=label) from exc


async def release_model(workspace: Workspace, name: str, timeout: float = TEST_TIMEOUT) -> str:
    """Drop what model ``name`` keeps on its source server (``Connector.release_model``: a
    PostgreSQL replication slot and publication), the secret looked up off the loop; a summary,
    or a ConnectorError naming the model."""
    model = workspace.model(name)
    ds = workspace.datasource(model.datasource)
    try:
        async with asyncio.timeout(timeout):
            secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
            return await connector_class(ds.kind).release_model(ds, secret, model)
    except EventDeskError:
        raise
    except TimeoutError:
        raise ConnectorError(f"no answer within {timeout:g} s", obj=model.label) from None


async def list_sources(workspace: Workspace, datasource: str, timeout: float = TEST_TIMEOUT) -> list[str]:
    """What a model of saved ``datasource`` can follow (``Connector.list_sources``), the secret
    looked up off the loop; NotImplementedError for a kind that cannot list them."""
    ds = workspace.datasource(datasource)
    try:
        async with asyncio.timeout(timeout):
            secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
            return await connector_class(ds.kind).list_sources(ds, secret)
    except TimeoutError:
        raise ConnectorError(f"no answer within {timeout:g} s", obj=ds.label) from None
