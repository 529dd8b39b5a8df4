# The map of daily tasks. Everything runs from a fresh clone: targets that need the
# virtualenv depend on `install`, which builds .venv once and again only when a lock changes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
INSTALLED := $(VENV)/.installed
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
# A short worker TTL: a killed worker's registration expires 90 s (TTL + 60) after its last heartbeat.
WORKER_ARGS := default --worker-ttl 30
COMPOSE ?= docker compose
# The oldest Docker Compose the compose files were run on end to end (docs/docker.md).
COMPOSE_MIN_VERSION ?= 2.26
# down, logs and ps create nothing, yet Compose interpolates every file first, and the production
# override requires DJANGO_SECRET_KEY: a placeholder lets them run without the secret.
COMPOSE_WITHOUT_SECRET = DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-not-needed-by-down-logs-or-ps}" $(COMPOSE)

.PHONY: help install run test test-fast test-docker lint fmt migrate worker lock shell superuser serve failed-jobs check compose-check up down logs ps docs bench clean checkov k8s

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(INSTALLED) ## Create .venv and install the locked dependencies and dev tools

$(INSTALLED): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
	  || { echo "make install: needs Python 3.11 (any patch level); '$(PYTHON)' is not. Try: make install PYTHON=/path/to/python3.11" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
	  || { echo "make install: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3.11-venv)" >&2; exit 2; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	@touch $@

.env:
	cp .env.example .env
	@echo "Created .env from .env.example; edit it to taste."

run: install .env ## Create the database if needed, migrate, run the web server and one worker
	$(MANAGE) ensure_database
	$(MANAGE) migrate --no-input
	@port=$$($(BIN)/python -c 'from config import env; print(env.load_project_config().port)') || exit 2; \
	$(MANAGE) rqworker $(WORKER_ARGS) & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(MANAGE) runserver 127.0.0.1:$$port

test: install ## Run the whole test suite (needs PostgreSQL and Redis on 127.0.0.1)
	$(BIN)/pytest

test-fast: install ## The in-process tests only (no subprocesses, no servers): the inner loop
	$(BIN)/pytest -m "not slow"

test-docker: install ## Build, start and probe the compose stack end to end (needs a Docker engine)
	$(BIN)/pytest -m docker

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

fmt: install ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install .env ## Create the database if needed and apply migrations
	$(MANAGE) ensure_database
	$(MANAGE) migrate --no-input

worker: install .env ## Run one rq worker on the default queue
	$(MANAGE) rqworker $(WORKER_ARGS)

shell: install .env ## Django shell
	$(MANAGE) shell

superuser: install .env ## Create an admin account (asks for a name and a password)
	$(MANAGE) createsuperuser

serve: install .env ## gunicorn exactly as in production (DEBUG off), after collectstatic
	DJANGO_DEBUG=false $(MANAGE) collectstatic --noinput -v0
	DJANGO_DEBUG=false $(BIN)/gunicorn

failed-jobs: install .env ## List the default queue's failed jobs (manage.py failed_jobs --help for more)
	$(MANAGE) failed_jobs

check: install .env ## Check the services the app depends on
	$(MANAGE) check_services

lock: install ## Recompile requirements.txt and requirements-dev.txt from the .in files
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

compose-check: ## Check that Docker Compose is new enough for the compose files
	@version=$$($(COMPOSE) version --short 2>/dev/null | sed 's/^v//'); \
	if [[ -z "$$version" ]]; then \
	  echo "'$(COMPOSE) version' gave no answer: install Docker Compose $(COMPOSE_MIN_VERSION) or later" >&2; exit 1; \
	elif [[ "$$(printf '%s\n' "$(COMPOSE_MIN_VERSION)" "$$version" | sort -V | head -n 1)" != "$(COMPOSE_MIN_VERSION)" ]]; then \
	  echo "Docker Compose $$version is too old: the compose files need $(COMPOSE_MIN_VERSION) or later" >&2; exit 1; \
	fi

up: compose-check ## Build the image, start the compose stack detached, wait until it is healthy
	$(COMPOSE) up --build --detach --wait || { echo "Not healthy: 'make ps' and 'make logs' show why." >&2; exit 1; }
	@echo "Up and healthy: http://$$($(COMPOSE) port web 8000)/healthz ('make logs' follows the logs, 'make down' stops)"

down: ## Stop and remove the compose containers (the data in ./data stays)
	$(COMPOSE_WITHOUT_SECRET) down

logs: ## Follow the compose services' logs
	$(COMPOSE_WITHOUT_SECRET) logs -f

ps: ## The compose services and their health
	$(COMPOSE_WITHOUT_SECRET) ps

# checkov pins packaging<24, which the project lock cannot share: its own lock, its own virtualenv.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_VENV)/.installed ## The policy scanner for deploy/k8s, in its own virtualenv (.venv-checkov)

k8s: install checkov ## Render deploy/k8s, validate it (Kubernetes schemas, checkov) and tie it to the code
	$(BIN)/pytest tests/test_k8s.py

docs: install ## Regenerate the generated parts of docs/ (variables table, measured figures)
	$(BIN)/python -m harness.docs

bench: install ## Benchmarks (on demand, never in CI; BENCH_ARGS="--quick --only faults")
	$(BIN)/python bench/healthz.py $(BENCH_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache staticfiles
