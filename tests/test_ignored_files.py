"""Env files hold secrets: git never tracks them and the image's build context never carries them,
whatever they are called (the README's own `docker run --env-file production.env`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.project import ROOT

ENV_FILES = ["production.env", ".env", ".env.production", ".env.local", "deploy/staging.env", "deploy/.env"]
KEPT = [".env.example", "manage.py", "config/env.py", "docs/configuration.md"]

pytestmark = pytest.mark.slow  # git and docker run as real processes


def _ignored_by_git(path: str) -> bool:
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", path], cwd=ROOT, capture_output=True, timeout=30
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.parametrize("path", ENV_FILES)
def test_git_ignores_every_env_file(path: str) -> None:
    assert _ignored_by_git(path)


@pytest.mark.parametrize("path", KEPT)
def test_git_keeps_the_example_and_the_code(path: str) -> None:
    assert not _ignored_by_git(path)


def _docker_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    answer = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30)
    return docker if answer.returncode == 0 else None


def test_the_build_context_carries_no_env_file(tmp_path: Path) -> None:
    """Docker's own matcher: build a context holding every kind of env file, export what it sent."""
    docker = _docker_engine()
    if docker is None:
        pytest.skip("no Docker engine answers on this machine")
    context, exported = tmp_path / "context", tmp_path / "exported"
    for name in ENV_FILES + KEPT:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text("X=1\n")
    shutil.copy(ROOT / ".dockerignore", context / ".dockerignore")
    result = subprocess.run(
        [docker, "build", "--quiet", "--output", f"type=local,dest={exported}", "-f-", str(context)],
        input=b"FROM scratch\nCOPY . /\n",
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    sent = {str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file()}
    assert sent & set(ENV_FILES) == set()
    assert set(KEPT) <= sent
