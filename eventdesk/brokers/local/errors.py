"""Why the built-in broker cannot start, told so that the user knows which setting to change."""

from __future__ import annotations

import errno

from eventdesk.core import ports
from eventdesk.core.errors import BrokerError


def port_in_use_error(label: str, host: str, port: int) -> BrokerError:
    return BrokerError(
        f"cannot start the built-in broker on {host}:{port}: the port is already in use (another MQTT broker, "
        "such as mosquitto, may be running there); choose another port, or add that broker as kind mqtt",
        obj=label,
        field="port",
        terminal=True,
    )


def check_port_free(host: str, port: int, label: str) -> None:
    """Raise a BrokerError naming ``port`` if nothing could listen on ``host:port`` now."""
    ports.check_port_free(host, port, label, BrokerError, port_in_use_error)


def is_addr_in_use(error: BaseException) -> bool:
    """Whether ``error`` (or one of its causes) says the address is already in use: amqtt
    wraps the OSError, sometimes in an exception that keeps only its text."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        if "address already in use" in str(seen).lower():
            return True
        seen = seen.__cause__
    return False
