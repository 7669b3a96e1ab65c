"""The desk watching the fleet's stream live (the Fleet window's "Watch live"): which of the
workspace's ``nats`` brokers its routes publish to, and, for one of them, the ``nats``
datasource and model that follow what every agent publishes there. The model subscribes to
the routes' subjects on core NATS, from now on: nothing is left on the server (no durable
consumer holding messages), and the datasource takes the broker's connection settings.
Names are derived from the broker's (``fleet-<broker>``), so watching again reuses them.
Where the broker names its stream, the model reads the stream itself through an ephemeral
ordered consumer instead, so what it shows is what the stream keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventdesk.core.errors import ConfigError
from eventdesk.core.workspace import Workspace

PREFIX = "fleet-"
CONNECTION_FIELDS = ("url", "username", "creds", "nkey", "ca_file")


def watched_brokers(workspace: Workspace) -> list[str]:
    """The ``nats`` brokers some route publishes to: the streams the fleet republishes into."""
    return sorted(
        name
        for name, broker in workspace.brokers.items()
        if broker.kind == "nats" and workspace.routes_of_broker(name)
    )


def fleet_models(workspace: Workspace) -> list[str]:
    """The workspace's models but the desk's watches of the fleet (a model ``fleet-<broker>``
    on its datasource of that name): ``fleet status`` and the Fleet window list these."""
    watches = {
        PREFIX + broker
        for broker in workspace.brokers
        if (ds := workspace.datasources.get(PREFIX + broker)) is not None and ds.kind == "nats"
    }
    return [
        name for name, model in workspace.models.items() if not (name in watches and model.datasource == name)
    ]


def template_filter(template: str) -> list[str]:
    """The subject filter a topic template publishes under, as tokens: a token holding a
    placeholder is ``*``; one that may span tokens ({key:levels}) ends it with ``>``."""
    tokens: list[str] = []
    for token in template.split("."):
        if ":levels}" in token:
            return [*tokens, ">"]
        tokens.append("*" if "{" in token else token)
    return tokens


def merge_filters(filters: list[list[str]]) -> list[str]:
    """One filter covering each of ``filters``: equal tokens kept, others ``*``, and ``>`` from
    where one ends with ``>`` or from the last token of the shorter one."""
    merged = filters[0]
    for other in filters[1:]:
        out: list[str] = []
        for mine, theirs in zip(merged, other, strict=False):
            if ">" in (mine, theirs):
                out.append(">")
                break
            out.append(mine if mine == theirs else "*")
        else:
            if len(merged) != len(other):
                out[-1] = ">"
        merged = out
    return merged


def subject_of(workspace: Workspace, broker: str) -> str:
    """The subject filter covering what every route into ``broker`` publishes."""
    filters = [
        template_filter(str(r.settings.get("topic") or "")) for r in workspace.routes_of_broker(broker)
    ]
    merged = merge_filters(filters)
    if merged[0] in ("*", ">"):
        raise ConfigError(
            "its routes' topic templates share no first subject token, so no one subject filter "
            "follows them without taking the whole server's traffic: start each template with the "
            "same token (e.g. 'ed.{model}.{op}')",
            obj=f"broker {broker!r}",
            field="topic",
        )
    return ".".join(merged)


def follow_settings(broker: dict[str, Any], subject: str) -> dict[str, Any]:
    """The watch model's settings: the broker's stream through an ephemeral ordered consumer
    (what the stream keeps, so a change a failover re-sent shows once; nothing left on the
    server), or, when the broker names no stream or publishes on core NATS, the subjects live."""
    stream = str(broker.get("stream") or "")
    if stream and broker.get("delivery", "jetstream") == "jetstream":
        return {"stream": stream, "subject": subject, "durable": False}
    return {"core_subject": subject}


@dataclass(frozen=True)
class WatchPlan:
    """The datasource and model that follow ``broker``'s routes live, and whether each exists."""

    broker: str
    datasource: str
    model: str
    subject: str
    datasource_settings: dict[str, Any]
    model_settings: dict[str, Any]
    has_datasource: bool
    has_model: bool


def watch_plan(workspace: Workspace, broker: str) -> WatchPlan:
    """What watching ``broker``'s stream live takes: an existing datasource or model of the
    derived names is reused (a name taken by an object of another kind or datasource is said)."""
    cfg = workspace.broker(broker)
    name = PREFIX + broker
    subject = subject_of(workspace, broker)
    ds = workspace.datasources.get(name)
    if ds is not None and ds.kind != "nats":
        raise ConfigError(
            f"datasource {name!r} exists and is of kind {ds.kind!r}: rename it to watch broker {broker!r}",
            obj=f"broker {broker!r}",
        )
    model = workspace.models.get(name)
    if model is not None and model.datasource != name:
        raise ConfigError(
            f"model {name!r} exists on datasource {model.datasource!r}: rename it to watch broker {broker!r}",
            obj=f"broker {broker!r}",
        )
    return WatchPlan(
        broker=broker,
        datasource=name,
        model=name,
        subject=subject,
        datasource_settings={k: cfg.settings[k] for k in CONNECTION_FIELDS if k in cfg.settings},
        model_settings=follow_settings(cfg.settings, subject),
        has_datasource=ds is not None,
        has_model=model is not None,
    )
