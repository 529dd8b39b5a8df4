"""Clients that misbehave on purpose, for the tests and the bench: silent, trickling, idle.

Every one of them talks only to a local port the caller names, stops by itself (``close()``, or
the ``with`` block's end) and holds nothing else.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from types import TracebackType
from typing import Self

# A CSRF cookie of the right shape: Django then reads the whole POST body to find the token, as
# it does for a real login form, instead of refusing the request before reading it.
_CSRF_COOKIE = "csrftoken=" + "a" * 32


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


class _Clients:
    """Sockets and, when needed, one background thread; ``close()`` ends both."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run_in_background(self, target: object, name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class SilentConnections(_Clients):
    """``count`` connections that never send a byte.

    ``reopen``: every that many seconds, each is closed and opened anew (issue 15's attack reopens
    twelve of them every 4.5 s, just inside gunicorn's 5 s wait for a first byte).
    """

    def __init__(self, port: int, count: int, reopen: float | None = None) -> None:
        super().__init__()
        self.port, self.count, self.reopen = port, count, reopen
        self.sockets = [_connect(port) for _ in range(count)]
        if reopen is not None:
            self._run_in_background(self._cycle, "silent-connections")

    def _cycle(self) -> None:
        while not self._stop.wait(self.reopen):
            fresh = [_connect(self.port) for _ in range(self.count)]
            old, self.sockets = self.sockets, fresh
            for sock in old:
                sock.close()


class TricklingUploads(_Clients):
    """``count`` POSTs to ``path`` whose body arrives one byte every ``interval`` seconds.

    The headers go out at once, so the server starts the request and then waits on the body: on
    gunicorn's gthread worker, each one holds a request thread for as long as it trickles.
    """

    def __init__(
        self, port: int, path: str, count: int, *, content_length: int = 100_000, interval: float = 0.5
    ) -> None:
        super().__init__()
        self.interval = interval
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {_CSRF_COOKIE}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {content_length}\r\n\r\n"
        )
        for _ in range(count):
            sock = _connect(port)
            sock.sendall(head.encode())
            self.sockets.append(sock)
        self._run_in_background(self._trickle, "trickling-uploads")

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval):
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # the server may give up on it: that is its right
                    sock.send(b"a")


class IdleKeepAlive(_Clients):
    """``count`` connections that each made one keep-alive request to ``path``, then went quiet.

    They read their answer and never close their end, even when the server closes its own: the
    way a connection pool sits on its idle connections until it next needs one. ``answered``: how
    many got their answer within ``timeout`` seconds, all together.
    """

    def __init__(self, port: int, path: str, count: int, timeout: float = 15) -> None:
        super().__init__()
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode()
        for _ in range(count):
            sock = _connect(port)
            sock.sendall(request)
            self.sockets.append(sock)
        deadline = time.monotonic() + timeout
        self.answered = 0
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                if _read_response(sock, max(0.01, deadline - time.monotonic())).startswith(b"HTTP/1.1 200"):
                    self.answered += 1

    def still_open(self) -> int:
        """How many the server has not closed (a closed one reads as end-of-file)."""
        open_count = 0
        for sock in self.sockets:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                open_count += 1
                continue
            with contextlib.suppress(OSError):
                if sock.recv(1, socket.MSG_PEEK):
                    open_count += 1
        return open_count


def _read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """One whole HTTP response with a Content-Length (what the probes send)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
