"""Whether something could listen on a local address now (for receivers EventDesk runs)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from eventdesk.core.errors import EventDeskError


def listen_problem(host: str, port: int) -> tuple[str, str, bool] | None:
    """Why nothing could listen on ``host:port`` now, as ``(field, message, in_use)``; None if it could."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return "host", f"cannot resolve {host!r}: {exc.strerror}", False
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "port", f"{host}:{port} is already in use", True
            return "host", f"cannot listen on {host}:{port}: {exc.strerror or exc}", False
    return None


def check_port_free(
    host: str,
    port: int,
    label: str,
    error: Callable[..., EventDeskError],
    in_use_error: Callable[[str, str, int], EventDeskError],
) -> None:
    """Raise ``in_use_error(label, host, port)``, or ``error(...)`` naming ``host``, if nothing could listen."""
    problem = listen_problem(host, port)
    if problem is None:
        return
    field, message, in_use = problem
    if in_use:
        raise in_use_error(label, host, port)
    raise error(message, obj=label, field=field, terminal=True)
