"""``manage.py ensure_database``: create the configured PostgreSQL database if it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

from apps.common.errors import categorize


class Command(BaseCommand):
    help = "Create the configured database if it does not exist yet (PostgreSQL); SQLite needs nothing."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        name = str(connection.settings_dict["NAME"])
        if connection.vendor != "postgresql":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            self.stdout.write(f"SQLite database at {name}: created on first migrate.")
            return
        # Exactly the parameters Django connects with (host, port, user, password and every
        # OPTIONS key the URL carries: sslmode, options, ...), pointed at the maintenance
        # database, because the application's may not exist yet.
        params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
        try:
            with psycopg.connect(**params) as maintenance:
                exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if exists:
                    self.stdout.write(f"Database {name!r} exists.")
                    return
                maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise CommandError(
                f"could not create database {name!r} ({categorize(exc)}): {str(exc).strip().splitlines()[0]}",
                returncode=1,
            ) from None
        self.stdout.write(self.style.SUCCESS(f"Created database {name!r}."))
