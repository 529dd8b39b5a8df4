"""Headless Chromium for the tests, driven through chromedriver's W3C WebDriver HTTP API.

The standard library is enough: chromedriver is a small HTTP server that speaks JSON. Debian's
``chromium`` and ``chromium-driver`` packages provide both binaries; nothing is downloaded.
The browser's console (``console()``) is what the CSP test reads.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from typing import Any

from harness.processes import free_port, wait_until

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# The flags of a quiet, throwaway browser: no sandbox (root in a container), no network of its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing() -> str | None:
    """Why no browser can run here, or ``None``."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "headless Chromium is not installed (apt-get install chromium chromium-driver)"
    return None


class Browser:
    """One browser session: ``with Browser() as browser: browser.get(url) ...``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.process: subprocess.Popen[bytes] | None = None
        self.session = ""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
                return json.loads(reply.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read().decode(errors='replace')}") from None

    def _answers(self) -> bool:
        try:
            return bool(self._call("GET", "/status").get("ready"))
        except OSError:
            return False

    def start(self) -> Browser:
        assert CHROMIUM is not None, missing()
        assert CHROMEDRIVER is not None, missing()
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, 30, "chromedriver to answer")
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={self.profile}"]}
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]
        return self

    def _session(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def source(self) -> str:
        return str(self._session("GET", "/source"))

    def _element(self, css: str) -> str:
        found = self._session("POST", "/element", {"using": "css selector", "value": css})
        return str(next(iter(found.values())))

    def count(self, css: str) -> int:
        return len(self._session("POST", "/elements", {"using": "css selector", "value": css}))

    def type(self, css: str, text: str) -> None:
        self._session("POST", f"/element/{self._element(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._session("POST", f"/element/{self._element(css)}/click", {})

    def execute(self, script: str) -> Any:
        return self._session("POST", "/execute/sync", {"script": script, "args": []})

    def console(self) -> list[str]:
        """The console messages since the last call (CSP violations among them)."""
        return [str(entry["message"]) for entry in self._session("POST", "/se/log", {"type": "browser"})]

    def stop(self) -> None:
        if self.session:
            with contextlib.suppress(OSError, AssertionError):
                self._call("DELETE", f"/session/{self.session}")
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
