"""A fleet on a secured NATS: ``run --fleet NAME`` and ``fleet status --fleet NAME`` connect with
the connection settings of the workspace's nats broker or datasource NAME and this host's
secret (an environment variable, or the keyring: the suite's test backend), or its NKey seed or
credentials file, against real nats-servers that demand them; a wrong or missing secret, an
unknown name or a name of another kind fail with a named error and never echo the secret."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.peers.nats_jwt import (  # noqa: F401 - fixtures
    FileLogin,
    creds_user,
    file_login,
    nats_creds_server,
    nats_operator,
)
from tests.peers.nats_server import (  # noqa: F401 - fixtures
    NatsServer,
    make_nkey_user,
    nats_nkey_server,
    nkey_user,
    running_nats,
)
from tests.peers.servers import free_port

pytestmark = pytest.mark.timeout(180)

PASSWORD = "fl33t-right-pw"
WRONG = "fl33t-wrong-pw"


@pytest.fixture
def password_nats(tmp_path: Path) -> Any:
    """nats-server with JetStream that lets in user ``ed`` with PASSWORD only."""
    conf = f'authorization {{\n  user: ed\n  password: "{PASSWORD}"\n}}\n'
    yield from running_nats(tmp_path / "nats-pw", extra_conf=conf)


def workspace(home: Path) -> tuple[str, ...]:
    h = home_args(home)
    ok(*h, "datasource", "add", "hook", "--kind", "webhook", "--port", str(free_port()))
    ok(*h, "model", "add", "orders", "--datasource", "hook")
    return h


def status(h: tuple[str, ...], fleet: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = eventdesk(*h, "fleet", "status", "--fleet", fleet, "--json", env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def agent_takes_orders(
    h: tuple[str, ...], fleet: str, env: dict[str, str] | None = None, watch: str | None = None
) -> None:
    """``run --fleet NAME`` takes the lease; ``fleet status --fleet NAME`` reads it. ``watch``:
    the desk's watch model in the workspace, which the agent leaves alone."""
    agent = RunProcess(h, env=env, run_args=("--fleet", fleet, "--agent-id", "a1", "--lease-ttl", "3"))
    try:
        start = agent.wait_line("fleet: agent 'a1'", timeout=60)
        assert "nats://127.0.0.1:" in agent.lines[start] and " via " in agent.lines[start], agent.output()
        if watch is not None:  # a copy of the workspace made after the desk's "Watch live"
            agent.wait_line(f"fleet: leaving {watch!r} to the desk", timeout=10)
        deadline = time.monotonic() + 60
        while True:
            seen = status(h, fleet, env)
            if seen["models"]["orders"]["agent"] == "a1":
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
        assert "a1" in seen["agents"], seen  # its heartbeat
        assert watch is None or watch not in seen["models"], seen
    finally:
        assert agent.stop(20) == 0, agent.output()
    assert PASSWORD not in agent.output()


def test_fleet_through_a_broker_with_a_password_from_env_or_keyring(
    tmp_path: Path, password_nats: NatsServer
) -> None:
    h = workspace(tmp_path / "home")
    env = {"FLEET_PW": PASSWORD}
    ok(*h, "broker", "add", "js", "--kind", "nats", "--url", password_nats.url, "--username", "ed",
       "--secret-env", "FLEET_PW")  # fmt: skip
    # The same server as a datasource whose secret is in this host's keyring.
    ok(*h, "datasource", "add", "js-src", "--kind", "nats", "--url", password_nats.url, "--username", "ed",
       "--secret-stdin", stdin=PASSWORD)  # fmt: skip
    ok(*h, "datasource", "add", "fleet-js", "--kind", "nats", "--url", password_nats.url, "--username", "ed",
       "--secret-env", "FLEET_PW")  # fmt: skip
    ok(*h, "model", "add", "fleet-js", "--datasource", "fleet-js", "--core-subject", "ed.*.*")
    workspace_file = (tmp_path / "home" / "workspace.json").read_text()
    assert PASSWORD not in workspace_file

    agent_takes_orders(h, "js", env, watch="fleet-js")
    # Another reader reaches the same bucket through the datasource and the keyring: the lease
    # the agent released on its clean stop.
    seen = status(h, "datasource:js-src")
    assert seen["models"]["orders"]["agent"] is None and seen["models"]["orders"]["ttl"] == 3.0, seen

    # A wrong secret: named (the object and its field), non-zero, never echoed.
    for args in (("fleet", "status", "--fleet", "js"), ("run", "--fleet", "js", "--lease-ttl", "3")):
        result = eventdesk(*h, *args, env={"FLEET_PW": WRONG}, timeout=60)
        assert result.returncode == 6, result.stderr
        assert "fleet via broker 'js': field 'secret':" in result.stderr, result.stderr
        assert "authorization violation" in result.stderr, result.stderr
        assert WRONG not in result.stderr + result.stdout and PASSWORD not in result.stderr + result.stdout
    # The secret missing on this host.
    result = eventdesk(*h, "fleet", "status", "--fleet", "js", timeout=30)
    assert result.returncode == 4, result.stderr
    assert "fleet via broker 'js': field 'secret': environment variable FLEET_PW is not set" in result.stderr


def test_fleet_through_an_nkey_or_creds_broker(
    tmp_path: Path,
    file_login: FileLogin,  # noqa: F811
) -> None:
    h = workspace(tmp_path / "home")
    ((setting, path),) = file_login.setting.items()
    ok(*h, "broker", "add", "secured", "--kind", "nats", "--url", file_login.url, f"--{setting}", path)
    agent_takes_orders(h, "secured")
    # The fleet's name in the Fleet window and status is the broker's; its seed is never shown.
    result = eventdesk(*h, "fleet", "status", "--fleet", "secured", timeout=30)
    assert result.returncode == 0 and "orders: free" in result.stdout, result.stderr
    assert file_login.seed not in result.stdout + result.stderr


def test_names_that_are_no_nats_connection_are_refused(tmp_path: Path) -> None:
    h = workspace(tmp_path / "home")
    bad, gone = make_nkey_user(tmp_path, "bad").seed_file, make_nkey_user(tmp_path, "gone").seed_file
    for path, broker in ((bad, "bad-seed"), (gone, "gone")):
        ok(*h, "broker", "add", broker, "--kind", "nats", "--url", "nats://127.0.0.1:1", "--nkey", str(path))
    bad.write_text("not a seed\n")  # both valid when added; spoilt since
    gone.unlink()
    cases = (
        ("nowhere", 3, "fleet: field 'fleet': no broker or datasource named 'nowhere'"),
        ("hook", 2, "fleet: field 'fleet': datasource 'hook' is of kind 'webhook', not nats"),
        ("broker:hook", 3, "no broker named 'hook'"),
        ("gone", 2, "broker 'gone' is invalid (broker 'gone': field 'nkey': no such file"),
        (
            "bad-seed",
            2,
            "broker 'bad-seed' is invalid (broker 'bad-seed': field 'nkey': the NKey seed file holds no "
            "valid NKey seed",
        ),
    )
    for name, code, message in cases:
        for args in (("fleet", "status", "--fleet", name), ("run", "--fleet", name)):
            result = eventdesk(*h, *args, timeout=30)
            assert result.returncode == code, result.stderr
            assert message in result.stderr, result.stderr
