"""``manage.py ensure_database``: creates the configured database, with Django's own connection settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from harness.processes import free_port
from harness.project import DATABASE_URL, project_env, run_manage

pytestmark = pytest.mark.slow  # every test here starts real processes

SERVER = urlsplit(DATABASE_URL)._replace(path="", query="").geturl()


def _exists(name: str) -> bool:
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def database_name() -> Iterator[str]:
    name = f"ensure_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(psycopg.sql.Identifier(name)))


def test_creates_a_missing_database_once(database_name: str) -> None:
    env = project_env(DATABASE_URL=f"{SERVER}/{database_name}")
    first = run_manage("ensure_database", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"Created database {database_name!r}."
    assert _exists(database_name)
    again = run_manage("ensure_database", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"Database {database_name!r} exists."


def test_connects_with_the_options_the_url_carries(database_name: str) -> None:
    """``?sslmode=require`` against a server without TLS: the app could never connect, so neither may this."""
    result = run_manage("ensure_database", env=project_env(DATABASE_URL=f"{SERVER}/{database_name}?sslmode=require"))
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"CommandError: could not create database {database_name!r}")
    )
    assert "SSL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not _exists(database_name)


def test_a_server_that_is_down_is_one_line() -> None:
    result = run_manage(
        "ensure_database", env=project_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/app")
    )
    assert result.returncode == 1
    assert "(refused)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sqlite_needs_only_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "db.sqlite3"
    result = run_manage("ensure_database", env=project_env(DATABASE_URL=f"sqlite:///{target}"))
    assert result.returncode == 0, result.stderr
    assert target.parent.is_dir()
