"""The command line's own plumbing: which commands load the kinds' modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventdesk.cli.main import _command_of, main
from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.core.test_workspace_validation import _FILE, JSON
from tests.peers.nats_jwt import NatsOperator
from tests.peers.nats_server import make_nkey_user
from tests.peers.servers import free_port


def test_the_command_is_found_past_the_global_options() -> None:
    assert _command_of(["--home", "datasource", "-vv", "run"]) == "run"  # a home dir named like a command
    assert _command_of(["-v", "broker", "add", "b"]) == "broker"
    assert _command_of(["--version"]) is None
    assert _command_of([]) is None


def test_commands_without_settings_flags_do_not_load_every_kind(tmp_path: Path) -> None:
    code = (
        "import sys; from eventdesk.cli.main import main; "
        f"rc = main(['--home', {str(tmp_path)!r}, 'list']); "
        "print(rc, 'aiohttp' in sys.modules, 'amqtt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-3:] == ["0", "False", "False"], out


# -- bad input gets a clear error and the workspace stays usable (items 18, 21, 22) -----------


def _home(tmp_path: Path) -> tuple[str, ...]:
    return home_args(tmp_path / "home")


def _workspace_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / "workspace.json"


def test_a_selector_that_is_not_a_json_object_is_refused_and_every_command_still_works(
    tmp_path: Path,
) -> None:
    h = _home(tmp_path)
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", "http://127.0.0.1:5984")
    bad = eventdesk(*h, "model", "add", "accounts", "--datasource", "couch", "--selector", '"str"')
    assert bad.returncode == 2, bad.stderr
    assert "model 'accounts': field 'selector': expected a JSON object, got a string" in bad.stderr
    assert "couch" in ok(*h, "list")
    ok(*h, "model", "add", "accounts", "--datasource", "couch", "--selector", '{"region": "Bangalore"}')
    assert "removed model 'accounts'" in ok(*h, "remove", "model", "accounts")


def test_an_invalid_object_in_the_file_is_listed_marked_run_skips_it_and_remove_fixes_it(
    tmp_path: Path,
) -> None:
    h = _home(tmp_path)
    port = str(free_port())
    ok(*h, "datasource", "add", "hooks", "--kind", "webhook", "--port", port)
    ok(*h, "model", "add", "orders", "--datasource", "hooks")
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", "http://127.0.0.1:5984")
    ok(*h, "model", "add", "accounts", "--datasource", "couch")
    path = _workspace_file(tmp_path)
    data = json.loads(path.read_text())
    data["models"]["accounts"]["settings"]["selector"] = "str"  # what `--selector '"str"'` stored before
    path.write_text(json.dumps(data))

    listed = ok(*h, "list")
    assert "accounts INVALID: model 'accounts': field 'selector': invalid JSON" in listed
    assert "orders on hooks" in listed
    as_json = json.loads(ok(*h, "list", "--json"))
    assert as_json["models"]["accounts"] == data["models"]["accounts"]
    assert "field 'selector'" in as_json["invalid"]["model/accounts"]
    assert "accounts: invalid (model 'accounts': field 'selector'" in ok(*h, "status")

    run = RunProcess(h)
    try:
        run.wait_line("model 'orders': running")
        run.wait_line("warning: not started: model 'accounts': field 'selector'")
    finally:
        assert run.stop() == 0, run.output()

    named = eventdesk(*h, "run", "--model", "accounts")
    assert named.returncode == 2 and "model 'accounts': field 'selector'" in named.stderr
    assert "removed model 'accounts'" in ok(*h, "remove", "model", "accounts")
    assert "INVALID" not in ok(*h, "list")


def test_list_names_the_object_and_field_whose_credentials_file_is_gone(tmp_path: Path) -> None:
    """Any kind's file setting (NKey seed, creds file, CA file, client certificate): valid when
    added, deleted since, so ``list`` marks it as ``test`` refuses it (the object, the field)."""
    h = _home(tmp_path)
    files = {name: tmp_path / name for name in ("seed.nk", "user.creds", "ca.pem", "client.pem", "key.pem")}
    for name in ("ca.pem", "client.pem", "key.pem"):
        files[name].write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    make_nkey_user(tmp_path, "seed")
    NatsOperator.create().user_creds(files["user.creds"])
    nats = ("--kind", "nats", "--url", "nats://127.0.0.1:1")
    ok(*h, "broker", "add", "by-seed", *nats, "--stream", "S", "--nkey", str(files["seed.nk"]))
    ok(*h, "broker", "add", "by-creds", *nats, "--stream", "S", "--creds", str(files["user.creds"]))
    ok(*h, "datasource", "add", "src-seed", *nats, "--nkey", str(files["seed.nk"]))
    ok(*h, "broker", "add", "mq", "--kind", "mqtt", "--url", "mqtts://127.0.0.1:1",
       "--ca-file", str(files["ca.pem"]), "--client-cert", str(files["client.pem"]),
       "--client-key", str(files["key.pem"]))  # fmt: skip
    assert "INVALID" not in ok(*h, "list")
    files["seed.nk"].unlink()
    files["user.creds"].unlink()
    files["client.pem"].unlink()

    listed = ok(*h, "list").splitlines()
    expected = {
        "by-seed": ("broker 'by-seed'", "nkey", "seed.nk"),
        "by-creds": ("broker 'by-creds'", "creds", "user.creds"),
        "src-seed": ("datasource 'src-seed'", "nkey", "seed.nk"),
        "mq": ("broker 'mq'", "client_cert", "client.pem"),
    }
    as_json = json.loads(ok(*h, "list", "--json"))["invalid"]
    for name, (obj, field, file) in expected.items():
        message = f"{obj}: field '{field}': no such file: {str(files[file])!r}"
        assert f"  {name} INVALID: {message}" in listed, listed
        assert as_json[obj.split()[0] + "/" + name] == message
        tested = eventdesk(*h, "test", obj.split()[0], name)
        assert tested.returncode == 2 and message in tested.stderr, tested.stderr


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--nkey", "not a seed\n", "field 'nkey': the NKey seed file holds no valid NKey seed"),
        ("--nkey", "SUAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n", "field 'nkey': the NKey seed"),
        ("--creds", "", "field 'creds': the credentials file holds no user JWT"),
        ("--creds", "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n",
         "field 'creds': the credentials file holds no valid NKey seed"),
    ],
)  # fmt: skip
def test_a_login_file_that_holds_no_login_is_refused_when_added(
    tmp_path: Path, flag: str, content: str, message: str
) -> None:
    """A wrong NKey seed or credentials file is named when it is added (as ``test`` and ``run``
    would name it later), and its content is never shown."""
    h = _home(tmp_path)
    login = tmp_path / "login"
    login.write_text(content)
    added = eventdesk(*h, "broker", "add", "js", "--kind", "nats", "--url", "nats://127.0.0.1:1",
                      "--stream", "S", flag, str(login))  # fmt: skip
    assert added.returncode == 2 and f"broker 'js': {message}" in added.stderr, added.stderr
    assert "SUAX" not in added.stderr + added.stdout
    assert "(none)" in ok(*h, "list", "brokers")


def test_a_relative_file_path_is_stored_absolute(tmp_path: Path) -> None:
    """``--ca-file ca.pem`` typed in the certificates' directory means that file wherever the
    workspace is used later (a service, the app started from the desktop)."""
    h = _home(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    make_nkey_user(certs, "seed")
    ok(
        *h,
        "broker",
        "add",
        "mq",
        "--kind",
        "mqtt",
        "--url",
        "mqtts://127.0.0.1:1",
        "--ca-file",
        "ca.pem",
        cwd=certs,
    )
    ok(*h, "broker", "add", "js", "--kind", "nats", "--url", "nats://127.0.0.1:1", "--stream", "S",
       "--nkey", "./seed.nk", cwd=certs)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = json.loads(ok(*h, "list", "--json", cwd=elsewhere))
    assert "invalid" not in listed, listed
    assert listed["brokers"]["mq"]["settings"]["ca_file"] == str(certs / "ca.pem")
    assert listed["brokers"]["js"]["settings"]["nkey"] == str(certs / "seed.nk")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"schema_version": 1, "datasources": {"\xff\xfe": {}}}', "not UTF-8 text"),
        (b'{"schema_version": 1, "datasources": "x"}', "field 'datasources': expected a JSON object"),
        (b'{"schema_version": 1, "models": [1]}', "field 'models': expected a JSON object"),
        (b"[]", "expected a JSON object, got an array"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    ],
)
def test_a_malformed_workspace_file_is_a_clear_error_with_exit_2(
    tmp_path: Path, content: bytes, message: str
) -> None:
    h = _home(tmp_path)
    ok(*h, "list")
    path = _workspace_file(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    result = eventdesk(*h, "list")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"eventdesk: error: workspace file {str(path)!r}" in result.stderr
    assert message in result.stderr


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_FILE | JSON, garbage=st.binary(max_size=3))
def test_any_workspace_file_lists_or_exits_2_in_process(
    tmp_path_factory: pytest.TempPathFactory, data: object, garbage: bytes
) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / "workspace.json").write_bytes(json.dumps(data).encode() + garbage)
    assert main(["--home", str(home), "list"]) in (0, 2)
    assert main(["--home", str(home), "status"]) in (0, 2)


def test_removing_a_datasource_with_models_needs_cascade(tmp_path: Path) -> None:
    h = _home(tmp_path)
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", "http://127.0.0.1:5984")
    ok(*h, "model", "add", "accounts", "--datasource", "couch")
    ok(*h, "broker", "add", "local", "--kind", "mqtt", "--url", "mqtt://127.0.0.1:1883")
    ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "local", "--topic", "t")
    refused = eventdesk(*h, "remove", "datasource", "couch")
    assert refused.returncode == 2, refused.stderr
    assert "datasource 'couch': not removed: removing it also removes route 'out'" in refused.stderr
    assert "model 'accounts'" in refused.stderr and "--cascade" in refused.stderr
    assert "accounts on couch" in ok(*h, "list")

    done = ok(*h, "remove", "datasource", "couch", "--cascade")
    assert done.splitlines() == [
        "removed route 'out' and its delivery position",
        "removed model 'accounts'",
        "removed datasource 'couch'",
    ]
    assert "removed broker 'local'" in ok(*h, "remove", "broker", "local")  # nothing depends on it


def test_leftovers_of_a_kind_that_keeps_nothing_ask_no_secret_and_no_server(tmp_path: Path) -> None:
    """A cloudant datasource keeps nothing on its server: its leftovers are none, said without
    reading its secret (here missing) or reaching its server (here nowhere)."""
    h = _home(tmp_path)
    ok(*h, "datasource", "add", "couch", "--kind", "cloudant", "--url", f"http://127.0.0.1:{free_port()}",
       "--auth", "basic", "--username", "u", "--secret-env", "EVENTDESK_TEST_NO_SUCH_VAR")  # fmt: skip
    out = ok(*h, "datasource", "leftovers", "couch")
    assert "EventDesk left nothing on its server" in out
