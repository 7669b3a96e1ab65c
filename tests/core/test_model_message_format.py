"""The ``model-message`` payload format (``{"model": ..., "message": <document>}``), once named
``seed``: shown under its new name everywhere, the old name still accepted on input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventdesk.cli.main import build_parser
from eventdesk.core import json_codec
from eventdesk.core.demo import ROUTE, setup_demo
from eventdesk.core.envelope import PAYLOAD_FORMATS, encode_payload, payload_format
from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home
from eventdesk.core.replay import ReplayTarget
from eventdesk.core.workspace import ROUTE_SCHEMA, BrokerConfig, RouteConfig, Workspace
from tests.peers.servers import free_port

# What a source can send: JSON values (no NaN or infinity), numbers of any size.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def _home_with_route(fmt: str) -> Home:
    home = Home.open()
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "couch", {"database": "accounts"})
    home.add_broker("local", "mqtt", {"url": "mqtt://127.0.0.1:1883"})
    home.add_route("out", "accounts", "local", {"topic": "/v1/subutest", "format": fmt})
    return home


def test_the_formats_offered_are_envelope_model_message_and_payload() -> None:
    assert PAYLOAD_FORMATS == ("envelope", "model-message", "payload")
    field = ROUTE_SCHEMA.field("format")
    assert field.choices == PAYLOAD_FORMATS  # the CLI's help and the route dialog's choices
    assert "model-message: {model, message}" in field.help
    assert "seed" not in field.help


@pytest.mark.parametrize("given_as", ["model-message", "seed"])
def test_a_route_added_with_either_name_is_stored_as_model_message(given_as: str) -> None:
    home = _home_with_route(given_as)
    assert home.workspace.route("out").settings["format"] == "model-message"
    saved = json.loads(home.paths.workspace_file.read_text())
    assert saved["routes"]["out"]["settings"]["format"] == "model-message"


def test_a_workspace_file_with_format_seed_opens_with_a_valid_model_message_route() -> None:
    home = _home_with_route("model-message")
    path = home.paths.workspace_file
    data = json.loads(path.read_text())
    data["routes"]["out"]["settings"]["format"] = "seed"  # as an older EventDesk wrote it
    path.write_text(json.dumps(data))
    again = Home.open()
    assert not again.workspace.invalid
    assert again.workspace.route("out").settings["format"] == "model-message"


def test_an_unknown_format_is_refused_naming_the_route_and_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        _home_with_route("seeds")
    assert (info.value.obj, info.value.field) == ("route 'out'", "format")
    assert "model-message" in info.value.detail and "seed" not in info.value.detail.replace("'seeds'", "")


def test_the_demo_route_publishes_in_model_message_format() -> None:
    home = Home.open()
    setup_demo(home, webhook_port=free_port(), broker_port=free_port())
    assert home.workspace.route(ROUTE).settings["format"] == "model-message"


@given(doc=JSON, model=st.text(min_size=1, max_size=20))
def test_model_message_is_the_model_and_the_document_under_either_name(doc: object, model: str) -> None:
    envelope = {"model": model, "payload": doc, "key": "k", "op": "created"}
    wire = encode_payload(envelope, "model-message")
    assert json_codec.loads(wire) == {"model": model, "message": doc}
    assert encode_payload(envelope, "seed") == wire


def test_payload_format_normalises_the_old_name_and_refuses_unknown_ones() -> None:
    assert payload_format("seed") == "model-message"
    for name in PAYLOAD_FORMATS:
        assert payload_format(name) == name
    with pytest.raises(ValueError, match="envelope, model-message, payload"):
        payload_format("modelmessage")


def test_replay_takes_either_name_and_publishes_model_message() -> None:
    ws = Workspace()
    ws.put_broker(BrokerConfig("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1883"}))
    for given_as in ("seed", "model-message"):
        target = ReplayTarget.for_broker(ws, "mosq", topic="t/{key}", fmt=given_as)
        assert target.format == "model-message"
    # A route built without validation (as an older file held it) replays as model-message too.
    ws.routes["r"] = RouteConfig("r", "m", "mosq", {"topic": "t", "format": "seed", "qos": 1})
    assert ReplayTarget.for_route(ws, "r").format == "model-message"


def test_the_command_line_takes_format_seed_and_shows_model_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    args = parser.parse_args(["replay", "--broker", "b", "--topic", "t", "--format", "seed"])
    assert args.payload_format == "model-message"
    args = parser.parse_args(["route", "add", "r", "--model", "m", "--broker", "b", "--format", "seed"])
    assert args.set_format == "seed"  # validated (and renamed) by the route schema, as above
    for command in (["route", "add", "--help"], ["replay", "--help"]):
        with pytest.raises(SystemExit):
            parser.parse_args(command)
        shown = " ".join(capsys.readouterr().out.split())
        assert "model-message" in shown and "seed" not in shown, command
