"""``make install`` on the Pythons a stranger has: every 3.11 patch level, and a clear refusal otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.project import ROOT

# Installing the lock (about fifty wheels, from the local cache) takes well over the suite's 120 s
# per-test timeout on a loaded two-core machine; the install itself is bounded at 600 s below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]

# Debian 12's own python3.11 is 3.11.2: below 3.11.3, redis needs async-timeout, which a lock
# compiled on a later patch level leaves out unless it is pinned for every 3.11.
DEBIAN_PYTHON = Path("/usr/bin/python3.11")
# Another Python if the machine has one (pyenv's shims count), else a command that is none at all.
NOT_PYTHON_311 = next(
    (found for name in ("python3.12", "python3.13", "python3.10") if (found := shutil.which(name))), "/bin/false"
)


def _make_install(python: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "install", f"PYTHON={python}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="no Debian python3.11 on this machine")
@pytest.mark.timeout(600)  # a whole install (30 s on a quiet machine): as long as _make_install allows
def test_the_lock_installs_on_debians_python_311(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = _make_install(DEBIAN_PYTHON, venv)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys, django, redis, rq, psycopg; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "(3, 11)", probe.stderr


def test_another_python_is_refused_in_one_line(tmp_path: Path) -> None:
    result = _make_install(Path(NOT_PYTHON_311), tmp_path / "venv")
    assert result.returncode == 2
    assert f"make install: needs Python 3.11 (any patch level); '{NOT_PYTHON_311}' is not." in result.stderr
    assert not (tmp_path / "venv").exists()
