"""Drive the real ``eventdesk`` command in child processes, as a user or a service manager would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.servers import CouchServer, MqttBroker


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def eventdesk(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventdesk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        cwd=cwd,
    )


def ok(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    result = eventdesk(*args, stdin=stdin, env=env, cwd=cwd)
    assert result.returncode == 0, f"eventdesk {' '.join(args)} failed ({result.returncode}): {result.stderr}"
    return result.stdout


@dataclass
class RunProcess:
    """``eventdesk run`` in the background, with its output lines collected."""

    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    run_args: tuple[str, ...] = ()  # after ``run``
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventdesk", *self.args, "run", *self.run_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(self.env),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, needle: str, timeout: float = 30.0, start: int = 0) -> int:
        """Index of the first output line (from ``start``) containing ``needle``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if needle in self.lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line with {needle!r} in output:\n" + "\n".join(self.lines[-40:])
                    )
                self._cond.wait(min(left, 0.2))

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()


def bulk_insert(couch: CouchServer, db: str, docs: Iterable[dict[str, object]], chunk: int = 1000) -> None:
    batch: list[dict[str, object]] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= chunk:
            couch.request("POST", f"/{db}/_bulk_docs", json.dumps({"docs": batch}).encode())
            batch = []
    if batch:
        couch.request("POST", f"/{db}/_bulk_docs", json.dumps({"docs": batch}).encode())


def put_doc(couch: CouchServer, db: str, doc_id: str, body: dict[str, object]) -> str:
    reply = json.loads(couch.request("PUT", f"/{db}/{doc_id}", json.dumps(body).encode()))
    return str(reply["rev"])


def home_args(home: Path) -> tuple[str, ...]:
    return ("--home", str(home))


def setup_pipeline(
    home: Path,
    source_url: str,
    db: str,
    broker: MqttBroker,
    *,
    topic: str,
    fmt: str = "envelope",
    qos: int = 1,
    since: str = "now",
    model: str = "accounts",
) -> None:
    """Add, through the CLI, the couchdb datasource ``couch`` at ``source_url``, a model on
    ``db``, the mqtt broker ``mosq`` and the route ``out`` between them."""
    h = home_args(home)
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", source_url)
    ok(*h, "model", "add", model, "--datasource", "couch", "--database", db, "--since", since)
    ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", broker.url)
    route = ("--model", model, "--broker", "mosq", "--topic", topic, "--format", fmt, "--qos", str(qos))
    ok(*h, "route", "add", "out", *route)
