"""Serving benchmarks (issues 17, 13 and 15): how the load spreads over gunicorn's workers, and
what slow clients and saturation do to new clients and to the probes.

- balance: the project's gunicorn (``WEB_CONCURRENCY=2``) with its chosen settings, side by side
  with main's former settings and the alternatives that were weighed, all running at once and
  measured in turn (run 1: A B C D, run 2: B C D A, ...), so that a busy spell of the machine
  hits them all alike. At 2, 4, 8 and 64 persistent connections (wrk), several back-to-back runs
  of ``/healthz`` and of the near-physical-limit view ``/bench/limit``, each served the same
  way: requests/s (min / median / max), p99, and the busiest worker's share of the workers' CPU
  time. Then 50 idle keep-alive connections held open while new clients ask for ``/livez``.
- probe-port: every request thread held by trickling uploads; ``/livez`` and ``/readyz`` on
  ``PROBE_PORT`` meanwhile (and, for contrast, ``/livez`` on the main port).
- slow-clients: silent connections and trickling uploads against gunicorn alone and through the
  nginx of ``deploy/nginx/`` in front of it: how long a new client waits for ``/livez``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from apps.common.probe_paths import HEALTHZ, LIVEZ
from bench import loads
from bench.common import (
    BENCH_DB_URL,
    SHARED_REDIS_URL,
    WEB_CONCURRENCY,
    Report,
    app_env,
    cpu_seconds,
    fmt_ms,
    gunicorn,
    say,
    workers_of,
)
from bench.paths import LIMIT_PATH
from harness.processes import connections_by_pid, free_port, open_connections, wait_until
from harness.project import Server, nginx_site
from harness.servers import Nginx
from harness.slow_clients import IdleKeepAlive, SilentConnections, TricklingUploads

HEALTHZ_PATH, LIVEZ_PATH, LIMIT = "/" + HEALTHZ, "/" + LIVEZ, "/" + LIMIT_PATH
THREADS = 4  # gunicorn.conf.py's threads

# Targets from issue 17; never loosened here.
TARGET_SLOWEST_VS_FASTEST = 0.8
TARGET_MEDIAN_VS_LIMIT = 0.9
TARGET_NEW_CLIENT_MS = 50.0
TARGET_CONNECTIONS = 8
# Issue 13: /livez on PROBE_PORT while every request thread is held; /readyz within its deadline.
TARGET_PROBE_LIVEZ_MS = 100.0
HEALTHCHECK_TIMEOUT = 1.0  # the contract's default, as app_env leaves it
TARGET_PROBE_READYZ_MS = (HEALTHCHECK_TIMEOUT + 0.25) * 1000
# Issue 15: through nginx, a new client's /livez while slow and silent clients press on.
TARGET_THROUGH_NGINX_MS = 100.0


@dataclass(frozen=True)
class Setup:
    """A way of serving: gunicorn.conf.py plus these command-line overrides."""

    name: str
    args: tuple[str, ...]
    about: str


CHOSEN = Setup("chosen", (), "gunicorn.conf.py as it is")
GTHREAD = ("--worker-class", "gthread")
BEFORE = Setup(
    "before",
    (*GTHREAD, "--keep-alive", "5", "--worker-connections", "1000"),
    "main's: gthread, keep-alive 5 s, one shared socket",
)
ALTERNATIVES = (
    Setup(
        "worker_connections=threads",
        (*GTHREAD, "--keep-alive", "5", "--worker-connections", str(THREADS)),
        "gthread, keep-alive 5 s, at most 4 connections per worker",
    ),
    Setup(
        "reuse_port",
        (*GTHREAD, "--keep-alive", "5", "--reuse-port"),
        "gthread, keep-alive 5 s, a SO_REUSEPORT socket per worker",
    ),
    Setup("keepalive=0", (*GTHREAD, "--keep-alive", "0"), "gthread, no keep-alive, one shared socket"),
)


@dataclass
class ServingProfile:
    runs: int = 6
    seconds: float = 2.0
    connections: tuple[int, ...] = (2, 4, 8, 64)
    alternatives: bool = True
    idle_connections: int = 50
    new_clients: int = 20
    probe_samples: int = 40
    readyz_samples: int = 8
    slow_uploads: int = 16
    silent_connections: int = 50

    @classmethod
    def quick(cls) -> ServingProfile:
        return cls(
            runs=6,
            seconds=1.0,
            connections=(2, 8),
            alternatives=False,
            new_clients=10,
            probe_samples=10,
            readyz_samples=3,
        )


@dataclass
class Run:
    path: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    worker_cpu_s: list[float] = field(default_factory=list)
    # Connections each worker held half-way through the run, fewest first (keep-alive only:
    # without it they come and go too fast to count).
    worker_connections: list[int] = field(default_factory=list)

    @property
    def busiest_share(self) -> float:
        total = sum(self.worker_cpu_s)
        return max(self.worker_cpu_s) / total if total else float("nan")


@contextlib.contextmanager
def servers(setups: tuple[Setup, ...]) -> Iterator[dict[str, Server]]:
    env = app_env(BENCH_DB_URL, SHARED_REDIS_URL, settings="bench.settings")
    with contextlib.ExitStack() as stack:
        yield {setup.name: stack.enter_context(gunicorn(env, setup.args)) for setup in setups}


def measure(server: Server, path: str, connections: int, seconds: float) -> Run:
    # Every run starts on a quiet server: the last run's connections closed on both ends, so that
    # no worker still counts one its client has already dropped.
    wait_until(lambda: open_connections(server.port) == 0, 10, "the last run's connections to close", interval=0.01)
    pids = sorted(workers_of(server))
    before = [cpu_seconds({pid}) for pid in pids]
    load = loads.WrkProcess(server.url + path, seconds, connections, 1 if connections <= 8 else 2, timeline=False)
    time.sleep(seconds / 2)
    held = connections_by_pid(server.port, set(pids))
    result = load.result()
    after = [cpu_seconds({pid}) for pid in pids]
    return Run(
        path,
        connections,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        result.non_2xx,
        result.lost,
        [b - a for a, b in zip(before, after, strict=True)],
        sorted(held.values()),
    )


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f} / {loads.median(values):,.0f} / {max(values):,.0f}"


def section_balance(profile: ServingProfile, report: Report) -> None:
    setups = (CHOSEN, BEFORE, *(ALTERNATIVES if profile.alternatives else ()))
    say(
        f"\n== balance: {len(setups)} ways of serving side by side, gunicorn x{WEB_CONCURRENCY} workers x{THREADS} "
        f"threads; {profile.runs} runs x {profile.seconds:g} s of /healthz and {LIMIT} at "
        f"{', '.join(map(str, profile.connections))} connections"
    )
    runs: dict[str, dict[int, list[dict[str, Run]]]] = {setup.name: {} for setup in setups}
    idle: dict[str, dict[str, Any]] = {}
    with servers(setups) as running:
        for server in running.values():
            for path in (HEALTHZ_PATH, LIMIT):
                loads.run_wrk(server.url + path, 1, 8)
        for connections in profile.connections:
            for number in range(profile.runs):
                # A different one first each run: none always measures right after a quiet spell.
                order = setups[number % len(setups) :] + setups[: number % len(setups)]
                for setup in order:
                    pair = {
                        path: measure(running[setup.name], path, connections, profile.seconds)
                        for path in (HEALTHZ_PATH, LIMIT)
                    }
                    runs[setup.name].setdefault(connections, []).append(pair)
                    healthz = pair[HEALTHZ_PATH]
                    say(
                        f"  c={connections:<3} run {number + 1} {setup.name:27} {healthz.rps:7.0f} req/s  "
                        f"p99 {fmt_ms(healthz.p99_ms):>9}  busiest worker {healthz.busiest_share:4.0%}  "
                        f"connections {'/'.join(map(str, healthz.worker_connections))}  "
                        f"limit {pair[LIMIT].rps:7.0f} req/s  errors {healthz.non_2xx + healthz.socket_errors}"
                    )
        for setup in setups:
            idle[setup.name] = new_clients_beside_idle(running[setup.name], profile)
            say(
                f"  idle keep-alive {setup.name:27} {idle[setup.name]['held_open']} of "
                f"{profile.idle_connections} still open; new client /livez max "
                f"{fmt_ms(idle[setup.name]['max_ms'])}"
            )
    summarise(profile, report, setups, runs, idle)


def new_clients_beside_idle(server: Server, profile: ServingProfile) -> dict[str, Any]:
    """``idle_connections`` keep-alive connections held open; then new clients, one at a time."""
    with IdleKeepAlive(server.port, LIVEZ_PATH, profile.idle_connections) as idle:
        time.sleep(0.2)  # let the server put them where idle connections go
        held_open = idle.still_open()
        found = timed_probes(server.port, LIVEZ_PATH, profile.new_clients)
    return {"idle_answered": idle.answered, "held_open": held_open, **found}


def unevenness(held: list[int]) -> int:
    return max(held) - min(held) if held else 0


def rps_at(runs: dict[int, list[dict[str, Run]]], connections: int = TARGET_CONNECTIONS) -> list[float]:
    return [pair[HEALTHZ_PATH].rps for pair in runs[connections]]


def summarise(
    profile: ServingProfile,
    report: Report,
    setups: tuple[Setup, ...],
    runs: dict[str, dict[int, list[dict[str, Run]]]],
    idle: dict[str, dict[str, Any]],
) -> None:
    table = [
        [
            "serving",
            "connections",
            "`/healthz` req/s (min / median / max)",
            "slowest : fastest",
            "p99 (median)",
            "busiest worker's CPU share (median, max)",
            "connections per worker mid-run: runs split evenly, most lopsided",
            "`/bench/limit` req/s (median)",
            "`/healthz` : limit",
            "errors",
        ]
    ]
    summary: dict[str, Any] = {}
    for setup in setups:
        summary[setup.name] = {"about": setup.about, "args": list(setup.args), "connections": {}}
        for connections, pairs in runs[setup.name].items():
            healthz = [pair[HEALTHZ_PATH] for pair in pairs]
            limit = [pair[LIMIT] for pair in pairs]
            rps = [run.rps for run in healthz]
            shares = [run.busiest_share for run in healthz]
            values: dict[str, Any] = {
                "rps_min": min(rps),
                "rps_median": loads.median(rps),
                "rps_max": max(rps),
                "slowest_vs_fastest": min(rps) / max(rps) if max(rps) else 0.0,
                "p99_median_ms": loads.median([run.p99_ms for run in healthz]),
                "busiest_share_median": loads.median(shares),
                "busiest_share_max": max(shares),
                "even_splits": sum(unevenness(run.worker_connections) <= 1 for run in healthz),
                "most_lopsided": max((run.worker_connections for run in healthz), key=unevenness),
                "limit_rps_median": loads.median([run.rps for run in limit]),
                "errors": sum(run.non_2xx + run.socket_errors for run in healthz + limit),
            }
            values["healthz_vs_limit"] = values["rps_median"] / values["limit_rps_median"]
            summary[setup.name]["connections"][connections] = values
            table.append(
                [
                    setup.name,
                    str(connections),
                    spread(rps),
                    f"{values['slowest_vs_fastest']:.2f}",
                    fmt_ms(values["p99_median_ms"]),
                    f"{values['busiest_share_median']:.0%}, {values['busiest_share_max']:.0%}",
                    f"{values['even_splits']} of {len(healthz)}, {'/'.join(map(str, values['most_lopsided']))}",
                    f"{values['limit_rps_median']:,.0f}",
                    f"{values['healthz_vs_limit']:.2f}",
                    str(values["errors"]),
                ]
            )
    report.tables[
        "balance (runs back to back; busiest worker: 50% is an even split; connections: keep-alive ones only, "
        "without keep-alive they come and go too fast to count)"
    ] = table

    idle_table = [
        [
            "serving",
            "idle clients answered (15 s)",
            "connections still open",
            "new clients answered (5 s)",
            "new client `/livez` (median / max)",
        ]
    ]
    for setup in setups:
        found = idle[setup.name]
        idle_table.append(
            [
                setup.name,
                f"{found['idle_answered']} of {profile.idle_connections}",
                f"{found['held_open']} of {profile.idle_connections}",
                f"{found['answered']} of {found['count']}",
                f"{fmt_ms(found['p50_ms'])} / {fmt_ms(found['max_ms'])}" if found["answered"] else "-",
            ]
        )
    report.tables[f"new clients beside {profile.idle_connections} idle keep-alive connections"] = idle_table
    report.data["balance"] = {
        "profile": asdict(profile),
        "setups": {setup.name: {"about": setup.about, "args": list(setup.args)} for setup in setups},
        "runs": {
            name: {c: [{path: asdict(run) for path, run in pair.items()} for pair in pairs] for c, pairs in by.items()}
            for name, by in runs.items()
        },
        "summary": summary,
        "idle": idle,
    }

    for setup in (CHOSEN, BEFORE):
        at = summary[setup.name]["connections"].get(TARGET_CONNECTIONS)
        if at is None:
            continue
        verdict = setup is CHOSEN or None
        report.add(
            "balance",
            f"{setup.name}: at {TARGET_CONNECTIONS} connections, slowest run >= {TARGET_SLOWEST_VS_FASTEST} x fastest",
            f"{at['slowest_vs_fastest']:.2f} x ({spread(rps_at(runs[setup.name]))} req/s)",
            at["slowest_vs_fastest"] >= TARGET_SLOWEST_VS_FASTEST if verdict else None,
        )
        report.add(
            "balance",
            f"{setup.name}: median `/healthz` >= {TARGET_MEDIAN_VS_LIMIT} x the limit view served the same way",
            f"{at['healthz_vs_limit']:.2f} x ({at['rps_median']:,.0f} vs {at['limit_rps_median']:,.0f} req/s)",
            at["healthz_vs_limit"] >= TARGET_MEDIAN_VS_LIMIT if verdict else None,
        )
    chosen_idle = idle[CHOSEN.name]
    report.add(
        "balance",
        f"new client's `/livez` beside {profile.idle_connections} idle keep-alive connections "
        f"<= {TARGET_NEW_CLIENT_MS:g} ms",
        f"max {fmt_ms(chosen_idle['max_ms'])}, {chosen_idle['answered']} of {chosen_idle['count']} answered "
        f"({chosen_idle['held_open']} idle connections held open; statuses {chosen_idle['statuses']})",
        all_answered_within(chosen_idle, TARGET_NEW_CLIENT_MS),
    )
    errors = sum(values["errors"] for s in summary.values() for values in s["connections"].values())
    report.add("balance", "every answer 200, no socket errors", f"{errors} other", errors == 0)


# --- probe-port and slow-clients -----------------------------------------------------------------


def plain_http_env(**overrides: str) -> dict[str, str]:
    """Production settings, plain HTTP: a login POST reaches the form (and reads its body)
    instead of being redirected to HTTPS first."""
    return {**app_env(BENCH_DB_URL, SHARED_REDIS_URL), "DJANGO_SECURE_SSL_REDIRECT": "false", **overrides}


def timed_probes(port: int, path: str, count: int, timeout: float = 5.0) -> dict[str, Any]:
    """``count`` GETs, each on a fresh connection, one after the other; a timeout counts as unanswered."""
    times, statuses, unanswered = [], [], 0
    for _ in range(count):
        try:
            reply = loads.timed_get(port, path, timeout=timeout)
        except OSError:
            unanswered += 1
            continue
        times.append(reply.seconds * 1000)
        statuses.append(reply.status)
    return {
        "count": count,
        "answered": len(times),
        "unanswered": unanswered,
        "statuses": sorted(set(statuses)),
        "times_ms": times,
        "p50_ms": loads.median(times),
        "max_ms": max(times, default=float("inf")),
    }


def all_answered_within(found: dict[str, Any], limit_ms: float) -> bool:
    """Every one of ``timed_probes``' requests answered 200, none slower than ``limit_ms``."""
    return found["answered"] == found["count"] and found["statuses"] == [200] and found["max_ms"] <= limit_ms


def answered_within(port: int, path: str, seconds: float) -> bool:
    try:
        loads.timed_get(port, path, timeout=seconds)
    except OSError:
        return False
    return True


def section_probe_port(profile: ServingProfile, report: Report) -> None:
    threads = int(WEB_CONCURRENCY) * THREADS
    say(
        f"\n== probe-port: {profile.slow_uploads} trickling uploads hold the {threads} request threads; "
        f"/livez x{profile.probe_samples} and /readyz x{profile.readyz_samples} on PROBE_PORT meanwhile"
    )
    probe_port = free_port()
    with gunicorn(plain_http_env(PROBE_PORT=str(probe_port))) as server:
        server.wait_for_workers(int(WEB_CONCURRENCY))
        quiet = timed_probes(probe_port, LIVEZ_PATH, profile.probe_samples)
        with TricklingUploads(server.port, "/admin/login/", profile.slow_uploads):
            time.sleep(1.0)  # every upload's headers in, every thread reading a body
            saturated_before = not answered_within(server.port, LIVEZ_PATH, 1.0)
            livez = timed_probes(probe_port, LIVEZ_PATH, profile.probe_samples)
            readyz = timed_probes(probe_port, "/" + "readyz", profile.readyz_samples)
            saturated_after = not answered_within(server.port, LIVEZ_PATH, 1.0)
    saturated = saturated_before and saturated_after
    say(
        f"  main port saturated: {saturated}; PROBE_PORT /livez max {fmt_ms(livez['max_ms'])} "
        f"(quiet: {fmt_ms(quiet['max_ms'])}), /readyz max {fmt_ms(readyz['max_ms'])}"
    )
    report.data["probe_port"] = {"saturated": saturated, "quiet_livez": quiet, "livez": livez, "readyz": readyz}
    report.tables["probe port while every request thread is held"] = [
        ["probe", "answered", "median", "max", "statuses"],
        *[
            [
                label,
                f"{found['answered']} of {found['count']}",
                fmt_ms(found["p50_ms"]),
                fmt_ms(found["max_ms"]),
                "/".join(map(str, found["statuses"])),
            ]
            for label, found in (
                ("`/livez` on PROBE_PORT, quiet", quiet),
                ("`/livez` on PROBE_PORT, saturated", livez),
                ("`/readyz` on PROBE_PORT, saturated", readyz),
            )
        ],
    ]
    report.add(
        "probe-port",
        "every request thread held (main port `/livez`: no answer within 1 s)",
        f"{'yes' if saturated else 'no'}, with {profile.slow_uploads} trickling uploads",
        saturated,
    )
    report.add(
        "probe-port",
        f"`/livez` on PROBE_PORT <= {TARGET_PROBE_LIVEZ_MS:g} ms while saturated",
        f"max {fmt_ms(livez['max_ms'])}, median {fmt_ms(livez['p50_ms'])} over {livez['count']} "
        f"({livez['answered']} answered, statuses {livez['statuses']})",
        all_answered_within(livez, TARGET_PROBE_LIVEZ_MS),
    )
    report.add(
        "probe-port",
        f"`/readyz` on PROBE_PORT within its deadline ({TARGET_PROBE_READYZ_MS:g} ms) while saturated",
        f"max {fmt_ms(readyz['max_ms'])} over {readyz['count']} (statuses {readyz['statuses']})",
        all_answered_within(readyz, TARGET_PROBE_READYZ_MS),
    )


@contextlib.contextmanager
def slow_clients(port: int, profile: ServingProfile) -> Iterator[None]:
    """Trickling logins plus silent connections reopened every 4.5 s, against ``port``."""
    with (
        TricklingUploads(port, "/admin/login/", profile.slow_uploads),
        SilentConnections(port, profile.silent_connections, reopen=4.5),
    ):
        time.sleep(1.0)
        yield


def section_slow_clients(profile: ServingProfile, report: Report) -> None:
    say(
        f"\n== slow-clients: {profile.slow_uploads} trickling uploads and {profile.silent_connections} silent "
        f"connections; a new client's /livez x{profile.new_clients}, gunicorn alone and through nginx"
    )
    results: dict[str, dict[str, Any]] = {}
    with gunicorn(plain_http_env()) as server:
        server.wait_for_workers(int(WEB_CONCURRENCY))
        nginx_port = free_port()
        proxy = Nginx(nginx_site(server.port, nginx_port), nginx_port).start()
        try:
            for label, port in (("gunicorn alone", server.port), ("through nginx", nginx_port)):
                results[label] = {"quiet": timed_probes(port, LIVEZ_PATH, profile.new_clients, timeout=2)}
                with slow_clients(port, profile):
                    results[label]["attacked"] = timed_probes(port, LIVEZ_PATH, profile.new_clients, timeout=2)
                found = results[label]["attacked"]
                say(f"  {label:15} {found['answered']} of {found['count']} answered, max {fmt_ms(found['max_ms'])}")
        finally:
            proxy.destroy()
    report.data["slow_clients"] = results
    report.tables["a new client's `/livez` under slow and silent clients (2 s timeout)"] = [
        ["path", "quiet: answered, median / max", "under attack: answered", "median / max"],
        *[
            [
                label,
                f"{found['quiet']['answered']} of {found['quiet']['count']}, "
                f"{fmt_ms(found['quiet']['p50_ms'])} / {fmt_ms(found['quiet']['max_ms'])}",
                f"{found['attacked']['answered']} of {found['attacked']['count']}",
                f"{fmt_ms(found['attacked']['p50_ms'])} / {fmt_ms(found['attacked']['max_ms'])}"
                if found["attacked"]["answered"]
                else "-",
            ]
            for label, found in results.items()
        ],
    ]
    alone, proxied = results["gunicorn alone"]["attacked"], results["through nginx"]["attacked"]
    report.add(
        "slow-clients",
        "gunicorn alone (context: why nginx is required)",
        f"{alone['answered']} of {alone['count']} answered within 2 s",
        None,
    )
    report.add(
        "slow-clients",
        f"through nginx, every `/livez` answered, <= {TARGET_THROUGH_NGINX_MS:g} ms",
        f"{proxied['answered']} of {proxied['count']}, max {fmt_ms(proxied['max_ms'])}",
        all_answered_within(proxied, TARGET_THROUGH_NGINX_MS),
    )
