"""``eventdesk run --log-format json``: one JSON object per line, for a log shipper; and the
options that make ``run`` a service (:func:`add_service_options`, :class:`ServiceOptions`).

Every log record becomes ``{"time", "level", "logger", "message"}`` (plus ``exception`` with its
traceback), with ``model``, ``route``, ``broker`` or ``datasource`` when the record names one:
given as ``extra={"model": ...}``, or else the first ``model 'NAME'`` (the labels EventDesk's
messages use) in its text. The state lines ``run`` prints become such objects too, with
``state``, ``detail`` and ``retry_in``. EventDesk's messages never hold secrets; as a second
line of defence a password in a URL (``scheme://user:password@``) is masked.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import ConfigError

OBJECT_FIELDS = ("model", "route", "broker", "datasource")
_LABEL = re.compile(r"\b(model|route|broker|datasource) '([^']*)'")
_URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]+:)[^@\s/]+@")


def _mask(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLineFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        message = _mask(record.getMessage())
        line: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for name in OBJECT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                line[name] = value
        if not any(name in line for name in OBJECT_FIELDS):
            found = _LABEL.search(message)
            if found is not None:
                line[found.group(1)] = found.group(2)
        if record.exc_info:
            line["exception"] = _mask(self.formatException(record.exc_info))
        return json_codec.dumps(line).decode()


def use_json_logs() -> None:
    """Write every log record to stderr as a JSON line (the level stays as configured)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def say_json(text: str, level: int = logging.INFO) -> None:
    """A line ``run`` says (not a log record: always shown) as a JSON line on stdout."""
    record = logging.LogRecord("eventdesk.run", level, __file__, 0, text, None, None)
    print(JsonLineFormatter().format(record), flush=True)


_LEVELS = {State.RETRYING: logging.WARNING, State.ERROR: logging.ERROR}


def state_printer(describe: Callable[[str, StateChange], str]) -> Callable[[str, StateChange], None]:
    """What ``run`` prints for each state change (``describe`` words it), as a JSON line on stdout."""
    formatter = JsonLineFormatter()

    def write(key: str, change: StateChange) -> None:
        kind, _, name = key.partition("/")
        record = logging.LogRecord(
            "eventdesk.run",
            _LEVELS.get(change.state, logging.INFO),
            __file__,
            0,
            describe(key, change),
            None,
            None,
        )
        line = json_codec.loads(formatter.format(record))
        for guessed in OBJECT_FIELDS:  # the key says which object: never a name guessed from the text
            line.pop(guessed, None)
        line[kind] = name
        line["state"] = change.state.value
        if change.detail:
            line["detail"] = _mask(change.detail)
        if change.retry_in is not None:
            line["retry_in"] = round(change.retry_in, 3)
        print(json_codec.dumps(line).decode(), flush=True)

    return write


@dataclass(frozen=True)
class ServiceOptions:
    """``run``'s options for running as a service (see :func:`add_service_options`)."""

    metrics_port: str | None = None
    log_format: str = "text"
    keep_going: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceOptions:
        return cls(args.metrics_port, args.log_format, args.keep_going)

    @property
    def json(self) -> bool:
        return self.log_format == "json"

    def say(self, text: str) -> None:
        """A line ``run`` always shows (stdout)."""
        say_json(text) if self.json else print(text, flush=True)

    def warn(self, text: str) -> None:
        if self.json:
            say_json(text, logging.WARNING)
        else:
            print(f"eventdesk: warning: {text}", file=sys.stderr, flush=True)

    def state_listener(
        self, describe: Callable[[str, StateChange], str]
    ) -> Callable[[str, StateChange], None]:
        if self.json:
            return state_printer(describe)
        return lambda key, change: print(describe(key, change), flush=True)


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (IPv6 as ``[::1]:PORT``), or a ConfigError naming the option."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536 or (sep and not host):
        raise ConfigError(f"expected PORT or HOST:PORT, not {value!r}", obj="run", field="metrics-port")
    return host, number


def _listen_option(value: str) -> str:
    try:
        parse_listen(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None
    return value


def add_service_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        type=_listen_option,
        help="serve Prometheus metrics at /metrics and a health check at /healthz (503 when a model "
        "stopped) on this port, on 127.0.0.1 unless HOST is given (docs/operations.md)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: log records and state lines as one JSON object per line, for a log shipper",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="when a model, route or broker stops on an error, keep the others running (the health "
        "check then answers 503) instead of stopping everything; the exit status still says it",
    )
