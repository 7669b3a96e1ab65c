"""The ``eventdesk`` command: no sub-command opens the desktop app; sub-commands are headless.

Flags for kind settings are derived from the kinds' settings schemas.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from eventdesk import __version__
from eventdesk.cli import leftover_commands
from eventdesk.core import json_codec
from eventdesk.core.capture import capture_failure
from eventdesk.core.connection_test import TESTABLE, check_connection
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import ConfigError, EventDeskError, NotFoundError
from eventdesk.core.home import Home
from eventdesk.core.registry import broker_class, broker_kinds, connector_class, connector_kinds
from eventdesk.core.runtime_status import Status, build_status
from eventdesk.core.secrets import SecretRef, resolve_secret, secret_problem
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.workspace import OBJECT_TYPES, ROUTE_SCHEMA

if TYPE_CHECKING:
    pass

EXIT_CODES = """\
exit codes:
  0  success
  1  unexpected error
  2  invalid input: a setting, name, flag or workspace file (the message names object and field),
     or a capture that is missing, belongs to another workspace or is damaged (see --fresh-capture)
  3  a named datasource, model, broker or route does not exist
  4  secret store problem (no usable keyring backend, missing environment variable)
  5  a connector stopped on a terminal error (wrong URL, credentials, unknown database),
     or `test datasource|model` failed
  6  a broker refused us (credentials, TLS) or a route failed, or `test broker` failed
  7  the home is in use: another `eventdesk run`, the app or an edit holds it (the message names its PID)
  8  disk full (the message names the file); committed events are kept, a later run resumes
  9  an output file could not be written (disk full, I/O error): nothing half-written is left
 130 interrupted
"""

PLURALS = {"datasources": "datasource", "models": "model", "brokers": "broker", "routes": "route"}


def _flag(f: Field) -> str:
    return "--" + f.name.replace("_", "-")


def _add_schema_flags(
    parser: argparse.ArgumentParser, schemas: Sequence[Schema], skip: Sequence[str] = ()
) -> None:
    seen: set[str] = set()
    for schema in schemas:
        for f in schema.fields:
            if f.secret or f.name in seen or f.name in skip:
                continue
            seen.add(f.name)
            help_text = f.help + (f" (default: {f.default})" if f.default not in (None, "") else "")
            help_text = help_text.replace("%", "%%")  # argparse %-formats help texts
            if f.type == "bool":
                parser.add_argument(
                    _flag(f),
                    dest=f"set_{f.name}",
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=help_text,
                )
            else:
                parser.add_argument(
                    _flag(f), dest=f"set_{f.name}", default=None, metavar=f.name.upper(), help=help_text
                )


def _settings_from(args: argparse.Namespace, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in schema.fields:
        value = getattr(args, f"set_{f.name}", None)
        if value is not None and not f.secret:
            out[f.name] = f.entered(value)
    return out


def _add_secret_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the password / API key from standard input and store it in the OS keyring",
    )
    group.add_argument(
        "--secret-env",
        metavar="VAR",
        help="take the secret from environment variable VAR at run time (headless hosts)",
    )


# Commands whose flags come from the kinds' settings schemas (loading every kind's module --
# aiohttp, amqtt, the Cloudant SDK -- takes ~0.3 s, which `run` and the app need not pay).
_SCHEMA_COMMANDS = frozenset({"datasource", "model", "broker"})


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (skipping the global options), or None."""
    args = iter(argv)
    for arg in args:
        if arg == "--home":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(with_kinds: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``with_kinds=False`` leaves out the kinds' settings flags (for
    commands that do not take them)."""
    parser = argparse.ArgumentParser(
        prog="eventdesk",
        description="Watch and republish the change events of other systems. "
        "With no command, opens the desktop app.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eventdesk {__version__}")
    parser.add_argument(
        "--home", metavar="DIR", help="keep the workspace and capture in DIR (or set EVENTDESK_HOME)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ckinds = connector_kinds() if with_kinds else []
    cschemas = [connector_class(k).datasource_schema for k in ckinds]
    mschemas = [connector_class(k).model_schema for k in ckinds]
    bschemas = [broker_class(k).schema for k in broker_kinds()] if with_kinds else []

    p = sub.add_parser("datasource", help="add a datasource, or see what it left on its server")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="add (or with --replace, change) a datasource")
    a.add_argument("name")
    a.add_argument("--kind", required=True, choices=connector_kinds())
    a.add_argument("--replace", action="store_true", help="change an existing datasource")
    _add_schema_flags(a, cschemas)
    _add_secret_flags(a)
    a.set_defaults(handler=_cmd_add)
    leftover_commands.register_action(psub)

    p = sub.add_parser("model", help="add a model")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="add a model: a stream within a datasource")
    a.add_argument("name")
    a.add_argument("--datasource", required=True)
    a.add_argument("--replace", action="store_true")
    _add_schema_flags(a, mschemas)
    a.set_defaults(handler=_cmd_add)

    p = sub.add_parser("broker", help="add a broker")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="add a broker connection")
    a.add_argument("name")
    a.add_argument("--kind", required=True, choices=broker_kinds())
    a.add_argument("--replace", action="store_true")
    _add_schema_flags(a, bschemas)
    _add_secret_flags(a)
    a.set_defaults(handler=_cmd_add)

    p = sub.add_parser("route", help="add, enable or disable a route")
    psub = p.add_subparsers(dest="action", required=True)
    a = psub.add_parser("add", help="republish a model's events to a broker")
    a.add_argument("name")
    a.add_argument("--model", required=True)
    a.add_argument("--broker", required=True)
    a.add_argument("--replace", action="store_true")
    _add_schema_flags(a, [ROUTE_SCHEMA], skip=("enabled", "retain"))
    a.add_argument(
        "--retain",
        dest="set_retain",
        action="store_true",
        default=None,
        help="ask the broker to retain the last message per topic",
    )
    a.add_argument("--disabled", action="store_true", help="add the route switched off")
    a.set_defaults(handler=_cmd_add)
    for action in ("enable", "disable"):
        e = psub.add_parser(action, help=f"{action} a route")
        e.add_argument("name")
        e.set_defaults(handler=_cmd_route_switch)

    p = sub.add_parser("list", help="list configured objects")
    p.add_argument("what", nargs="?", choices=list(PLURALS), help="only this kind of object")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("remove", help="remove an object (with --cascade, and what depends on it)")
    p.add_argument("type", choices=OBJECT_TYPES)
    p.add_argument("name")
    p.add_argument(
        "--cascade",
        action="store_true",
        help="also remove the models and routes that depend on it, with their checkpoints and positions "
        "(without it, an object with dependants is not removed; they are listed)",
    )
    p.add_argument(
        "--drop-slot",
        "--drop-server-objects",
        action="store_true",
        help="also drop what each removed model holds on its source server (a PostgreSQL replication slot and "
        "publication, whose slot keeps WAL on the server's disk; a NATS JetStream consumer); without it, they are named and kept",
    )
    p.set_defaults(handler=_cmd_remove)

    p = sub.add_parser("test", help="test the connection of a saved datasource, model or broker")
    p.add_argument("type", choices=TESTABLE)
    p.add_argument("name")
    p.set_defaults(handler=_cmd_test)

    p = sub.add_parser("status", help="state and checkpoint per model, backlog per route")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_status)

    for module in _command_modules():
        module.register(sub)

    p = sub.add_parser("events", help="read captured events")
    p.add_argument("--model")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="one envelope per line (JSON Lines)")
    p.set_defaults(handler=_cmd_events)
    return parser


def _where(settings: dict[str, Any]) -> str:
    """Where a datasource or broker is: its URL, or for a local listener its host:port."""
    if settings.get("url"):
        return str(settings["url"])
    return f"{settings.get('host', '')}:{settings.get('port', '')}" if settings.get("port") else ""


def _read_secret(args: argparse.Namespace, schema: Schema) -> str | None:
    """The secret for ``--secret-stdin``: at a terminal asked for without echo, else one line."""
    if not getattr(args, "secret_stdin", False):
        return None
    if sys.stdin.isatty():
        label = next((f.title for f in schema.fields if f.secret), "Secret")
        return getpass.getpass(f"{label} for {args.command} {args.name!r}: ")
    data = sys.stdin.readline()
    return data.rstrip("\r\n")


def _cmd_add(home: Home, args: argparse.Namespace) -> int:
    if args.command in ("datasource", "broker"):
        is_ds = args.command == "datasource"
        schema = connector_class(args.kind).datasource_schema if is_ds else broker_class(args.kind).schema
        add = home.add_datasource if is_ds else home.add_broker
        cfg = add(
            args.name,
            args.kind,
            _settings_from(args, schema),
            secret=_read_secret(args, schema),
            secret_env=args.secret_env,
            replace=args.replace,
        )
        print(
            f"added {cfg.label} ({cfg.kind}, {_where(cfg.settings)})"
            + (f", secret in {cfg.secret.describe()}" if cfg.secret else "")
        )
    elif args.command == "model":
        ds = home.workspace.datasources.get(args.datasource)
        if ds is None:
            raise NotFoundError(
                f"datasource {args.datasource!r} does not exist",
                obj=f"model {args.name!r}",
                field="datasource",
            )
        schema = connector_class(ds.kind).model_schema
        settings = _settings_from(args, schema)
        if "database" in schema.names:
            settings.setdefault("database", args.name)
        cfg_m = home.add_model(args.name, args.datasource, settings, replace=args.replace)
        print(f"added {cfg_m.label} on datasource {cfg_m.datasource!r}")
    else:
        settings = _settings_from(args, ROUTE_SCHEMA)
        settings["enabled"] = not args.disabled
        cfg_r = home.add_route(args.name, args.model, args.broker, settings, replace=args.replace)
        typed = cfg_r.typed
        print(
            f"added {cfg_r.label}: model {cfg_r.model!r} -> broker {cfg_r.broker!r} "
            f"topic {typed.topic!r} ({typed.format}, QoS {typed.qos})"
            + ("" if cfg_r.enabled else ", disabled")
        )
    return 0


def _cmd_route_switch(home: Home, args: argparse.Namespace) -> int:
    route = home.set_route_enabled(args.name, args.action == "enable")
    print(f"{route.label} {'enabled' if route.enabled else 'disabled'}")
    return 0


def _cmd_remove(home: Home, args: argparse.Namespace) -> int:
    plan = home.removal(args.type, args.name)
    if plan.dependants and not args.cascade:
        raise ConfigError(
            "not removed: removing it also removes "
            + "; ".join(line for line in plan.describe() if line != plan.label)
            + ". Add --cascade to remove all of that",
            obj=plan.label,
        )
    if args.drop_slot:
        for model, _what in plan.held:  # dropped first: a failure removes nothing
            cfg = home.workspace.model(model)
            ds = home.workspace.datasource(cfg.datasource)
            secret = resolve_secret(ds.secret, ds.label)
            summary = asyncio.run(connector_class(ds.kind).release_model(ds, secret, cfg))
            print(f"model {model!r}: {summary}")
    sources = {model: home.workspace.model(model).datasource for model, _what in plan.held}
    home.remove(args.type, args.name, cascade=args.cascade)
    for line in plan.describe():
        print(f"removed {line}")
    if not args.drop_slot:
        for model, what in plan.held:
            how = (
                "a datasource of the same database lists it: `eventdesk datasource leftovers`"
                if args.type == "datasource"  # its datasource is gone with it
                else f"`eventdesk datasource leftovers {sources[model]}` lists it, --drop drops it"
            )
            print(f"kept on the server for model {model!r}: {what} (until dropped: {how})")
    return 0


def _secret_note(ref: SecretRef | None, label: str) -> str:
    """ " (secret set)" only when the secret can be had now (keyring entry, environment variable)."""
    if ref is None:
        return ""
    problem = secret_problem(ref, label)
    return " (secret set)" if problem is None else f" (secret missing: {problem})"


def _cmd_list(home: Home, args: argparse.Namespace) -> int:
    ws = home.workspace
    data = ws.to_json()
    keys = [args.what] if args.what else list(PLURALS)
    if args.json:
        out: dict[str, Any] = {k: data[k] for k in keys}
        invalid = {o.key: o.error.describe() for o in ws.invalid.values() if _plural(o.object_type) in keys}
        if invalid:
            out["invalid"] = invalid
        print(json.dumps(out, indent=2))
        return 0
    for k in keys:
        print(f"{k}:")
        for name, entry in data[k].items():
            bad = ws.invalid.get(f"{PLURALS[k]}/{name}")
            if bad is not None:
                print(f"  {name} INVALID: {bad.error.describe()}")
                continue
            settings = entry.get("settings", {})
            extra = ""
            if k in ("datasources", "brokers"):
                ws = home.workspace
                cfg = ws.datasources[name] if k == "datasources" else ws.brokers[name]
                extra = f" [{entry['kind']}] {_where(settings)}" + _secret_note(cfg.secret, cfg.label)
            elif k == "models":
                extra = f" on {entry['datasource']}" + (
                    f" database {settings['database']}" if "database" in settings else ""
                )
            else:
                extra = (
                    f" {entry['model']} -> {entry['broker']} {settings['topic']!r} {settings['format']}"
                    f" qos={settings['qos']}" + ("" if settings.get("enabled", True) else " (disabled)")
                )
            print(f"  {name}{extra}")
        if not data[k]:
            print("  (none)")
    return 0


def _plural(object_type: str) -> str:
    return next(k for k, v in PLURALS.items() if v == object_type)


def _status(home: Home) -> Status:
    """The status snapshot of a home from the states its runner records (another process)."""
    states = {key: StateChange(State(state), detail) for key, (state, detail) in home.live_states().items()}
    return build_status(home.workspace, home.capture, states, {})


def _dumps(value: Any) -> str:
    """JSON that keeps numbers exact (a checkpoint may hold a Decimal, which stdlib json refuses)."""
    return json_codec.dumps(value).decode()


def _cmd_status(home: Home, args: argparse.Namespace) -> int:
    status = _status(home).to_json()
    if args.json:
        print(json_codec.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return 0
    print("models:")
    for name, m in status["models"].items():
        detail = f" ({m['detail']})" if m["detail"] else ""
        print(f"  {name}: {m['state']}{detail}  events={m['events']} checkpoint={_dumps(m['checkpoint'])}")
    print("routes:")
    for name, r in status["routes"].items():
        detail = f" ({r['detail']})" if r["detail"] else ""
        flag = "" if r["enabled"] else " disabled"
        print(
            f"  {name}: {r['state']}{detail}{flag}  {r['model']} -> {r['broker']} backlog={r['backlog']}"
            f" quarantined={r['quarantined']}"
        )
    print("brokers:")
    for name, b in status["brokers"].items():
        detail = f" ({b['detail']})" if b["detail"] else ""
        print(f"  {name}: {b['state']}{detail}")
    return 0


def _cmd_test(home: Home, args: argparse.Namespace) -> int:
    """Connect once to a saved datasource, model or broker: its summary, or the error (exit 5 for a
    datasource or model, 6 for a broker, 3 for an unknown name, 4 for a secret not to be had)."""
    summary = asyncio.run(check_connection(home.workspace, args.type, args.name))
    print(f"{args.type} {args.name!r}: {summary or 'connected'}")
    if args.type == "datasource":
        leftover_commands.warn_leftovers(home, args.name)
    return 0


def _cmd_events(home: Home, args: argparse.Namespace) -> int:
    if args.model is not None:
        home.workspace.model(args.model)
    if args.limit < 1:
        raise ConfigError("must be at least 1", obj="events", field="limit")
    events = home.capture.latest(args.limit, models=[args.model] if args.model else None)
    for ev in events:
        env = ev.envelope
        if args.json:
            print(json_codec.dumps(env).decode())  # numbers exact: a Decimal is not stdlib JSON
        else:
            print(f"{env['received_at']}  {env['model']:<12} {env['op']:<8} {env['key']}  rev={env['rev']}")
    return 0


# Every sub-command's parser names its ``handler(home, args) -> int`` with ``set_defaults``; main()
# opens the home and calls it. Modules that add sub-commands do the same in ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "eventdesk.cli.export_commands",
    "eventdesk.cli.demo_commands",
    "eventdesk.cli.quarantine_commands",
    "eventdesk.cli.run_command",
    "eventdesk.cli.fleet_commands",
)


def _command_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(name) for name in COMMAND_MODULES]


# Commands that change the workspace or the capture's positions take the home's lock (one runner,
# app or edit at a time); those that only read (status, list, events, export, ...) do not.
_EDIT_COMMANDS = frozenset({"datasource", "model", "broker", "route", "remove"})


def _lock_for(args: argparse.Namespace) -> str | None:
    if args.command == "run":
        return "run"
    reads = getattr(args, "action", None) == leftover_commands.ACTION  # asks the server, edits nothing
    if (args.command in _EDIT_COMMANDS and not reads) or (
        args.command == "demo" and getattr(args, "send", None) is None
    ):
        return "edit"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_kinds=_command_of(argv) in _SCHEMA_COMMANDS).parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        from eventdesk.ui.app import run_app

        return int(run_app(args.home))
    try:
        home = Home.open(args.home, lock=_lock_for(args), fresh_capture=getattr(args, "fresh_capture", False))
        try:
            return int(args.handler(home, args))
        except sqlite3.Error as exc:
            failure = capture_failure(home.paths.capture_file, exc)
            if failure is None:
                raise
            raise failure from None
        finally:
            home.close()
    except EventDeskError as exc:
        if getattr(args, "log_format", "text") == "json":  # run --log-format json: a JSON line too
            logging.getLogger("eventdesk.run").error("%s", exc.describe())
        else:
            print(f"eventdesk: error: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


__all__ = ["State", "main"]
