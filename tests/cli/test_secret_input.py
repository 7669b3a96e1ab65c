"""Secrets typed at the command line: asked for without echo at a terminal, read from a pipe."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from tests.cli.harness import cli_env, home_args, ok


def _run_in_terminal(args: list[str], answer: bytes, prompt: bytes) -> bytes:
    """Run ``eventdesk ARGS`` on a new pseudo-terminal (its controlling terminal, as in a shell),
    type ``answer`` once ``prompt`` appeared, and return everything the terminal showed."""
    env = cli_env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing but exec
        os.execve(sys.executable, [sys.executable, "-m", "eventdesk", *args], env)  # noqa: S606
    shown = b""
    answered = False
    deadline = time.monotonic() + 30
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([fd], [], [], left)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not answered and prompt in shown:
                os.write(fd, answer)
                answered = True
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert answered, f"no prompt {prompt!r}; the terminal showed {shown!r}"
    assert os.waitstatus_to_exitcode(status) == 0, shown.decode(errors="replace")
    return shown


def test_secret_stdin_at_a_terminal_prompts_and_does_not_echo(tmp_path: Path) -> None:
    home = tmp_path / "home"
    couch = "datasource add couch --kind couchdb --url http://127.0.0.1:5984 --auth basic --username admin"
    args = [*home_args(home), *couch.split(), "--secret-stdin"]
    shown = _run_in_terminal(args, b"typed-secret-42\n", b"Password / API key for datasource 'couch': ")
    assert b"typed-secret-42" not in shown
    assert b"added datasource 'couch'" in shown
    stored = json.loads(Path(os.environ["EVENTDESK_TEST_KEYRING_FILE"]).read_text())["eventdesk"]
    assert list(stored.values()) == ["typed-secret-42"]


def test_secret_stdin_from_a_pipe_reads_one_line_without_a_prompt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = ok(*home_args(home), "broker", "add", "b", "--kind", "mqtt", "--url", "mqtt://127.0.0.1:1883",
             "--username", "u", "--secret-stdin", stdin="piped-secret\nnext line\n")  # fmt: skip
    assert "Password" not in out and "added broker 'b'" in out
    stored = json.loads(Path(os.environ["EVENTDESK_TEST_KEYRING_FILE"]).read_text())["eventdesk"]
    assert list(stored.values()) == ["piped-secret"]
