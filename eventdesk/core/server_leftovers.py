"""What EventDesk left on a datasource's server (a PostgreSQL replication slot that holds WAL, a
NATS durable consumer), for ``eventdesk datasource leftovers`` and the desk's "Left on the
server…" dialog: the kind's :meth:`Connector.left_on_server` with the secret looked up off the
loop and every model of the workspace to match, and dropping one object nobody follows. A model
that follows it, another workspace's name, or a session reading it makes the drop refuse, saying
which.
"""

from __future__ import annotations

import asyncio

from eventdesk.core.connection_test import TEST_TIMEOUT
from eventdesk.core.contracts import Connector, LeftOnServer
from eventdesk.core.errors import ConfigError, ConnectorError, EventDeskError, NotFoundError
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from eventdesk.core.quantities import amount_text
from eventdesk.core.registry import connector_class
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.workspace import Workspace


def held_text(entry: LeftOnServer) -> str:
    """What ``entry`` holds, for people: "1.2 GB of WAL", "1,204 messages"."""
    return "unknown" if entry.held is None else amount_text(entry.held, entry.unit)


def follower_text(entry: LeftOnServer) -> str:
    """Who follows ``entry``: a model, "nobody", or "another workspace's"."""
    if entry.followed_by is not None:
        return f"model {entry.followed_by!r}"
    return "another workspace's" if entry.other_workspace else "nobody"


def to_json(entry: LeftOnServer) -> dict[str, object]:
    return {
        "name": entry.name,
        "what": entry.what,
        "held": entry.held,
        "unit": entry.unit,
        "active": entry.active,
        "followed_by": entry.followed_by,
        "other_workspace": entry.other_workspace,
    }


def _followers(workspace: Workspace) -> list[tuple[DatasourceConfig, ModelConfig]]:
    return [
        (workspace.datasources[m.datasource], m)
        for m in workspace.models.values()
        if m.datasource in workspace.datasources
    ]


async def list_left(
    workspace: Workspace, datasource: str, timeout: float = TEST_TIMEOUT
) -> list[LeftOnServer]:
    """What EventDesk made on saved ``datasource``'s server; a ConnectorError naming the datasource
    (and field) if the server cannot be asked, a SecretStoreError for a secret not to be had."""
    ds = workspace.datasource(datasource)
    cls = connector_class(ds.kind)
    if cls.left_on_server.__func__ is Connector.left_on_server.__func__:  # type: ignore[attr-defined]
        return []  # a kind that keeps nothing: no secret to read, no server to ask
    try:
        async with asyncio.timeout(timeout):
            secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
            return await cls.left_on_server(ds, secret, _followers(workspace))
    except EventDeskError:
        raise
    except TimeoutError:
        raise ConnectorError(f"no answer within {timeout:g} s", obj=ds.label) from None


async def drop_left(
    workspace: Workspace,
    datasource: str,
    name: str,
    *,
    other_workspace: bool = False,
    timeout: float = TEST_TIMEOUT,
) -> str:
    """Drop the object ``name`` that :func:`list_left` lists for ``datasource`` (the exact name);
    refused, saying why, when a model follows it, a session reads it, or it is another
    workspace's (unless ``other_workspace``). A summary of what was dropped."""
    ds = workspace.datasource(datasource)
    entries = [e for e in await list_left(workspace, datasource, timeout) if e.name == name]
    if not entries:
        raise NotFoundError(
            f"EventDesk left nothing named {name!r} on its server (the exact name, as "
            f"`eventdesk datasource leftovers {datasource}` lists it)",
            obj=ds.label,
        )
    for entry in entries:
        if entry.followed_by is not None:
            raise ConfigError(
                f"not dropped: model {entry.followed_by!r} follows {name}; remove the model with "
                "--drop-slot instead",
                obj=ds.label,
            )
        if entry.active:
            raise ConfigError(
                f"not dropped: {name} is in use (a session reads it now); stop what reads it first",
                obj=ds.label,
            )
        if entry.other_workspace and not other_workspace:
            raise ConfigError(
                f"not dropped: {name} is another workspace's (another home may still follow it); "
                "add --other-workspace if you know none does",
                obj=ds.label,
            )
    try:
        async with asyncio.timeout(timeout):
            secret = await asyncio.to_thread(resolve_secret, ds.secret, ds.label)
            cls = connector_class(ds.kind)
            return "; ".join([await cls.drop_left(ds, secret, entry) for entry in entries])
    except EventDeskError:
        raise
    except TimeoutError:
        raise ConnectorError(f"no answer within {timeout:g} s", obj=ds.label) from None


def held_for_nothing(entries: list[LeftOnServer]) -> list[LeftOnServer]:
    """The objects of this workspace that nobody follows and that hold something."""
    return [e for e in entries if e.followed_by is None and not e.other_workspace and e.held]


def warnings(datasource: str, entries: list[LeftOnServer], how: str | None = None) -> list[str]:
    """One line per object of :func:`held_for_nothing`, ending in how to drop it (``how``; by
    default the command that does)."""
    return [
        f"datasource {datasource!r}: {e.name} ({e.what}), followed by no model, holds {held_text(e)} — "
        + (how or f"drop it with `eventdesk datasource leftovers {datasource} --drop {e.name}`")
        for e in held_for_nothing(entries)
    ]
