"""What "Watch live" plans (eventdesk/fleet/watch.py): the brokers the fleet republishes into,
the one subject filter covering a broker's routes, and the datasource and model it makes or
reuses, refusing names already taken by something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home
from eventdesk.fleet.watch import (
    fleet_models,
    follow_settings,
    merge_filters,
    template_filter,
    watch_plan,
    watched_brokers,
)


def test_one_filter_covers_every_template() -> None:
    def merged(*templates: str) -> str:
        return ".".join(merge_filters([template_filter(t) for t in templates]))

    assert merged("ed.{model}.{op}") == "ed.*.*"
    assert merged("ed.{model}.{op}", "ed.audit.{op}") == "ed.*.*"
    assert merged("ed.orders.created", "ed.orders.deleted") == "ed.orders.*"
    assert merged("ed.{model}", "ed.{model}.{op}") == "ed.>"
    assert merged("ed.x.{key:levels}", "ed.x.y") == "ed.x.>"
    assert merged("a.{model}", "b.{model}") == "*.*"


def test_plan_reuses_derived_names_and_refuses_taken_ones(isolated_home: Path) -> None:
    home = Home.open(str(isolated_home))
    try:
        home.add_datasource("hook", "webhook", {"port": 18999})
        home.add_model("orders", "hook", {})
        nats = {"url": "nats://h1:4222,h2", "username": "ed", "stream": "EVENTS", "ca_file": ""}
        home.add_broker("js", "nats", nats, secret_env="JS_PW")
        home.add_broker("unused", "nats", {"url": "nats://h3:4222"})
        home.add_broker("mq", "mqtt", {"url": "mqtt://h4:1883"})
        home.add_route("to-js", "orders", "js", {"topic": "ed.{model}.{op}"})
        home.add_route("to-mq", "orders", "mq", {"topic": "ed/{model}"})
        ws = home.workspace
        assert watched_brokers(ws) == ["js"]  # nats, and some route publishes to it
        plan = watch_plan(ws, "js")
        assert (plan.datasource, plan.model, plan.subject) == ("fleet-js", "fleet-js", "ed.*.*")
        assert not plan.has_datasource and not plan.has_model
        # The connection, not the broker's own settings (stream, ...), and never a secret.
        assert plan.datasource_settings == {
            "url": "nats://h1:4222,h2",
            "username": "ed",
            "creds": "",
            "nkey": "",
            "ca_file": "",
        }
        # The broker's stream, read through an ephemeral consumer (what the stream keeps).
        assert plan.model_settings == {"stream": "EVENTS", "subject": "ed.*.*", "durable": False}
        # No stream named, or core publishing: the subjects, live.
        assert follow_settings({"stream": ""}, "ed.>") == {"core_subject": "ed.>"}
        assert follow_settings({"stream": "S", "delivery": "core"}, "ed.>") == {"core_subject": "ed.>"}

        home.add_route("odd", "orders", "js", {"topic": "other.{model}"})
        with pytest.raises(ConfigError, match="share no first subject token") as caught:
            watch_plan(home.workspace, "js")
        assert caught.value.obj == "broker 'js'" and caught.value.field == "topic"
        home.workspace.remove("route", "odd")

        # Made once: reused, and not one of the fleet's models.
        home.add_datasource("fleet-js", "nats", plan.datasource_settings, secret_env="JS_PW")
        home.add_model("fleet-js", "fleet-js", plan.model_settings)
        again = watch_plan(home.workspace, "js")
        assert again.has_datasource and again.has_model and again.subject == "ed.*.*"
        assert fleet_models(home.workspace) == ["orders"]

        home.add_broker("eu", "nats", {"url": "nats://h5:4222"})
        home.add_route("to-eu", "orders", "eu", {"topic": "eu.{model}"})
        home.add_datasource("fleet-eu", "webhook", {"port": 18998})
        with pytest.raises(ConfigError, match="datasource 'fleet-eu' exists and is of kind 'webhook'"):
            watch_plan(home.workspace, "eu")
    finally:
        home.close()
