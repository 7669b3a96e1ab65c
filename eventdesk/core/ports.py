"""Whether something could listen on a local address now (for receivers EventDesk runs)."""

from __future__ import annotations

import errno
import socket


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
