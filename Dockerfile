# One image for every process of the service: gunicorn (the default command), the rq worker
# (`python manage.py rqworker default`) and one-off commands (`python manage.py migrate`).
#
# Stage 1 builds a virtualenv from the hash-pinned lock; stage 2 carries only that virtualenv
# and the source, collects static files, and runs as an unprivileged user.
#
# No `# syntax=` line on purpose: it makes every build fetch that frontend image from a registry,
# so builds fail offline even with python:3.11-slim present. Docker's built-in frontend builds
# this file; it needs BuildKit (`COPY --chmod`), the default builder since Docker 23 and the only
# one Compose v2 uses.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# --require-hashes: every package, dependencies included, must match the lock's hashes.
# --only-binary: wheels only, so the slim image needs no compiler (all of the lock has wheels).
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/requirements.txt


FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH="/opt/venv/bin:${PATH}"

# A fixed numeric id, so orchestrators can verify "runs as non-root" (runAsNonRoot) from the
# image alone. No home directory: nothing may write outside /tmp and /dev/shm. Not `--system`:
# system ids end at 999, and useradd warns about 10001 there.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-log-init --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint
# Source and collected static files stay owned by root: the app user reads them, never edits them.
COPY . .

# Static files are collected at build time into /app/staticfiles, hashed and compressed by
# whitenoise's manifest storage (DJANGO_DEBUG=false selects it). Settings validate the
# environment on import, so this step gets a complete but throwaway one: nothing here connects
# to the database or Redis, and none of these values exists in the final image's environment.
RUN DJANGO_DEBUG=false \
    DJANGO_SECRET_KEY=build-time-placeholder-only-for-collectstatic-not-a-real-secret \
    DJANGO_ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic-unused.sqlite3 \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    python manage.py collectstatic --noinput

USER 10001:10001

EXPOSE 8000
# The project itself answers: the slim image has no curl. /livez means "this process serves";
# compose and orchestrators add their own readiness probe on /healthz or /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "config.healthcheck", "/livez"]

ENTRYPOINT ["docker-entrypoint"]
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
