"""``manage.py failed_jobs``: list a queue's failed jobs, or requeue them.

It reaches Redis through the validated settings (django-rq's ``RQ_QUEUES``), never through a URL
typed in a shell: ``rq requeue --url "$REDIS_URL"`` with an unset variable silently talks to
database 0 of a local Redis, where another project's jobs may live.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rq.job import Job

EXIT_USAGE = 2


class Command(BaseCommand):
    help = "List the failed jobs of a queue (default: default), or requeue some or all of them."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--queue", default="default", help="The queue (a name from RQ_QUEUES).")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--requeue", nargs="+", metavar="JOB_ID", help="Requeue these failed jobs.")
        action.add_argument("--requeue-all", action="store_true", help="Requeue every failed job of the queue.")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["queue"]
        if name not in settings.RQ_QUEUES:
            raise CommandError(f"unknown queue {name!r}; choose from {', '.join(settings.RQ_QUEUES)}", returncode=2)
        registry = django_rq.get_queue(name).failed_job_registry
        if options["requeue_all"] or options["requeue"]:
            job_ids: list[str] = registry.get_job_ids() if options["requeue_all"] else options["requeue"]
            unknown = sorted(set(job_ids) - set(registry.get_job_ids()))
            if unknown:
                raise CommandError(f"not failed in {name!r}: {', '.join(unknown)}", returncode=EXIT_USAGE)
            for job_id in job_ids:
                registry.requeue(job_id)
            self.stdout.write(self.style.SUCCESS(f"Requeued {len(job_ids)} job(s) on {name!r}."))
            return
        jobs = Job.fetch_many(registry.get_job_ids(), connection=registry.connection)
        rows = [job for job in jobs if job is not None]
        if not rows:
            self.stdout.write(f"No failed jobs on {name!r}.")
            return
        for job in rows:
            result = job.latest_result()
            reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            ended = job.ended_at.isoformat(timespec="seconds") if job.ended_at else "-"
            self.stdout.write(f"{job.id}  {job.func_name}  {ended}  {reason[0] if reason else ''}")
