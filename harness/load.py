"""Steady HTTP load from this process: a fixed number of keep-alive connections, every answer recorded.

For the scaling tests and the benchmark: ``Load`` keeps ``connections`` client threads busy,
each on one persistent HTTP/1.1 connection (reopened after an error, as a browser or an upstream
proxy would), cycling through a list of requests until a count is reached or ``stop()`` is
called. Every request is kept as a ``Sample`` (when it started and ended, the status or the
error, which replica answered), so a test can look at any window of time afterwards: the 5xx of
one replica after it was marked down, the slowest answer, failures during a restart.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

# What a kept-alive connection that the server has just closed looks like to the client.
STALE = ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError")


@dataclass(frozen=True)
class Request:
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None  # None: the load's own port


@dataclass(frozen=True)
class Sample:
    path: str
    port: int
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer (``error`` says why)
    error: str | None = None
    server: str = ""  # the header named by ``Load.server_header``, if the answer had it
    idle: float | None = None  # how long the connection had been idle; None: a new connection
    retried: bool = False  # sent again on a new connection after a stale kept-alive one failed

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> bool:
        """No answer, or a 5xx."""
        return self.status is None or self.status >= 500


class Load:
    """``connections`` threads sending ``requests`` in turn, until ``total`` answers or ``stop()``."""

    def __init__(
        self,
        port: int,
        requests: Sequence[Request],
        connections: int = 16,
        total: int | None = None,
        timeout: float = 30.0,
        server_header: str = "x-served-by",
    ) -> None:
        self.port = port
        self.requests = list(requests)
        self.connections = connections
        self.total = total
        self.timeout = timeout
        self.server_header = server_header
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._issued = itertools.count()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(number,), name=f"load-{number}", daemon=True)
            for number in range(connections)
        ]

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float | None = None) -> list[Sample]:
        """Stop sending, wait for the requests in flight (at most their own timeout), return every sample."""
        self._stopping.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> list[Sample]:
        """Wait for the clients to finish (``total`` reached, or stopped); every sample so far."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout + 5)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return list(self.samples)

    def answered(self) -> int:
        with self._lock:
            return len(self.samples)

    def since(self, moment: float) -> list[Sample]:
        with self._lock:
            return [sample for sample in self.samples if sample.started >= moment]

    def wait_for(self, condition: Callable[[list[Sample]], bool], timeout: float) -> None:
        """Poll until ``condition(samples so far)`` holds (the load runs meanwhile)."""
        from harness.processes import wait_until

        wait_until(lambda: condition(self.since(0)), timeout, "a condition on the load's answers", interval=0.05)

    def _next(self) -> int | None:
        if self._stopping.is_set():
            return None
        number = next(self._issued)
        if self.total is not None and number >= self.total:
            return None
        return number

    def _client(self, offset: int) -> None:
        connections: dict[int, http.client.HTTPConnection] = {}
        last_used: dict[int, float] = {}
        try:
            while (number := self._next()) is not None:
                request = self.requests[(number + offset) % len(self.requests)]
                port = request.port or self.port
                sample = self._send(request, port, connections, last_used)
                if sample.status is None and sample.idle is not None and sample.error in STALE:
                    # A kept-alive connection the server closed (its keep-alive timeout) as the
                    # request went out: HTTP clients retry an idempotent request once on a new
                    # connection (RFC 9112, 9.3.1); browsers, urllib3 and proxies all do.
                    sample = replace(self._send(request, port, connections, last_used), retried=True)
                with self._lock:
                    self.samples.append(sample)
        finally:
            for connection in connections.values():
                connection.close()

    def _send(
        self,
        request: Request,
        port: int,
        connections: dict[int, http.client.HTTPConnection],
        last_used: dict[int, float],
    ) -> Sample:
        connection = connections.get(port)
        if connection is None:
            connection = connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        started = time.monotonic()
        idle = started - last_used[port] if port in last_used else None
        try:
            connection.request("GET", request.path, headers=dict(request.headers))
            reply = connection.getresponse()
            reply.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            del connections[port]
            last_used.pop(port, None)
            return Sample(request.path, port, started, time.monotonic(), None, type(error).__name__, idle=idle)
        ended = time.monotonic()
        server = reply.getheader(self.server_header) or ""
        last_used[port] = ended
        if reply.will_close:
            connection.close()
            del connections[port], last_used[port]
        return Sample(request.path, port, started, ended, reply.status, server=server, idle=idle)


def summary(samples: Sequence[Sample]) -> dict[str, object]:
    """Counts by status (``"error:ConnectionResetError"`` for no answer), by server, and the slowest."""
    statuses = Counter(str(s.status) if s.status is not None else f"error:{s.error}" for s in samples)
    return {
        "requests": len(samples),
        "statuses": dict(sorted(statuses.items())),
        "servers": dict(sorted(Counter(s.server for s in samples).items())),
        "max_seconds": max((s.seconds for s in samples), default=0.0),
        "retried_stale_connections": sum(s.retried for s in samples),
    }
