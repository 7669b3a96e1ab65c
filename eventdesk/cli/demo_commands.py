"""``eventdesk demo``: set up the first-run demo workspace headless, and send it sample events."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from eventdesk.core import demo
from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="set up the demo workspace (webhook -> built-in MQTT broker), or send it sample events",
        description="Create the demo: a webhook datasource with model 'accounts', the built-in MQTT "
        "broker and a route to /v1/subutest in model-message format. Run it with `eventdesk run`; then "
        "`eventdesk demo --send N` posts N sample account changes to the running webhook.",
    )
    p.add_argument(
        "--send",
        type=int,
        metavar="N",
        help="post N sample account changes (creates, updates, deletes) to the running demo webhook",
    )
    p.add_argument("--webhook-port", type=int, metavar="PORT", help="webhook port (default 8787 if free)")
    p.add_argument(
        "--broker-port", type=int, metavar="PORT", help="built-in broker port (default 1883 if free)"
    )
    p.add_argument("--seed", type=int, help="random seed for the sample stream (repeatable streams)")
    p.set_defaults(handler=run_demo)


def run_demo(home: Home, args: argparse.Namespace) -> int:
    if args.send is not None:
        if args.send < 1:
            raise ConfigError("must be at least 1", obj="demo", field="send")
        if not demo.demo_present(home):
            raise ConfigError(
                "the demo workspace is not set up; run `eventdesk demo` first", obj="demo", field="send"
            )
        result = asyncio.run(demo.send_samples(home, args.send, seed=args.seed))
        print(
            f"sent {result.sent} sample events to {demo.webhook_url(home, demo.MODEL)}: "
            f"{result.accepted} captured" + (f", {result.rejected} rejected" if result.rejected else "")
        )
        return 0 if result.rejected == 0 else 1
    for name, port in (("webhook-port", args.webhook_port), ("broker-port", args.broker_port)):
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"must be 1-65535, got {port}", obj="demo", field=name)
    info = demo.setup_demo(home, webhook_port=args.webhook_port, broker_port=args.broker_port)
    print(
        "demo workspace " + ("created" if info.created else "already set up") + f" in {home.paths.config_dir}"
    )
    print(f"  webhook:   POST JSON to {info.webhook_url}")
    print(f"  broker:    built-in MQTT on {info.broker_host}:{info.broker_port}")
    print(f"  route:     accounts -> {info.topic} (model-message format)")
    print("next:")
    print("  eventdesk run                      # receive, capture and republish")
    print(f"  {info.subscribe_command()}")
    print("  eventdesk demo --send 20           # post sample account changes")
    print(f"  {info.curl_command()}")
    return 0
