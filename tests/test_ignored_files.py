"""Env files hold secrets: git never tracks them, whatever they are called (the README once showed
`docker run --env-file production.env`). The image's build context is checked by
tests/test_docker.py, which plants the same files in a real build and looks for them in the image."""

from __future__ import annotations

import subprocess

import pytest

from harness.project import ROOT

ENV_FILES = ["production.env", ".env", ".env.production", ".env.local", "deploy/staging.env", "deploy/.env"]
KEPT = [".env.example", "manage.py", "config/env.py", "docs/configuration.md"]

pytestmark = pytest.mark.slow  # git runs as a real process


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
