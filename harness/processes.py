"""Waiting for conditions and looking at processes: ports, children, threads, connections, log lines."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_LOWEST_PORT = 10000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port no socket holds now, for a server a test is about to start.

    Below the kernel's ephemeral range: a port from bind(0) lies inside it, where any outgoing
    connection (a client, HAProxy, PgBouncer) may take it as its source port before the server
    binds it, and bind then fails with "Address already in use" (seen under load). Never the same
    port twice in one process.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(_LOWEST_PORT, low)) if low - _LOWEST_PORT >= 1000 else []
    random.shuffle(candidates)
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))  # every address: the server may bind 0.0.0.0
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # an unusual ephemeral range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout``.

    The cap is generous on purpose: it only bounds a test that would otherwise hang, it is
    never the thing under test.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as elapsed: ...``; ``elapsed[0]`` is the block's duration in seconds."""
    box: list[float] = []
    started = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - started)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among ``text``'s lines (other lines, such as a traceback, are skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def child_pids(pid: int) -> set[int]:
    """The live child processes of ``pid`` (for example a gunicorn master's workers)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may contain spaces; the fields after its ")" do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.add(int(stat.parent.name))
    return children


def process_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def established_connections(pid: int, remote_port: int) -> int:
    """TCP connections of process ``pid`` to ``127.0.0.1:remote_port`` that are still open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port and state == "01":
            count += 1
    return count


def open_connections(port: int) -> int:
    """TCP connections to local ``port`` (IPv4) that are established or still closing on the server side."""
    # 01 ESTABLISHED, 08 CLOSE_WAIT (the client closed, the server has not yet), 09 LAST_ACK
    states = {"01", "08", "09"}
    return sum(
        1
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and fields[3] in states
    )


def connections_by_pid(port: int, pids: set[int]) -> dict[int, int]:
    """How many established connections to local TCP ``port`` (IPv4) each of ``pids`` holds."""
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01"
    }
    held = dict.fromkeys(pids, 0)
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held[pid] += 1
    return held


def listening_pids(port: int) -> dict[int, int]:
    """Which processes hold a socket listening on TCP ``port`` (IPv4), and how many each."""
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A"  # 0A: LISTEN
    }
    holders: dict[int, int] = {}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError, ValueError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                pid = int(fd.parent.parent.name)
                holders[pid] = holders.get(pid, 0) + 1
    return holders


def answer_prompts(
    argv: list[str], dialogue: list[tuple[str, str]], cwd: Path, env: dict[str, str], timeout: float = 120
) -> tuple[str, int]:
    """Run ``argv`` on a terminal of its own, typing each answer once its prompt has appeared.

    For commands that read from the terminal itself (``getpass``), which discards anything typed
    before it asks. Returns everything the terminal showed, and the exit status.
    """
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the pseudo-terminal is its controlling terminal
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)  # noqa: S606 - argv is the caller's own command
    shown = b""
    deadline = time.monotonic() + timeout
    pending = list(dialogue)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the child closed the terminal: it has ended
                    break
                if not chunk:
                    break
                shown += chunk
            if pending and pending[0][0].encode() in shown.rsplit(b"\n", 1)[-1]:
                os.write(terminal, pending.pop(0)[1].encode() + b"\n")
                shown += b"\n"  # so the same prompt is not answered twice
    finally:
        os.close(terminal)
        _, status = os.waitpid(pid, 0)
    return shown.decode(errors="replace"), os.waitstatus_to_exitcode(status)
