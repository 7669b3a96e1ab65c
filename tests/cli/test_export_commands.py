"""`eventdesk export / import / recordings / replay` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import pty
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.home import Home
from tests.cli.harness import cli_env, eventdesk, home_args, ok
from tests.core.test_export import make
from tests.peers.servers import MqttBroker, Subscriber
from tests.small_filesystem import small_filesystem as mounted_small_filesystem


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    h = Home.open(str(path))
    h.capture.import_events([make(i, ("accounts", "orders")[i % 2]) for i in range(20)])
    h.close()
    return path


def captured(home: Path) -> list[dict[str, object]]:
    cap = Capture(home / "capture.sqlite3", readonly=True)
    try:
        return [orjson.loads(raw) for _pos, raw in cap.iter_raw()]
    finally:
        cap.close()


def test_export_import_and_export_the_recording_again(home: Path, tmp_path: Path) -> None:
    h = home_args(home)
    out = tmp_path / "all.jsonl"
    text = ok(*h, "export", "--out", str(out))
    assert f"exported 20 events (every event) to {out} as jsonl" in text
    text = ok(*h, "import", str(out), "--name", "monday")
    assert "imported 20 events as recording 'monday'" in text
    assert "monday  20 events" in ok(*h, "recordings")
    again = tmp_path / "again.json"
    ok(*h, "export", "--recording", "monday", "--out", str(again))
    assert json.loads(again.read_text()) == captured(home)
    listing = json.loads(ok(*h, "recordings", "--json"))
    assert [r["name"] for r in listing] == ["monday"]
    assert "removed recording 'monday'" in ok(*h, "recordings", "remove", "monday")


def test_export_scope_flags_and_csv(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "orders.csv"
    text = ok(
        *home_args(home),
        "export",
        "--out",
        str(out),
        "--model",
        "orders",
        "--op",
        "created",
        "--since",
        "2026-11-29T10:00:05Z",
        "--until",
        "2026-11-29T10:00:15Z",
        "--filter",
        "payload.n != `9`",
        "--bom",
    )
    assert "exported 4 events" in text
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["key"] for r in rows] == ["k5", "k7", "k11", "k13"]
    expected = {e["key"]: e for e in captured(home)}
    for row in rows:
        assert row["payload.text"] == expected[row["key"]]["payload"]["text"]  # type: ignore[index]


def test_export_guard_formulas_flag(home: Path, tmp_path: Path) -> None:
    h = Home.open(str(home))
    h.capture.import_events([make(100, formula="=1+2")])
    h.close()
    for flags, expected in (((), "=1+2"), (("--guard-formulas",), "'=1+2")):
        out = tmp_path / f"out{len(flags)}.csv"
        ok(*home_args(home), "export", "--out", str(out), "--model", "accounts", *flags)
        with out.open(encoding="utf-8", newline="") as fh:
            rows = {r["key"]: r for r in csv.DictReader(fh)}
        assert rows["k100"]["payload.formula"] == expected
    assert "--guard-formulas" in ok("export", "--help")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--out", "{tmp}/x.txt"), "format"),
        (("--out", "{tmp}/x.jsonl", "--since", "last tuesday"), "since"),
        (("--out", "{tmp}/x.jsonl", "--until", "2026-13-01"), "until"),
        (("--out", "{tmp}/x.jsonl", "--filter", "payload.["), "filter"),
        (("--out", "{tmp}/x.jsonl", "--filter", "foo(bar)"), "filter"),
        (("--out", "{tmp}/x.jsonl", "--filter", "length(key, op)"), "filter"),
        (("--out", "{tmp}/missing/x.jsonl"), "out"),
        (("--out", "{tmp}"), "out"),
        (("--out", "{tmp}/x.jsonl", "--recording", "nope"), "name"),
    ],
)
def test_bad_export_input_exits_2_naming_the_field(
    home: Path, tmp_path: Path, args: tuple[str, ...], field: str
) -> None:
    result = eventdesk(*home_args(home), "export", *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode in (2, 3), result.stderr
    assert f"field '{field}'" in result.stderr
    assert result.stderr.startswith("eventdesk: error: ")
    assert not [p for p in tmp_path.iterdir() if p.name != "home"]


def test_unknown_format_flag_exits_2(home: Path, tmp_path: Path) -> None:
    result = eventdesk(*home_args(home), "export", "--out", str(tmp_path / "x"), "--format", "xml")
    assert result.returncode == 2 and "--format" in result.stderr


def test_progress_line_only_on_a_terminal(home: Path, tmp_path: Path) -> None:
    quiet = eventdesk(*home_args(home), "export", "--out", str(tmp_path / "a.jsonl"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "eventdesk", *home_args(home), "export", "--out", str(tmp_path / "b.csv")],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    shown = b"".join(chunks).decode()
    assert "exported 20" in shown and "events/s" in shown and "left" in shown and "\r" in shown


def test_import_reports_bad_lines_with_numbers(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    src.write_text(
        json.dumps(make(1).to_dict())
        + "\nnot json\n"
        + json.dumps({"id": 1})
        + "\n"
        + json.dumps(make(2).to_dict())
        + "\n"
    )
    result = eventdesk(*home_args(home), "import", str(src))
    assert result.returncode == 0, result.stderr
    assert "imported 2 events as recording 'mixed'" in result.stdout
    assert f"{src}: line 2: not JSON" in result.stderr
    assert f"{src}: line 3: not an event envelope" in result.stderr
    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\n")
    result = eventdesk(*home_args(home), "import", str(junk))
    assert result.returncode == 2 and "field 'file'" in result.stderr and "line 1" in result.stderr


def test_replay_to_a_broker_at_a_rate(
    home: Path, mqtt_broker: MqttBroker, subscriber: Callable[..., Subscriber], unique_topic: str
) -> None:
    h = home_args(home)
    ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", mqtt_broker.url)
    sub = subscriber(f"{unique_topic}/#")
    text = ok(
        *h,
        "replay",
        "--broker",
        "mosq",
        "--topic",
        unique_topic + "/{model}/{key}",
        "--model",
        "orders",
        "--pace",
        "50",
    )
    assert "replayed 10 events (models orders) to broker 'mosq'" in text
    messages = sub.wait_for(10)
    assert [m.topic for m in messages] == [f"{unique_topic}/orders/k{i}" for i in range(1, 20, 2)]
    assert [orjson.loads(m.payload) for m in messages] == [
        e for e in captured(home) if e["model"] == "orders"
    ]


def test_replay_bad_input(home: Path, tmp_path: Path) -> None:
    h = home_args(home)
    ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", "mqtt://127.0.0.1:1")
    for args, field, code in (
        (("--broker", "mosq"), "topic", 2),
        (("--broker", "mosq", "--topic", "a/#"), "topic", 2),
        (("--broker", "mosq", "--topic", "a", "--pace", "soon"), "pace", 2),
        (("--route", "nope"), "", 3),
    ):
        result = eventdesk(*h, "replay", *args)
        assert result.returncode == code, result.stderr
        assert f"field '{field}'" in result.stderr or not field


def test_export_to_a_fifo_exits_2_and_leaves_it(home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    result = eventdesk(*home_args(home), "export", "--out", str(fifo))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"eventdesk: error: export: field 'out': {str(fifo)!r} is a FIFO; "
        "an export writes only to a regular file or a new path\n"
    )
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    with mounted_small_filesystem(tmp_path / "small", "1m") as mount:
        yield mount


def test_export_to_a_full_disk_exits_9_saying_so(home: Path, tmp_path: Path, small_filesystem: Path) -> None:
    h = Home.open(str(home))
    h.capture.import_events([make(100 + i, blob=os.urandom(600).hex()) for i in range(3000)])
    h.close()
    target = small_filesystem / "all.jsonl"
    result = eventdesk(*home_args(home), "export", "--out", str(target))
    assert result.returncode == 9, result.stderr
    assert result.stderr == f"eventdesk: error: export: field 'out': disk full writing {str(target)!r}\n"
    assert list(small_filesystem.iterdir()) == []
    assert "9  an output file could not be written (disk full" in ok("--help")


def test_events_json_shows_big_numbers_exactly(home: Path, tmp_path: Path) -> None:
    payload = b'{"big":123456789012345678901234567890,"fine":0.10000000000000000555}'
    h = Home.open(str(home))
    h.capture.import_events([make(500, exact=json_codec.loads(payload))])
    h.close()
    [line] = ok(*home_args(home), "events", "--json", "--limit", "1").splitlines()
    assert b'"exact":' + payload in line.encode()
