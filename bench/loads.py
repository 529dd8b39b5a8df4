"""Load generators and small statistics for ``bench/healthz.py``: wrk, plain HTTP, percentiles."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_report.lua"


def find_wrk() -> str | None:
    return shutil.which("wrk")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: dict[str, int]
    non_2xx: int
    statuses: dict[int, int]
    buckets: dict[tuple[int, int], int]  # (status, 50 ms bucket of wall-clock time) -> count

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        """Requests that got no HTTP answer at all (connect/read/write errors, timeouts)."""
        return sum(self.socket_errors.values())


def wrk_command(url: str, seconds: float, connections: int, threads: int, timeout: float = 5.0) -> list[str]:
    wrk = find_wrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    threads = max(1, min(threads, connections))
    return [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]


def parse_wrk(output: str) -> WrkResult:
    line = next((line for line in output.splitlines() if line.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{output}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = data["latency_us"]
    buckets = {}
    for key, count in data["buckets_50ms"].items():
        status, bucket = key.split(":")
        buckets[(int(status), int(bucket))] = count
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        socket_errors={k: v for k, v in data["errors"].items() if k != "status"},
        non_2xx=data["errors"]["status"],
        statuses={int(k): v for k, v in data["statuses"].items()},
        buckets=buckets,
    )


def run_wrk(url: str, seconds: float, connections: int, threads: int = 1, timeline: bool = False) -> WrkResult:
    env = {**os.environ, "WRK_TIMELINE": "1" if timeline else "0"}
    command = wrk_command(url, seconds, connections, threads)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


class WrkProcess:
    """wrk in the background (the soak), for a caller that does other things meanwhile."""

    def __init__(self, url: str, seconds: float, connections: int, threads: int, timeline: bool = True) -> None:
        env = {**os.environ, "WRK_TIMELINE": "1" if timeline else "0"}
        self.seconds = seconds
        self.process = subprocess.Popen(
            wrk_command(url, seconds, connections, threads),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def result(self) -> WrkResult:
        try:
            out, err = self.process.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        if self.process.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.process.returncode}): {err or out}")
        return parse_wrk(out)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Timed:
    status: int
    seconds: float
    body: bytes


def timed_get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 15) -> Timed:
    """One GET on a fresh connection, as an orchestrator's probe does it, with its duration."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        body = reply.read()
        return Timed(reply.status, time.perf_counter() - started, body)
    finally:
        connection.close()


def concurrent_gets(port: int, path: str, count: int, workers: int) -> list[Timed]:
    """``count`` GETs from ``workers`` threads, each request on a fresh connection."""
    results: list[Timed] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]

    def client(n: int) -> None:
        for _ in range(n):
            try:
                result = timed_get(port, path)
            except Exception as exc:  # noqa: BLE001 - reported to the caller below
                with lock:
                    errors.append(exc)
                continue
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client, args=(n,)) for n in share if n]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} requests failed; first: {errors[0]!r}")
    return results


def summary(results: Sequence[WrkResult]) -> dict[str, float]:
    """One target's runs: medians over rounds (requests/s, p50, p99) and totals (non-2xx, socket errors)."""
    return {
        "rps": median([result.rps for result in results]),
        "p50_ms": median([result.p50_ms for result in results]),
        "p99_ms": median([result.p99_ms for result in results]),
        "non_2xx": sum(result.non_2xx for result in results),
        "socket_errors": sum(result.lost for result in results),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
