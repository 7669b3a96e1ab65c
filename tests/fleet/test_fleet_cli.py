"""``eventdesk run --fleet`` and ``eventdesk fleet status`` refusing bad input with a message
that names the option, and saying what is missing."""

from __future__ import annotations

from pathlib import Path

from tests.cli.harness import eventdesk, home_args, ok
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture
from tests.peers.servers import free_port


def setup(home: Path) -> None:
    h = home_args(home)
    ok(*h, "datasource", "add", "hook", "--kind", "webhook", "--port", str(free_port()))
    ok(*h, "model", "add", "orders", "--datasource", "hook")


def test_bad_fleet_options_are_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    setup(home)
    for args, field in (
        (("--fleet", "http://127.0.0.1:4222"), "fleet"),
        (("--fleet", "nats://127.0.0.1:4222", "--lease-ttl", "0.5"), "lease-ttl"),
        (("--fleet", "nats://127.0.0.1:4222", "--fleet-replicas", "9"), "fleet-replicas"),
    ):
        result = eventdesk(*home_args(home), "run", *args, timeout=30)
        assert result.returncode == 2, result.stderr
        assert f"field '{field}'" in result.stderr and "fleet" in result.stderr, result.stderr


def test_no_nats_server_and_no_bucket_are_said_plainly(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    home = tmp_path / "home"
    setup(home)
    nobody = f"nats://127.0.0.1:{free_port()}"
    result = eventdesk(*home_args(home), "run", "--fleet", nobody, timeout=30)
    assert result.returncode == 6, result.stderr
    assert "cannot connect to " + nobody in result.stderr, result.stderr
    # A password in the URL is never echoed (nor a token: nats://TOKEN@host).
    port = free_port()
    for secret_url in (f"nats://agent:s3cr3t-pw@127.0.0.1:{port}", f"nats://t0k3n-xyz@127.0.0.1:{port}"):
        result = eventdesk(*home_args(home), "fleet", "status", "--fleet", secret_url, timeout=30)
        assert result.returncode == 6, result.stderr
        assert f"cannot connect to nats://127.0.0.1:{port}" in result.stderr, result.stderr
        assert "s3cr3t" not in result.stderr + result.stdout and "t0k3n" not in result.stderr + result.stdout
    result = eventdesk(*home_args(home), "fleet", "status", "--fleet", nats_server.url, timeout=30)
    assert result.returncode == 3, result.stderr
    assert "no fleet bucket 'eventdesk-" in result.stderr and "--fleet" in result.stderr, result.stderr
