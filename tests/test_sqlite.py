"""SQLite as the embedded alternative: the same health behaviour without PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.project import Server, project_env, run_manage

pytestmark = pytest.mark.slow  # every test here starts real processes


def test_sqlite_database_migrates_and_is_healthy(tmp_path: Path) -> None:
    env = project_env(DATABASE_URL=f"sqlite:///{tmp_path}/app.sqlite3")
    migrated = run_manage("migrate", "--no-input", "-v0", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "app.sqlite3").exists()

    result = run_manage("check_services", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["db"] == "ok"

    with Server(env) as server:
        response = server.get("/healthz")
        assert response.status == 200
        assert json.loads(response.body) == {"status": "ok", "db": "ok", "redis": "ok"}


def test_unusable_sqlite_path_is_reported(tmp_path: Path) -> None:
    env = project_env(DATABASE_URL=f"sqlite:///{tmp_path}/missing-directory/app.sqlite3")
    with Server(env) as server:
        response = server.get("/healthz")
        assert response.status == 503
        assert json.loads(response.body) == {"status": "error", "db": "error", "redis": "ok"}
        assert str(tmp_path) not in response.body.decode()
