"""Real processes and misbehaving servers, for the tests and the benchmarks: no mocks, only things that run.

- ``harness.processes``: free ports, polling for a condition, a process's children, threads
  and connections, JSON log lines.
- ``harness.servers``: throwaway redis-server and PostgreSQL clusters, a TCP black hole, a
  proxy that answers late.
- ``harness.project``: this project's own processes (``manage.py``, gunicorn, runserver) with
  a valid environment.

Nothing here is part of the service: it is not in the image and never imported by ``apps`` or
``config``.
"""
