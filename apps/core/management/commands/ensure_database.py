"""``manage.py ensure_database``: create the configured PostgreSQL database if it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from apps.health.errors import categorize


class Command(BaseCommand):
    help = "Create the configured database if it does not exist yet (PostgreSQL); SQLite needs nothing."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        database = settings.DATABASES["default"]
        name = str(database["NAME"])
        if database["ENGINE"] != "django.db.backends.postgresql":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            self.stdout.write(f"SQLite database at {name}: created on first migrate.")
            return
        params = {
            key: str(value)
            for key, value in {
                "host": database.get("HOST"),
                "port": database.get("PORT"),
                "user": database.get("USER"),
                "password": database.get("PASSWORD"),
                "connect_timeout": 5,
            }.items()
            if value
        }
        try:
            # Connect to the maintenance database: the application's may not exist yet.
            conninfo = make_conninfo(dbname="postgres", **params)
            with psycopg.connect(conninfo, autocommit=True) as connection:
                exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if exists:
                    self.stdout.write(f"Database {name!r} exists.")
                    return
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise CommandError(
                f"could not create database {name!r} ({categorize(exc)}): {str(exc).strip().splitlines()[0]}",
                returncode=1,
            ) from None
        self.stdout.write(self.style.SUCCESS(f"Created database {name!r}."))
