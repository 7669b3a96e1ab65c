"""What goes wrong at a webhook receiver, and how it is told.

A request that cannot become events is a :class:`BadRequestError`, answered with its HTTP
status and reason (the sender's fault, the receiver goes on). A server that cannot listen is
a terminal :class:`~eventdesk.core.errors.ConnectorError` naming the field to change
(``port`` or ``host``).
"""

from __future__ import annotations

import errno
import socket

from eventdesk.core.errors import ConnectorError


class BadRequestError(Exception):
    """The request cannot become events: answered with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def port_in_use_error(label: str, host: str, port: int) -> ConnectorError:
    return ConnectorError(
        f"cannot listen on {host}:{port}: the port is already in use by another program; choose another port",
        obj=label,
        field="port",
        terminal=True,
    )


def listen_error(exc: OSError, label: str, host: str, port: int) -> ConnectorError:
    """The terminal error for a server that could not listen on ``host:port``, naming the field
    at fault: ``host`` for an address this machine does not have, else ``port``."""
    if exc.errno == errno.EADDRINUSE:
        return port_in_use_error(label, host, port)
    field_name = "port"
    if exc.errno == errno.EADDRNOTAVAIL or (exc.errno != errno.EACCES and isinstance(exc, socket.gaierror)):
        field_name = "host"
    return ConnectorError(
        f"cannot listen on {host}:{port}: {exc.strerror or exc}", obj=label, field=field_name, terminal=True
    )
