"""The fault proxy itself: forwards, fails on demand, cuts and heals."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.peers.fault_proxy import FaultProxy
from tests.peers.servers import CouchServer


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def proxy(couch: CouchServer) -> Iterator[FaultProxy]:
    p = FaultProxy(couch.port)
    yield p
    p.close()


def test_forwards_and_fails_a_counted_burst(proxy: FaultProxy) -> None:
    assert get(proxy.url + "/") == 200
    proxy.fail_with(429, 2)
    assert [get(proxy.url + "/") for _ in range(3)] == [429, 429, 200]
    assert proxy.failed_requests == 2


def test_fails_for_a_duration(proxy: FaultProxy) -> None:
    proxy.fail_with(503, 0.3)
    assert get(proxy.url + "/") == 503
    deadline = time.monotonic() + 5
    while get(proxy.url + "/") != 200:
        assert time.monotonic() < deadline, "still failing after the burst"
        time.sleep(0.05)


def test_cut_resets_connections_until_healed(proxy: FaultProxy) -> None:
    proxy.cut()
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(proxy.url + "/", timeout=5)
    proxy.heal()
    assert get(proxy.url + "/") == 200


def test_endless_page_streams_until_the_client_stops(proxy: FaultProxy, couch: CouchServer) -> None:
    db = couch.create_database()
    proxy.endless_pages(b'{"results":[', 1)
    request = urllib.request.Request(f"{proxy.url}/{db}/_changes?feed=normal", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read(12) == b'{"results":['
        assert len(response.read(5 << 20)) == 5 << 20  # well past any real page of this database
    assert proxy.streamed >= 5 << 20
    with urllib.request.urlopen(request, timeout=5) as response:  # the next one is forwarded
        assert b'"last_seq"' in response.read()
