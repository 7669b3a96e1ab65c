"""Bad input: refused when added, and a workspace file that holds some still loads and stays usable.

Item 18 (a bad value accepted at add time broke every later command), item 21 (a malformed
workspace file gave a traceback) and item 22 (removing a datasource silently removed its models
and routes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home
from eventdesk.core.registry import broker_class, broker_kinds, connector_class, connector_kinds
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import (
    ROUTE_SCHEMA,
    BrokerConfig,
    DatasourceConfig,
    ModelConfig,
    RouteConfig,
    Workspace,
    load_workspace,
    save_workspace,
)
from tests.peers.tls import make_test_pki

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def _seed_home() -> Home:
    home = Home.open()
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "couch", {"database": "accounts"})
    home.add_broker("local", "mqtt", {"url": "mqtt://127.0.0.1:1883"})
    home.add_route("out", "accounts", "local", {"topic": "t/{model}"})
    return home


# -- item 18: refused at add time ------------------------------------------------------------


@pytest.mark.parametrize("selector", ['"str"', "[1, 2]", "5", "true", '"{}"'])
def test_a_selector_that_is_not_a_json_object_is_refused_when_added(selector: str) -> None:
    home = _seed_home()
    before = home.paths.workspace_file.read_text()
    with pytest.raises(ConfigError) as info:
        home.add_model("m", "couch", {"database": "m", "selector": selector})
    assert (info.value.obj, info.value.field) == ("model 'm'", "selector")
    assert "expected a JSON object" in info.value.detail
    assert home.paths.workspace_file.read_text() == before
    Home.open()  # the workspace still loads


def test_a_selector_object_is_accepted_and_loads_again() -> None:
    home = _seed_home()
    home.add_model("m", "couch", {"database": "m", "selector": '{"region": "Bangalore"}'})
    assert Home.open().workspace.model("m").settings["selector"] == {"region": "Bangalore"}


def _pem_problems(tmp_path: Path) -> list[tuple[str, str]]:
    (tmp_path / "not-pem.txt").write_text("hello")
    (tmp_path / "a-dir").mkdir()
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text("-----BEGIN CERTIFICATE-----\n")
    unreadable.chmod(0)
    cases = [
        (str(tmp_path / "missing.pem"), "no such file"),
        (str(tmp_path / "not-pem.txt"), "not a PEM file"),
        (str(tmp_path / "a-dir"), "not a file"),
    ]
    try:
        unreadable.read_bytes()
    except PermissionError:  # as root every file is readable
        cases.append((str(unreadable), "cannot read"))
    return cases


def test_tls_files_must_be_readable_pem_files(tmp_path: Path) -> None:
    home = _seed_home()
    for path, message in _pem_problems(tmp_path):
        for fld in ("ca_file", "client_cert"):
            settings = {"url": "mqtts://127.0.0.1:8883", fld: path, "client_key": path, "client_cert": path}
            with pytest.raises(ConfigError, match=message) as info:
                home.add_broker("tls", "mqtt", settings)
            assert info.value.obj == "broker 'tls'"
            assert info.value.field in ("ca_file", "client_cert", "client_key")
    pki = make_test_pki(tmp_path / "pki")
    home.add_broker(
        "tls",
        "mqtt",
        {
            "url": "mqtts://127.0.0.1:8883",
            "ca_file": str(pki.ca),
            "client_cert": str(pki.client.cert),
            "client_key": str(pki.client.key),
        },
    )


@pytest.mark.parametrize(
    ("action", "obj", "field"),
    [
        (lambda h: h.add_model("Accounts", "couch", {"database": "Accounts"}), "model 'Accounts'", "database"),
        (lambda h: h.add_model("m", "couch", {"database": "9lives"}), "model 'm'", "database"),
        (lambda h: h.add_model("m", "couch", {"database": "a" * 239}), "model 'm'", "database"),
        (lambda h: h.add_datasource("d", "couchdb", {"url": "http://a b:5984"}), "datasource 'd'", "url"),
        (lambda h: h.add_datasource("d", "couchdb", {"url": "http://-x-:5984"}), "datasource 'd'", "url"),
        (lambda h: h.add_datasource("d", "couchdb", {"timeout": "nan", "url": "http://x"}), "datasource 'd'", "timeout"),
        (lambda h: h.add_datasource("d", "couchdb", {"timeout": 1e400, "url": "http://x"}), "datasource 'd'", "timeout"),
        (lambda h: h.add_datasource("d", "couchdb", {"url": "http://x", "username": "a\x00b"}), "datasource 'd'", "username"),
        (lambda h: h.add_datasource("w", "webhook", {"host": "no such host!"}), "datasource 'w'", "host"),
        (lambda h: h.add_broker("b", "mqtt", {"url": "mqtt://bad_host$:1883"}), "broker 'b'", "url"),
        (lambda h: h.add_broker("b", "local", {"host": "not a host"}), "broker 'b'", "host"),
    ],
)  # fmt: skip
def test_values_that_would_fail_later_are_refused_when_added(action, obj: str, field: str) -> None:  # type: ignore[no-untyped-def]
    home = _seed_home()
    with pytest.raises(ConfigError) as info:
        action(home)
    assert (info.value.obj, info.value.field) == (obj, field)


def test_couchdb_system_databases_and_valid_names_are_accepted() -> None:
    home = _seed_home()
    for db in ("_users", "a$b(c)+d/e-f_9", "x" * 238):
        home.add_model("m", "couch", {"database": db}, replace=True)


def _schemas() -> list[tuple[str, str, Schema]]:
    """(object type, kind, schema) of every kind and of routes."""
    out = [("datasource", k, connector_class(k).datasource_schema) for k in connector_kinds()]
    out += [("model", k, connector_class(k).model_schema) for k in connector_kinds()]
    out += [("broker", k, broker_class(k).schema) for k in broker_kinds()]
    return [*out, ("route", "", ROUTE_SCHEMA)]


_FIELDS = [(t, k, s, f.name) for t, k, s in _schemas() for f in s.fields if not f.secret]


def _config_error(action: Callable[[], object]) -> ConfigError | None:
    """The ConfigError ``action`` raises (any other exception fails the test), or None."""
    try:
        action()
    except ConfigError as exc:
        return exc
    return None


def _datasource_base(kind: str) -> dict[str, Any]:
    """The least a datasource of ``kind`` needs: a URL (with a scheme the kind takes), if it has one."""
    schema = connector_class(kind).datasource_schema
    if "url" not in schema.names:
        return {}
    return {"url": f"{(schema.field('url').url_schemes or ('http',))[0]}://127.0.0.1:5984"}


def _put(ws: Workspace, object_type: str, kind: str, settings: dict[str, Any]) -> None:
    if object_type == "datasource":
        ws.put_datasource(DatasourceConfig("obj", kind, {**_datasource_base(kind), **settings}), replace=True)
    elif object_type == "model":
        ws.put_datasource(DatasourceConfig("ds", kind, _datasource_base(kind)), replace=True)
        base = {"database": "db"} if "database" in connector_class(kind).model_schema.names else {}
        ws.put_model(ModelConfig("obj", "ds", {**base, **settings}), replace=True)
    elif object_type == "broker":
        schema = broker_class(kind).schema
        base = (
            {"url": f"{schema.field('url').url_schemes[0]}://127.0.0.1:1883"} if "url" in schema.names else {}
        )
        ws.put_broker(BrokerConfig("obj", kind, {**base, **settings}), replace=True)
    else:
        ws.put_datasource(DatasourceConfig("ds", "webhook", {}), replace=True)
        ws.put_model(ModelConfig("m", "ds", {}), replace=True)
        ws.put_broker(BrokerConfig("b", "mqtt", {"url": "mqtt://127.0.0.1:1883"}), replace=True)
        ws.put_route(RouteConfig("obj", "m", "b", settings), replace=True)  # fmt: skip


@pytest.mark.parametrize(
    ("object_type", "kind", "schema", "name"), _FIELDS, ids=[f"{t}-{k}-{n}" for t, k, _, n in _FIELDS]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=JSON
    | st.sampled_from(
        [
            "",
            "0",
            "1",
            "-1",
            "1e400",
            "nan",
            "true",
            "{}",
            "[]",
            '"x"',
            "/hooks/a",
            "localhost",
            "mqtt://h:1",
            "http://h",
        ]
    )
)
def test_any_value_of_any_field_is_refused_naming_it_or_loads_again(
    tmp_path_factory: pytest.TempPathFactory, object_type: str, kind: str, schema: Schema, name: str, value: Any
) -> None:  # fmt: skip
    ws = Workspace()
    _put(ws, object_type, kind, {})  # the base object is valid
    error = _config_error(lambda: _put(ws, object_type, kind, {name: value}))
    if error is not None:
        assert error.obj == f"{object_type} 'obj'"
        assert error.field in schema.names
        if _config_error(lambda: schema.field(name).coerce(value, "x")) is not None:
            assert error.field == name  # the field's own check names it; cross-checks name theirs
        return
    path = tmp_path_factory.mktemp("ws") / "workspace.json"
    save_workspace(ws, path)
    again = load_workspace(path)
    assert again.invalid == {}
    assert again.to_json() == ws.to_json()


# -- item 18: a file with an invalid object --------------------------------------------------


def _write(home: Home, data: Any) -> None:
    home.paths.workspace_file.write_text(json.dumps(data))


def test_a_workspace_with_an_invalid_object_loads_marks_it_and_can_fix_it() -> None:
    home = _seed_home()
    data = json.loads(home.paths.workspace_file.read_text())
    data["models"]["accounts"]["settings"]["selector"] = "str"  # what `--selector '"str"'` stored
    _write(home, data)

    again = Home.open()
    ws = again.workspace
    assert set(ws.invalid) == {"model/accounts", "route/out"}
    bad = ws.invalid["model/accounts"]
    assert (bad.error.obj, bad.error.field) == ("model 'accounts'", "selector")
    route_error = ws.invalid["route/out"].error
    assert (route_error.obj, route_error.field) == ("route 'out'", "model")
    assert "model 'accounts' is invalid" in route_error.detail
    assert set(ws.datasources) == {"couch"} and set(ws.brokers) == {"local"}
    assert ws.models == {} and ws.routes == {}
    with pytest.raises(ConfigError, match="field 'selector'"):
        ws.model("accounts")
    assert ws.stored("model")["accounts"].settings["selector"] == "str"

    again.add_datasource("other", "webhook", {})  # saving keeps the invalid objects as they were
    saved = json.loads(again.paths.workspace_file.read_text())
    assert saved["models"]["accounts"] == data["models"]["accounts"]
    assert saved["routes"]["out"] == data["routes"]["out"]

    with pytest.raises(ConfigError, match="invalid model with this name exists"):
        again.add_model("accounts", "couch", {"database": "accounts"})
    again.add_model("accounts", "couch", {"database": "accounts"}, replace=True)
    assert again.workspace.invalid == {}  # fixing the model makes its route valid again
    assert Home.open().workspace.route("out").model == "accounts"


def test_an_invalid_object_can_be_removed() -> None:
    home = _seed_home()
    data = json.loads(home.paths.workspace_file.read_text())
    data["brokers"]["local"] = {"kind": "nosuch", "settings": {}}
    data["datasources"]["broken"] = "x"
    _write(home, data)
    again = Home.open()
    assert set(again.workspace.invalid) == {"broker/local", "route/out", "datasource/broken"}
    assert again.remove("datasource", "broken") == ["datasource 'broken'"]
    assert again.remove("broker", "local", cascade=True) == ["route 'out'", "broker 'local'"]
    assert Home.open().workspace.invalid == {}


# -- item 21: a malformed file is a ConfigError naming the file and key ---------------------


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b'{"schema_version": 1, "datasources": {"\xff": {}}}', None, "not UTF-8"),
        (b'{"schema_version": 1, "datasources": "x"}', "datasources", "got a string"),
        (b'{"schema_version": 1, "models": [1, 2]}', "models", "got an array"),
        (b'{"schema_version": 1, "routes": 5}', "routes", "got a number"),
        (b"[1, 2]", None, "expected a JSON object"),
        (b"7", None, "expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply"),
    ],
)
def test_a_malformed_workspace_file_is_a_config_error_naming_it(
    isolated_home: Path, content: bytes, field: str | None, message: str
) -> None:
    home = _seed_home()
    home.paths.workspace_file.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        Home.open()
    assert info.value.obj == f"workspace file {str(home.paths.workspace_file)!r}"
    assert info.value.field == field


def test_entries_of_the_wrong_type_are_invalid_objects_naming_the_key() -> None:
    home = _seed_home()
    data = json.loads(home.paths.workspace_file.read_text())
    data["models"]["accounts"]["settings"] = "x"
    data["datasources"]["other"] = {"kind": 5}
    data["brokers"]["b2"] = {"kind": "mqtt", "settings": {}, "secret": "plain"}
    _write(home, data)
    ws = Home.open().workspace
    found = {k: (o.error.obj, o.error.field) for k, o in ws.invalid.items()}
    assert found == {
        "model/accounts": ("model 'accounts'", "settings"),
        "route/out": ("route 'out'", "model"),
        "datasource/other": ("datasource 'other'", "kind"),
        "broker/b2": ("broker 'b2'", "secret"),
    }


_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["couchdb", "webhook", "mqtt", "local", "nosuch"]) | JSON,
        "datasource": st.sampled_from(["d", "w"]) | JSON,
        "model": st.sampled_from(["m", "x"]) | JSON,
        "broker": st.sampled_from(["b"]) | JSON,
        "settings": st.dictionaries(st.sampled_from(["url", "database", "topic", "selector", "host", "port", "qos"]), JSON) | JSON,
        "secret": st.sampled_from([{"keyring": "a"}, {"env": "V"}]) | JSON,
    },
)  # fmt: skip
_SECTION = st.dictionaries(
    st.sampled_from(["d", "w", "m", "b", "x", "bad name"]) | st.text(), _ENTRY | JSON, max_size=4
)
_FILE = st.fixed_dictionaries(
    {"schema_version": st.just(1) | JSON},
    optional=dict.fromkeys(("datasources", "models", "brokers", "routes"), _SECTION | JSON),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_FILE | JSON)
def test_any_json_workspace_file_loads_or_is_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: Any
) -> None:
    path = tmp_path_factory.mktemp("ws") / "workspace.json"
    path.write_text(json.dumps(data))
    loaded: list[Workspace] = []
    error = _config_error(lambda: loaded.append(load_workspace(path)))
    if error is not None:
        assert error.obj == f"workspace file {str(path)!r}"
        return
    (ws,) = loaded
    save_workspace(ws, path)  # nothing is lost by saving it again
    assert load_workspace(path).to_json() == ws.to_json()
    saved = json.loads(path.read_text())
    for section in ("datasources", "models", "brokers", "routes"):
        assert set(saved[section]) == set(data.get(section) or {})
    for bad in ws.invalid.values():  # an invalid object is written back as it was read
        assert saved[bad.object_type + "s"][bad.name] == bad.raw == data[bad.object_type + "s"][bad.name]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | _FILE.map(lambda d: json.dumps(d).encode()[:-3] + b"\xfe\x80}"))
def test_any_bytes_in_the_workspace_file_load_or_are_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("ws") / "workspace.json"
    path.write_bytes(content)
    error = _config_error(lambda: load_workspace(path))
    assert error is None or error.obj == f"workspace file {str(path)!r}"


# -- item 22: removing what others depend on ------------------------------------------------


def test_removing_an_object_with_dependants_needs_cascade_and_the_dry_run_lists_them() -> None:
    import keyring

    home = _seed_home()
    home.set_secret("datasource", "couch", "s3cret")
    home.capture.append("accounts", [], "5-abc")
    home.capture.set_route_position("out", 0)
    plan = home.removal("datasource", "couch")
    assert plan.dependants == ["route 'out'", "model 'accounts'"]
    lines = plan.describe()
    assert "route 'out' and its delivery position" in lines
    assert "model 'accounts' and its checkpoint" in lines
    assert "the secret of datasource 'couch' in the OS keyring" in lines
    with pytest.raises(ConfigError, match="route 'out', model 'accounts'") as info:
        home.remove("datasource", "couch")
    assert info.value.obj == "datasource 'couch'"
    assert set(Home.open().workspace.models) == {"accounts"}  # nothing went
    account = f"{home.workspace.workspace_id}/datasource/couch"
    assert keyring.get_password("eventdesk", account) == "s3cret"

    assert home.remove("datasource", "couch", cascade=True) == plan.labels
    assert home.capture.route_position("out") is None
    assert keyring.get_password("eventdesk", account) is None
    assert Home.open().workspace.empty is False  # the broker stays
    assert home.remove("broker", "local") == ["broker 'local'"]  # no dependants: no cascade needed
