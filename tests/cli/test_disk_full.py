"""A full disk stops `eventdesk run` with "disk full at PATH" (no traceback); a later run resumes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.harness import RunProcess, bulk_insert, home_args, ok, setup_pipeline
from tests.cli.test_run import covers, wait_running
from tests.peers.servers import CouchServer, MqttBroker
from tests.small_filesystem import fill, small_filesystem

TOTAL = 3000


def test_a_full_disk_stops_run_cleanly_and_the_next_run_resumes_without_loss(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber,  # type: ignore[no-untyped-def]
    unique_topic: str,
) -> None:
    db = couch.create_database()
    with small_filesystem(tmp_path / "fs", "16m") as fs:
        home = fs / "home"
        h = home_args(home)
        setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}", fmt="payload")
        sub = subscriber(unique_topic + "/#")
        run = RunProcess(h)
        try:
            wait_running(run)
            filler = fill(fs, leave=512 * 1024)
            body = "x" * 1000  # TOTAL documents of 1 KB do not fit in 512 KB
            bulk_insert(couch, db, ({"_id": f"d-{i:05d}", "body": body} for i in range(TOTAL)), chunk=500)
            rc = run.proc.wait(60)
        finally:
            run.stop()
        output = run.output()
        assert rc == 8, output
        assert f"disk full at {home / 'capture.sqlite3'}" in output
        assert "Traceback" not in output and "cannot rollback" not in output, output
        stopped = json.loads(ok(*h, "status", "--json"))
        for obj in (stopped["models"]["accounts"], stopped["routes"]["out"]):
            assert obj["state"] == "stopped", stopped  # recorded so, or its runner is known gone
        filler.unlink()
        again = RunProcess(h)
        try:
            wait_running(again)
            sub.wait_until(covers({f"d-{i:05d}" for i in range(TOTAL)}), 90)
        finally:
            assert again.stop() == 0, again.output()
        status = json.loads(ok(*h, "status", "--json"))
        assert status["models"]["accounts"]["events"] == TOTAL
        assert status["routes"]["out"]["backlog"] == 0
