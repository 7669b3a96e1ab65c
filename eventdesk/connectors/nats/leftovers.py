"""What EventDesk left on a NATS server: the durable consumers it named (``eventdesk_<model>_<hash>``,
settings.py's :func:`consumer_name`) on the account's JetStream streams, each with the messages
it has not delivered yet and the model of the workspace following it. A consumer's name carries
no workspace mark; its description names the model and the datasource it was made for, and it is
this workspace's when the workspace derives that very name from them; other EventDesk-named
consumers are marked as another workspace's.
"""

from __future__ import annotations

import re

import nats.js.api
from nats.js.client import JetStreamContext

from eventdesk.connectors.nats.settings import consumer_name
from eventdesk.core.contracts import LeftOnServer

# ConsumerPlan.of's description: "EventDesk model 'orders' of datasource 'nd'".
_DESCRIPTION = re.compile(r"^EventDesk model '(?P<model>.+)' of datasource '(?P<datasource>.+)'$")

UNIT = "messages"


def owned_by(info: nats.js.api.ConsumerInfo, workspace_id: str) -> bool:
    """Whether the workspace of ``workspace_id`` derives this consumer's name."""
    m = _DESCRIPTION.match(info.config.description or "")
    return m is not None and consumer_name(workspace_id, m["datasource"], m["model"]) == info.name


async def list_left(
    js: JetStreamContext, workspace_id: str, followed: dict[tuple[str, str], str]
) -> list[LeftOnServer]:
    """The EventDesk-named durable consumers of every stream the account sees, sorted: this
    workspace's first; ``followed`` maps ``(stream, consumer)`` to the model following it."""
    entries = []
    for stream in await js.streams_info():
        name = stream.config.name or ""
        for info in await js.consumers_info(name):
            if not info.name.startswith("eventdesk_") or not info.config.durable_name:
                continue
            entries.append(
                LeftOnServer(
                    name=info.name,
                    what=f"durable consumer on stream {name!r}",
                    held=int(info.num_pending or 0),
                    unit=UNIT,
                    active=bool(info.num_waiting or info.push_bound),
                    followed_by=followed.get((name, info.name)),
                    other_workspace=not owned_by(info, workspace_id),
                    container=name,
                )
            )
    return sorted(entries, key=lambda e: (e.other_workspace, e.name, e.container))
