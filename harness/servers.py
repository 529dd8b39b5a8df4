"""Throwaway servers on free ports: redis-server, a PostgreSQL cluster, a black hole, a slow proxy.

Each is started by the test (or bench) that needs it and can be stopped, restarted and broken
at will; the shared PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.processes import free_port, wait_for_port, wait_until


class RedisServer:
    """A throwaway redis-server on a free port; stop() kills it, start() brings it back.

    ``wrapper`` prefixes every command it runs (``ip netns exec NAME``: a server in a network
    namespace of its own, on the standard port).
    """

    def __init__(self, port: int | None = None, wrapper: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.wrapper = list(wrapper)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *options: str) -> RedisServer:
        """Start (or restart, on the same port) the server; ``options`` are extra arguments."""
        self.process = subprocess.Popen(
            [
                *self.wrapper,
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.wrapper:
            wait_until(self._answers, 15, f"redis-server on port {self.port}")
        else:
            wait_for_port(self.port)
        return self

    def _answers(self) -> bool:
        with contextlib.suppress(subprocess.CalledProcessError):
            return self.command("PING").strip() == "PONG"
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def command(self, *args: str) -> str:
        result = subprocess.run(
            [*self.wrapper, "redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout


class BlackHole:
    """Accepts TCP connections and never sends a byte: a host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close_listener(self) -> None:
        """Stop accepting, but keep the accepted connections silent and open (no FIN sent)."""
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


PG_BIN = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The machine's PostgreSQL server binaries (initdb, pg_ctl), if installed."""
    for candidate in sorted(PG_BIN.glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, trust auth.

    ``wrapper`` prefixes ``pg_ctl`` (``ip netns exec NAME``: a server in a network namespace of
    its own, say on the standard port).
    """

    def __init__(self, port: int | None = None, wrapper: Sequence[str] = ()) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bin = binaries
        self.port = port or free_port()
        self.wrapper = list(wrapper)
        self.directory = Path(tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.directory / "data"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run(
            [*self.wrapper, *prefix, *command], check=True, capture_output=True, timeout=120, cwd=self.directory
        )

    @property
    def log_path(self) -> Path:
        return self.directory / "log"

    def start(self, *settings: str) -> PostgresCluster:
        """Start the server; ``settings`` are extra ``name=value`` server settings."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        options += "".join(f" -c {setting}" for setting in settings)
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class DelayProxy:
    """A TCP proxy to ``127.0.0.1:upstream_port`` that holds every reply ``delay`` seconds.

    Requests reach the upstream at once; bytes coming back are delivered ``delay`` seconds
    after they arrived (in order). ``delay`` can change at any time and applies to replies
    received from then on, so a client can connect while it is 0 and see the server turn slow
    under an established connection. ``close()`` drops the listener and every connection.
    """

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self._lock = threading.Lock()
        self._open: dict[socket.socket, socket.socket] = {}  # client -> upstream
        self._closed = False
        threading.Thread(target=self._accept, name="delay-proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    self._close(client, upstream)
                    return
                self._open[client] = upstream
            pair = _Pair(self, client, upstream)
            threading.Thread(target=self._requests, args=(client, upstream, pair.finished), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, pair.finished), daemon=True).start()

    @staticmethod
    def _requests(source: socket.socket, target: socket.socket, finished: Callable[[], None]) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            DelayProxy._abort(source, target)
        finally:
            finished()

    def _replies(self, source: socket.socket, target: socket.socket, finished: Callable[[], None]) -> None:
        pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def deliver() -> None:
            try:
                while True:
                    due, data = pending.get()
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                    if not data:
                        target.shutdown(socket.SHUT_WR)
                        return
                    target.sendall(data)
            except OSError:
                DelayProxy._abort(source, target)
            finally:
                finished()

        threading.Thread(target=deliver, daemon=True).start()
        data = b"-"
        while data:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.delay, data))

    @staticmethod
    def _abort(*sockets: socket.socket) -> None:
        """Wake every thread blocked on these sockets; ``_close`` releases them."""
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    def _close(cls, *sockets: socket.socket) -> None:
        cls._abort(*sockets)
        for sock in sockets:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._open = list(self._open.items()), {}
        self.sock.close()
        for client, upstream in pairs:
            self._abort(client, upstream)


class _Pair:
    """A proxied connection's two directions; whichever finishes second closes both sockets."""

    def __init__(self, proxy: DelayProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.remaining = 2

    def finished(self) -> None:
        with self.proxy._lock:
            self.remaining -= 1
            if self.remaining:
                return
            self.proxy._open.pop(self.client, None)
        DelayProxy._close(self.client, self.upstream)
