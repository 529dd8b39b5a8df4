"""The cost of ``/metrics`` (issue 14), the ``metrics`` section of ``bench/healthz.py``.

Two gunicorn replicas of the project run side by side (production settings, no HTTPS redirect so
the view itself answers): one with ``METRICS_TOKEN`` set, one without. Each has one worker
(``WORKERS``) with its four threads: with two, plain gthread often lets one worker accept every
connection wrk opens (even 32 of 32, measured here), and requests per second halve or not with
that split alone, a swing far larger than the cost measured here. With one worker, the metrics files are still
written and read (multiprocess mode is on whenever gunicorn serves the token); two workers are
the tests' business (``tests/test_metrics_processes.py``). wrk asks a trivial view that goes
through the full middleware chain (``/bench/trivial``), in interleaved rounds (off, on,
on-and-scraped, then rotated), so that a busy spell of the machine hits all three alike:

- ``off``: metrics off (the request middleware takes itself out of the chain);
- ``on``: every request counted and timed (multiprocess files);
- ``scraped``: the same, while a scraper asks ``/metrics`` every ``SCRAPE_EVERY`` seconds (15 times
  Prometheus's usual rate), reading every worker's files, rq's state in Redis and ``/proc``.

Per round, the ratios on : off and scraped : on of requests per second; the medians over rounds
against the targets. Beside them the workers' CPU time per request (from ``/proc``), which the
machine's other load moves much less, and the CPU time of recording one request alone (counter and
histogram into multiprocess files, in a process of its own): the cost itself. Also the scrape's
own duration and size.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from bench import loads
from bench.paths import TRIVIAL_PATH as _TRIVIAL
from harness.processes import child_pids
from harness.project import PYTHON, ROOT, Server

CONNECTIONS = 8
WORKERS = "1"
TOKEN = "bench-metrics-token-0123456789-abcdefghij"  # noqa: S105 - a throwaway token for throwaway servers
SCRAPE_EVERY = 1.0
# Targets from issue 14; never loosened here.
TARGET_ON_VS_OFF = 0.9
TARGET_SCRAPED_VS_ON = 0.9
KINDS = ("off", "on", "scraped")
# What the request middleware adds per request, alone: CPU time (not wall time) over many calls.
RECORD_COST = """
import time, django
django.setup()
from apps.metrics import instruments
instruments.record_request("/bench/trivial", "GET", 200, 0.001)
started = time.process_time()
for number in range(50_000):
    instruments.record_request("/bench/trivial", "GET", 200, 0.0002 * (number % 100))
print((time.process_time() - started) / 50_000 * 1e6)
"""
TRIVIAL_PATH = "/" + _TRIVIAL


class Scraper:
    """Asks ``/metrics`` every ``SCRAPE_EVERY`` seconds in a thread until stopped; keeps each scrape's time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.durations: list[float] = []
        self.sizes: list[int] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            reply = loads.timed_get(self.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
            if reply.status == 200 and b"rq_scrape_ok 1.0" in reply.body:
                self.durations.append(reply.seconds)
                self.sizes.append(len(reply.body))
            else:
                self.failures += 1
            self._stop.wait(SCRAPE_EVERY)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(30)


def section_metrics(
    report: Any,
    env: Callable[[str | None], dict[str, str]],
    cpu_seconds: Callable[[set[int]], float],
    rounds: int,
    seconds: float,
    warmup_seconds: float,
) -> None:
    """``env(token)``: a replica's environment with ``METRICS_TOKEN`` set to ``token`` (or unset);
    ``cpu_seconds(pids)``: the CPU time these processes used so far."""
    connections = CONNECTIONS
    print(
        f"\n== metrics: {rounds} rounds x off/on/scraped x {seconds:g} s of {TRIVIAL_PATH}, wrk -c{connections}, "
        f"two gunicorn replicas x{WORKERS} worker side by side, a scrape every {SCRAPE_EVERY:g} s while scraped",
        flush=True,
    )
    off = Server({**env(None), "WEB_CONCURRENCY": WORKERS})
    on = Server({**env(TOKEN), "WEB_CONCURRENCY": WORKERS})
    try:
        off.start(wait=60)
        on.start(wait=60)
        urls = {"off": off.url + TRIVIAL_PATH, "on": on.url + TRIVIAL_PATH, "scraped": on.url + TRIVIAL_PATH}
        for server in (off, on):
            if loads.timed_get(server.port, TRIVIAL_PATH).status != 200:
                raise RuntimeError(f"{server.url}{TRIVIAL_PATH} does not answer 200")
            loads.run_wrk(server.url + TRIVIAL_PATH, warmup_seconds, connections)
        assert off.process is not None
        assert on.process is not None
        workers = {"off": child_pids(off.process.pid), "on": child_pids(on.process.pid)}
        workers["scraped"] = workers["on"]
        scraper = Scraper(on.port)
        results: list[dict[str, loads.WrkResult]] = []
        costs: list[dict[str, float]] = []  # the workers' CPU microseconds per request
        for number in range(rounds):
            order = KINDS[number % 3 :] + KINDS[: number % 3]
            measured: dict[str, loads.WrkResult] = {}
            cost: dict[str, float] = {}
            for kind in order:
                before = cpu_seconds(workers[kind])
                with scraper.running() if kind == "scraped" else contextlib.nullcontext():
                    measured[kind] = loads.run_wrk(urls[kind], seconds, connections)
                result = measured[kind]
                cost[kind] = (cpu_seconds(workers[kind]) - before) / max(1, result.requests) * 1e6
                print(
                    f"  round {number + 1} {kind:8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  cpu {cost[kind]:5.0f} us/req  "
                    f"non-2xx {result.non_2xx}  socket errors {result.lost}",
                    flush=True,
                )
            results.append(measured)
            costs.append(cost)
        on_log = on.output()
    finally:
        off.stop()
        on.stop()
    with tempfile.TemporaryDirectory(prefix="prometheus-bench-") as files:
        recorded = subprocess.run(
            [PYTHON, "-c", RECORD_COST],
            env={**env(TOKEN), "PROMETHEUS_MULTIPROC_DIR": files},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    _report(report, results, costs, scraper, on_log, float(recorded.stdout.split()[-1]))


def _report(
    report: Any,
    results: list[dict[str, loads.WrkResult]],
    costs: list[dict[str, float]],
    scraper: Scraper,
    on_log: str,
    record_us: float,
) -> None:
    on_vs_off = [r["on"].rps / r["off"].rps for r in results]
    scraped_vs_on = [r["scraped"].rps / r["on"].rps for r in results]
    # The throughput ratios the CPU cost alone allows (a worker busy for longer per request serves fewer).
    cpu_off_vs_on = [c["off"] / c["on"] for c in costs]
    cpu_on_vs_scraped = [c["on"] / c["scraped"] for c in costs]
    errors = sum(r[kind].non_2xx + r[kind].lost for r in results for kind in KINDS)
    table = [["replica", "requests/s", "p50", "p99", "CPU per request", "non-2xx", "socket errors"]]
    summary = {}
    for kind in KINDS:
        totals = loads.summary([r[kind] for r in results])
        summary[kind] = {**totals, "cpu_us_per_request": loads.median([c[kind] for c in costs])}
        row = [kind, f"{totals['rps']:,.0f}", f"{totals['p50_ms']:.2f} ms", f"{totals['p99_ms']:.2f} ms"]
        row += [f"{summary[kind]['cpu_us_per_request']:,.0f} us", f"{totals['non_2xx']:.0f}"]
        row += [f"{totals['socket_errors']:.0f}"]
        table.append(row)
    report.tables["metrics: a trivial view through the full middleware (medians over rounds)"] = table
    scrape_ms = [d * 1000 for d in scraper.durations]
    report.data["metrics"] = {
        "rounds": [{kind: asdict(result) | {"buckets": {}} for kind, result in r.items()} for r in results],
        "summary": summary,
        "cpu_us_per_request": costs,
        "ratios": {
            "on_vs_off_rps": on_vs_off,
            "scraped_vs_on_rps": scraped_vs_on,
            "cpu_off_vs_on": cpu_off_vs_on,
            "cpu_on_vs_scraped": cpu_on_vs_scraped,
        },
        "scrapes": {"durations_ms": scrape_ms, "sizes": scraper.sizes, "failures": scraper.failures},
        "folds_postponed": on_log.count("metrics_files_fold_postponed"),
        "record_cpu_us": record_us,
    }

    def spread(values: list[float]) -> str:
        return f"(rounds: {min(values):.2f}-{max(values):.2f})"

    report.add(
        "metrics",
        f"req/s with metrics on >= {TARGET_ON_VS_OFF} x off",
        f"{loads.median(on_vs_off):.2f} x {spread(on_vs_off)}; errors {errors}",
        loads.median(on_vs_off) >= TARGET_ON_VS_OFF and errors == 0,
    )
    off_cpu = summary["off"]["cpu_us_per_request"]
    report.add(
        "metrics",
        "CPU to record one request (info: the cost alone)",
        f"{record_us:.1f} us, {record_us / off_cpu * 100:.1f} % of a request's {off_cpu:,.0f} us with metrics off",
        None,
    )
    report.add(
        "metrics",
        "CPU per request, off : on (info: the cost alone)",
        f"{loads.median(cpu_off_vs_on):.2f} x {spread(cpu_off_vs_on)}",
        None,
    )
    report.add(
        "metrics",
        f"req/s while scraped every {SCRAPE_EVERY:g} s >= {TARGET_SCRAPED_VS_ON} x on",
        f"{loads.median(scraped_vs_on):.2f} x {spread(scraped_vs_on)}",
        loads.median(scraped_vs_on) >= TARGET_SCRAPED_VS_ON,
    )
    report.add(
        "metrics",
        "CPU per request, on : scraped (info: the cost alone)",
        f"{loads.median(cpu_on_vs_scraped):.2f} x {spread(cpu_on_vs_scraped)}",
        None,
    )
    report.add(
        "metrics",
        "a scrape under load (info)",
        f"{len(scrape_ms)} scrapes, p50 {loads.median(scrape_ms):.1f} ms, "
        f"p99 {loads.percentile(scrape_ms, 99):.1f} ms, "
        f"{loads.median([float(s) for s in scraper.sizes]) / 1024:.0f} KiB; failed {scraper.failures}",
        None,
    )
