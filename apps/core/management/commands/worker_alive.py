"""``manage.py worker_alive``: is an rq worker on this host still sending heartbeats? (liveness)

rq keeps each worker's registration under its own key and extends that key's expiry with every
heartbeat (idle: every ``worker-ttl`` - 15 s; busy: while it watches its job). A worker that
hangs stops heartbeating, and its key expires ``worker-ttl`` + 60 s after the last one. So
"alive" is: among the registered workers, one on this host (a pod's hostname is its name) still
has its key. A container orchestrator's liveness probe runs this inside the worker's container.

Exit 0 when alive, and also when Redis itself cannot be reached: restarting workers does not
bring Redis back (rq reconnects by itself once it is), so a Redis outage must not restart them.
Exit 1 when Redis answers and no live registration is this host's.
"""

from __future__ import annotations

import socket
from argparse import ArgumentParser
from typing import Any

import django_rq
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import worker_registration

NOT_ALIVE = 1


class Command(BaseCommand):
    help = "Exit 0 if an rq worker on this host has a live registration (its heartbeat), 1 if not."
    # A liveness probe: it must answer even when the project is half broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--queue", default="default", help="The queue whose Redis holds the registrations.")

    def handle(self, *args: Any, **options: Any) -> None:
        host = socket.gethostname()
        connection = django_rq.get_connection(options["queue"])
        try:
            keys = sorted(worker_registration.get_keys(connection=connection))
            with connection.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "hostname")
                hosts = pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as error:
            self.stdout.write(f"redis unreachable ({type(error).__name__}): not counted against the worker")
            return
        # A key that expired (no heartbeat for worker-ttl + 60 s) reads as None here.
        mine = [key for key, registered in zip(keys, hosts, strict=True) if _text(registered) == host]
        if not mine:
            raise CommandError(f"no live rq worker registration for host {host}", returncode=NOT_ALIVE)
        self.stdout.write(f"alive: {len(mine)} worker(s) on {host}")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
