"""A real Prometheus (Debian's ``prometheus`` package) scraping this project's servers, on free ports.

The configuration is written as JSON, which is YAML too, into a temporary directory with the
storage; ``query()`` asks the HTTP API (``/api/v1/query``) and returns the result vector.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.processes import free_port, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def prometheus_available() -> bool:
    return Path(PROMETHEUS).is_file()


@dataclass(frozen=True)
class Target:
    """One scrape job: ``/metrics`` of ``127.0.0.1:<port>`` with the Bearer ``token``."""

    job: str
    port: int
    token: str
    interval: str = "1s"
    timeout: str = "1s"


class Prometheus:
    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configuration(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": target.job,
                    "scrape_interval": target.interval,
                    "scrape_timeout": target.timeout,
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials": target.token},
                    "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}],
                }
                for target in self.targets
            ],
        }

    def start(self) -> Prometheus:
        config = self.directory / "prometheus.yml"
        config.write_text(json.dumps(self.configuration(), indent=2))
        self.log = open(self.directory / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 60, "Prometheus to be ready", interval=0.2)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.output()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as reply:  # noqa: S310 - our own server
                return bool(reply.status == 200)
        except OSError:
            return False

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector ``expression`` evaluates to now."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - our own server
            answer = json.loads(reply.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expression: str) -> float | None:
        """The single value of ``expression`` now, or ``None`` when it has none (yet)."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def output(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
