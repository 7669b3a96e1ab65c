"""One dispatch style for every command: each sub-command's parser names its handler.

``main()`` opens the home and calls ``args.handler(home, args)``; a command whose parser sets
no handler would have nothing to run. Pure parser inspection: the commands themselves are
exercised end to end by the other tests here.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from eventdesk.cli.main import build_parser


def command_handlers(
    parser: argparse.ArgumentParser, path: str = "eventdesk", inherited: object = None
) -> Iterator[tuple[str, object]]:
    """Each leaf command with the handler it parses to (its own, else its parent command's)."""
    handler = parser.get_default("handler") or inherited
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, handler
        return
    for action in subparsers:
        for name, child in action.choices.items():
            yield from command_handlers(child, f"{path} {name}", handler)


def test_every_command_names_its_handler_through_set_defaults() -> None:
    handlers = dict(command_handlers(build_parser()))
    assert len(handlers) > 10  # the walk found the command tree, not just the top parser
    without = sorted(path for path, handler in handlers.items() if not callable(handler))
    assert without == []
