"""A newcomer's machine, on this one: the README's commands run as written, nothing shared is touched.

A network namespace of its own holds a PostgreSQL (trust auth, user ``postgres``) on 5432 and a
Redis on 6379, the standard addresses the README assumes; a copy of the project runs ``make
run`` there, serving on 127.0.0.1:8000. Commands run inside the namespace, in the copy, with an
environment that holds none of the project's variables, as a new shell would. The copy shares
this checkout's virtualenv (the namespace has no network, so nothing could be installed there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from harness.processes import wait_until
from harness.project import CONTRACT_VARIABLES, ROOT, project_copy
from harness.servers import PostgresCluster, RedisServer

# What a login shell would have; the project's variables and the test run's own are left out.
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "SHELL", "TMPDIR")


def sandbox_available() -> str | None:
    """Why no sandbox can run here, or ``None``: it needs root and ``ip netns``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


class Sandbox:
    def __init__(self) -> None:
        self.name = f"docs-{uuid.uuid4().hex[:8]}"
        self.wrapper = ["ip", "netns", "exec", self.name]
        self.directory = Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.project = self.directory / "project"
        self.server_log = self.directory / "make-run.log"
        self.redis: RedisServer | None = None
        self.postgres: PostgresCluster | None = None
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        kept = {key: value for key, value in os.environ.items() if key in _KEPT}
        assert not set(kept) & set(CONTRACT_VARIABLES)
        return kept

    def __enter__(self) -> Sandbox:
        try:
            project_copy(self.project)
            (self.project / ".venv").symlink_to(ROOT / ".venv")
            subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, timeout=30)
            self.run("ip link set lo up", check=True)
            self.redis = RedisServer(port=6379, wrapper=self.wrapper).start()
            self.postgres = PostgresCluster(port=5432, wrapper=self.wrapper).start()
            self.start_server()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()
        if self.postgres is not None:
            self.postgres.destroy()
        if self.redis is not None:
            self.redis.stop()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)

    def run_steps(self, commands: Sequence[str], timeout: float = 600) -> list[tuple[str, int]]:
        """Each command's output and exit status, all run in one shell (``export`` carries over).

        Marker lines separate the steps; ``$?`` still reads the previous command's status.
        """
        token = uuid.uuid4().hex
        script = [f"printf '@@{token} 0@@\\n'"]
        for index, command in enumerate(commands):
            script.append(command)
            script.append(f"__rc=$?; printf '\\n@@{token} end %s@@\\n@@{token} {index + 1}@@\\n' $__rc; (exit $__rc)")
        output = self.run("\n".join(script), timeout=timeout).stdout
        results = []
        for index in range(len(commands)):
            chunk = output.split(f"@@{token} {index}@@\n", 1)[1]
            text, rest = chunk.split(f"\n@@{token} end ", 1)
            results.append((text.rstrip("\n"), int(rest.split("@@", 1)[0])))
        return results

    def run(self, command: str, *, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``command`` in bash, in the namespace and the project copy; stdout and stderr together."""
        result = subprocess.run(
            [*self.wrapper, "bash", "-c", command],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} exited {result.returncode}:\n{result.stdout}")
        return result

    def spawn(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """``command`` in the background (its own process group), output to ``log``."""
        with log.open("ab") as output:
            return subprocess.Popen(
                [*self.wrapper, "bash", "-c", command],
                cwd=self.project,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def answers(self, url: str = "http://127.0.0.1:8000/healthz") -> bool:
        return self.run(f"curl -fsS -o /dev/null --max-time 5 {url}", timeout=30).returncode == 0

    def start_server(self) -> None:
        """``make run``, as the README says, until /healthz answers (the first time also installs, migrates)."""
        self.server = self.spawn("make run", self.server_log)
        server = self.server

        def up() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"make run exited {server.returncode}:\n{self.server_log.read_text()}")
            return self.answers()

        wait_until(up, 180, "make run to serve /healthz", interval=0.25)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Ctrl-C, as a person would (to the whole process group: make's trap stops the worker too)."""
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_server(self) -> None:
        if self.server is not None:
            self.stop(self.server)

    def restart_server(self) -> None:
        self.stop_server()
        self.start_server()
