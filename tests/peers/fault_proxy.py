"""A small TCP proxy in front of a test peer that injects faults on demand (toxiproxy-style).

- ``cut()``: reset every open connection (RST, not FIN) and reset new ones until ``heal()``;
- ``fail_with(status, count_or_seconds)``: answer the next N requests (an int) or every
  request for that many seconds (a float) with an HTTP error instead of forwarding them;
- ``drop_connections()``: reset the open connections once, new ones are served normally;
- ``endless_pages(head, count)``: answer the next N ``feed=normal`` ``_changes`` requests
  that open a connection with a chunked body that starts with ``head`` and never ends
  (``head`` continued by filler bytes, up to ``ENDLESS_LIMIT``); ``streamed`` counts its bytes.

HTTP faults apply to the first request of each new connection (the answer says
``Connection: close``); requests on a connection already being forwarded pass through, so
combine ``fail_with`` with ``drop_connections`` to make a client with an open stream hit it.
One accept thread plus one thread per connection; ``close()`` joins them all.
"""

from __future__ import annotations

import contextlib
import http
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_POLL = 0.05  # how often idle threads look at their flags
ENDLESS_LIMIT = 4 << 30  # an endless body stops here, whatever the client does


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0) rather than an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    dead: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._cut = False
        self._fail_status = 0
        self._fail_count = 0
        self._fail_until = 0.0
        self.failed_requests = 0  # how many requests got an injected error
        self._endless_head = b""
        self._endless_count = 0
        self.streamed = 0  # bytes of endless bodies sent so far
        self.connections = 0  # how many connections were forwarded
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ------------------------------------------------------------------------------
    def cut(self) -> None:
        """Reset every open connection and every new one until :meth:`heal`."""
        with self._lock:
            self._cut = True
        self.drop_connections()

    def heal(self) -> None:
        """Forward again; also ends an HTTP fault."""
        with self._lock:
            self._cut = False
            self._fail_count = 0
            self._fail_until = 0.0

    def drop_connections(self) -> None:
        """Reset the connections open now (their threads close them within ~50 ms)."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.dead.set()

    def fail_with(self, status: int, count_or_seconds: int | float) -> None:
        """Answer ``status`` to the next N requests (int) or to all for that many seconds (float)."""
        with self._lock:
            self._fail_status = status
            if isinstance(count_or_seconds, int):
                self._fail_count, self._fail_until = count_or_seconds, 0.0
            else:
                self._fail_count, self._fail_until = 0, time.monotonic() + count_or_seconds

    def endless_pages(self, head: bytes, count: int = 1) -> None:
        """Answer the next ``count`` ``feed=normal`` changes requests (each the first request of
        its connection) with a body that starts with ``head`` and never ends."""
        with self._lock:
            self._endless_head, self._endless_count = head, count

    def _take_fault(self) -> int | None:
        with self._lock:
            if self._cut:
                return -1
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._fail_status
            if time.monotonic() < self._fail_until:
                return self._fail_status
            return None

    # -- plumbing ----------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name="fault-proxy-conn", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            fault = self._take_fault()
            if fault == -1:
                _reset(client)
            elif fault is not None:
                self._spawn(self._answer_error, client, fault)
            elif self._endless_count > 0:
                self._spawn(self._maybe_endless, client)
            else:
                self._spawn(self._forward, client)

    def _answer_error(self, client: socket.socket, status: int) -> None:
        """Read one request (head and Content-Length body), answer ``status``, close."""
        client.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
            phrase = http.HTTPStatus(status).phrase
            payload = b'{"error":"injected","reason":"fault proxy: %d %s"}' % (status, phrase.encode())
            client.sendall(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, phrase.encode(), len(payload), payload)
            )
            with self._lock:
                self.failed_requests += 1
        except OSError:
            pass
        finally:
            client.close()

    def _maybe_endless(self, client: socket.socket) -> None:
        """Read the connection's first request head: an endless page, or forward it all."""
        client.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    client.close()
                    return
                data += chunk
        except OSError:
            client.close()
            return
        client.settimeout(None)
        request_line = data.split(b"\r\n", 1)[0]
        with self._lock:
            endless = b"/_changes" in request_line and b"feed=normal" in request_line
            endless = endless and self._endless_count > 0
            if endless:
                self._endless_count -= 1
            head = self._endless_head
        if endless:
            self._answer_endless(client, head)
        else:
            self._forward(client, data)

    def _answer_endless(self, client: socket.socket, head: bytes) -> None:
        filler = b"x" * 65536
        try:
            client.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            piece = head
            while not self._closed.is_set() and self.streamed < ENDLESS_LIMIT:
                client.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                with self._lock:
                    self.streamed += len(piece)
                piece = filler
        except OSError:
            pass
        finally:
            client.close()

    def _forward(self, client: socket.socket, initial: bytes = b"") -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.sendall(initial)
        except OSError:
            _reset(client)
            return
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs.append(pair)
            self.connections += 1
        try:
            self._pump(pair)
        finally:
            with self._lock:
                self._pairs.remove(pair)
            if pair.dead.is_set():
                _reset(client)
                _reset(upstream)
            else:
                client.close()
                upstream.close()

    def _pump(self, pair: _Pair) -> None:
        """Copy bytes both ways until either side closes or the pair is marked dead."""
        peer = {pair.client: pair.upstream, pair.upstream: pair.client}
        while not pair.dead.is_set() and not self._closed.is_set():
            readable, _, _ = select.select(list(peer), [], [], _POLL)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if pair.dead.is_set():
                    return
                try:
                    peer[sock].sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        """Stop listening, reset what is open, join every thread."""
        self._closed.set()
        self.drop_connections()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
