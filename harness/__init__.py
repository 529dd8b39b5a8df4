"""Real processes and misbehaving servers, for the tests and the benchmarks: no mocks, only things that run.

- ``harness.processes``: free ports, polling for a condition, a process's children, threads
  and connections, JSON log lines.
- ``harness.servers``: throwaway redis-server and PostgreSQL clusters, a TCP black hole, a
  proxy that answers late.
- ``harness.project``: this project's own processes (``manage.py``, gunicorn, runserver) with
  a valid environment.
- ``harness.fleet``: several replicas behind the ordinary tools (PgBouncer, HAProxy), and rq
  workers.
- ``harness.load``: steady HTTP load on keep-alive connections, every answer recorded.

Nothing here is part of the service: it is not in the image and never imported by ``apps`` or
``config``.
"""
