"""Workspace validation, persistence and the promise that no secret reaches the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventdesk.core.errors import ConfigError, NotFoundError
from eventdesk.core.home import Home
from eventdesk.core.workspace import SCHEMA_VERSION


def _seed_home() -> Home:
    home = Home.open()
    home.add_datasource(
        "couch",
        "couchdb",
        {"url": "http://127.0.0.1:5984", "auth": "basic", "username": "admin"},
        secret="canary-secret-42",
    )
    home.add_model("accounts", "couch", {"database": "accounts", "since": "now"})
    home.add_broker("local", "mqtt", {"url": "mqtt://127.0.0.1:1883"})
    home.add_route("to-subutest", "accounts", "local", {"topic": "/v1/subutest", "format": "seed", "qos": 1})
    return home


def test_round_trip_and_no_secret_in_file() -> None:
    home = _seed_home()
    text = home.paths.workspace_file.read_text()
    assert "canary-secret-42" not in text
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["datasources"]["couch"]["secret"] == {"keyring": f"{data['workspace_id']}/datasource/couch"}
    again = Home.open()
    assert again.workspace.to_json() == home.workspace.to_json()
    assert again.workspace.route("to-subutest").settings == {
        "topic": "/v1/subutest",
        "format": "model-message",
        "qos": 1,
        "retain": False,
        "enabled": True,
        "on_poison": "quarantine",
    }


def test_save_is_atomic_and_keeps_a_backup() -> None:
    home = _seed_home()
    home.add_model("orders", "couch", {"database": "orders"})
    backup = home.paths.workspace_file.with_name("workspace.json.bak")
    assert backup.exists()
    assert "orders" not in json.loads(backup.read_text())["models"]
    assert not list(home.paths.config_dir.glob("*.tmp"))


@pytest.mark.parametrize(
    ("action", "obj", "field"),
    [
        (lambda h: h.add_datasource("bad", "couchdb", {"url": "not a url"}), "datasource 'bad'", "url"),
        (lambda h: h.add_datasource("bad", "couchdb", {"url": "ftp://x"}), "datasource 'bad'", "url"),
        (lambda h: h.add_datasource("bad", "nosuch", {"url": "http://x"}), "datasource 'bad'", "kind"),
        (
            lambda h: h.add_datasource("bad", "couchdb", {"url": "http://x", "auth": "basic"}),
            "datasource 'bad'",
            "username",
        ),
        (lambda h: h.add_datasource("b a d", "couchdb", {"url": "http://x"}), "datasource 'b a d'", "name"),
        (
            lambda h: h.add_model("m", "couch", {"database": "m", "selector": "{oops"}),
            "model 'm'",
            "selector",
        ),
        (lambda h: h.add_model("m", "couch", {"database": "m", "since": "yesterday"}), "model 'm'", "since"),
        (lambda h: h.add_broker("b", "mqtt", {"url": "http://x"}), "broker 'b'", "url"),
        (lambda h: h.add_route("r", "accounts", "local", {"topic": "a/+/b"}), "route 'r'", "topic"),
        (lambda h: h.add_route("r", "accounts", "local", {"topic": "a/{nope}"}), "route 'r'", "topic"),
        (lambda h: h.add_route("r", "accounts", "local", {"topic": ""}), "route 'r'", "topic"),
        (lambda h: h.add_route("r", "accounts", "local", {"qos": 3}), "route 'r'", "qos"),
        (lambda h: h.add_route("r", "accounts", "local", {"format": "xml"}), "route 'r'", "format"),
    ],
)
def test_bad_input_names_object_and_field(action, obj: str, field: str) -> None:  # type: ignore[no-untyped-def]
    home = _seed_home()
    before = home.paths.workspace_file.read_text()
    with pytest.raises(ConfigError) as info:
        action(home)
    assert info.value.obj == obj
    assert info.value.field == field
    assert f"{obj}: field '{field}'" in str(info.value)
    assert home.paths.workspace_file.read_text() == before


def test_unknown_references() -> None:
    home = _seed_home()
    with pytest.raises(NotFoundError, match="datasource 'nope' does not exist"):
        home.add_model("x", "nope", {"database": "x"})
    with pytest.raises(NotFoundError, match="no such route"):
        home.set_route_enabled("nope", True)


def test_remove_cascades_and_deletes_secret() -> None:
    import keyring

    home = _seed_home()
    account = f"{home.workspace.workspace_id}/datasource/couch"
    assert keyring.get_password("eventdesk", account) == "canary-secret-42"
    removed = home.remove("datasource", "couch", cascade=True)
    assert removed == ["route 'to-subutest'", "model 'accounts'", "datasource 'couch'"]
    assert keyring.get_password("eventdesk", account) is None
    assert Home.open().workspace.routes == {}


def test_corrupt_file_is_reported_with_backup_hint(isolated_home: Path) -> None:
    home = _seed_home()
    home.paths.workspace_file.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not valid JSON .* workspace.json.bak"):
        Home.open()
