"""Run by tests/test_pgbouncer.py in a subprocess: ``QuerySet.iterator()`` under concurrent load.

``python -m tests.pooler_iterate ROWS THREADS CHUNK`` with the project's settings
(``DATABASE_URL`` pointing at PgBouncer). Makes sure ``ROWS`` groups exist, then ``THREADS``
threads each iterate over all of them in chunks of ``CHUNK`` rows while as many others run short
transactions, and prints one JSON line: rows each iterating thread saw, and the errors by SQLSTATE.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter

import django
import psycopg


def main(rows: int, threads: int, chunk: int) -> dict[str, object]:
    django.setup()
    from django.contrib.auth.models import Group
    from django.db import DatabaseError, connection, transaction

    missing = rows - Group.objects.count()
    if missing > 0:
        Group.objects.bulk_create(Group(name=f"pooler-{n}") for n in range(rows - missing, rows))
    connection.close()

    seen: list[int] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()

    def failed(error: Exception) -> None:
        # By type: psycopg's SQLSTATE (34000 is invalid_cursor_name), never the message text.
        # Django wraps most errors; closing a server-side cursor raises psycopg's own.
        cause = error if isinstance(error, psycopg.Error) else error.__cause__
        code = getattr(cause, "sqlstate", None) or type(error).__name__
        with lock:
            errors[code] += 1

    def iterate() -> None:
        count = 0
        try:
            for _ in Group.objects.order_by("id").iterator(chunk_size=chunk):
                count += 1
        except (DatabaseError, psycopg.Error) as error:
            failed(error)
        finally:
            connection.close()
            with lock:
                seen.append(count)

    def short_transactions() -> None:
        try:
            while not done.is_set():
                with transaction.atomic():
                    Group.objects.filter(name__startswith="pooler-1").count()
        except (DatabaseError, psycopg.Error) as error:
            failed(error)
        finally:
            connection.close()

    load = [threading.Thread(target=short_transactions) for _ in range(threads)]
    readers = [threading.Thread(target=iterate) for _ in range(threads)]
    for thread in load + readers:
        thread.start()
    for thread in readers:
        thread.join()
    done.set()
    for thread in load:
        thread.join()
    return {"rows": rows, "seen": sorted(seen), "errors": dict(errors)}


if __name__ == "__main__":
    print(json.dumps(main(*(int(argument) for argument in sys.argv[1:4]))))
