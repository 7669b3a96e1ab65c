"""``eventdesk -vv run`` logs the HTTP exchange but never a credential: no password, no cookie."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.harness import RunProcess, home_args, ok
from tests.peers.servers import MqttBroker, start_couch, stop_process

PASSWORD = "Sess10n-Passw0rd-4c1e"


def test_session_auth_at_debug_level_logs_no_cookie_and_no_password(
    tmp_path: Path, mqtt_broker: MqttBroker
) -> None:
    server = start_couch(tmp_path / "secured")
    try:
        server.request("PUT", "/_config/admins/admin", json.dumps(PASSWORD).encode())
        server.request("PUT", "/accounts", auth=("admin", PASSWORD))
        home = tmp_path / "home"
        h = home_args(home)
        ok(
            *h,
            *("datasource", "add", "couch", "--kind", "couchdb", "--url", server.url),
            *("--auth", "session", "--username", "admin", "--secret-stdin"),
            stdin=PASSWORD + "\n",
        )
        ok(*h, "model", "add", "accounts", "--datasource", "couch")
        ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", mqtt_broker.url)
        ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "mosq")
        run = RunProcess(("-vv", *h))
        try:
            run.wait_line("model 'accounts': running", 30)
            server.request("PUT", "/accounts/doc-1", json.dumps({"n": 1}).encode(), auth=("admin", PASSWORD))
            run.wait_line("route 'out': running", 30)
            # the wire log is on: the session's cookie went out and came back, redacted
            run.wait_line("Set-Cookie: [redacted]", 30)
            run.wait_line("Cookie: [redacted]", 30)
        finally:
            assert run.stop() == 0, run.output()
        out = run.output()
        assert "POST /accounts/_changes" in out  # the requests themselves are logged
        assert PASSWORD not in out
        assert re.search(r"AuthSession=(?!\[redacted\])", out) is None, out
        assert not re.search(r"(?i)cookie: (?!\[redacted\])", out), out
    finally:
        stop_process(server.proc)
