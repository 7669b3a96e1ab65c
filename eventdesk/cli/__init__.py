"""The ``eventdesk`` command line: headless commands over the Qt-free core."""

from eventdesk.cli.main import main

__all__ = ["main"]
