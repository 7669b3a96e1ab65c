"""Fixtures of the connector tests: a fault-injecting TCP proxy in front of a peer."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.peers.fault_proxy import FaultProxy


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[int], FaultProxy]]:
    """Factory: ``fault_proxy(port)`` starts a proxy in front of 127.0.0.1:port (closed after the test)."""
    made: list[FaultProxy] = []

    def make(target_port: int) -> FaultProxy:
        proxy = FaultProxy(target_port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
