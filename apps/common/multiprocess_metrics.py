"""The replica's directory for prometheus-client's multiprocess mode, kept by gunicorn's master.

With several gunicorn workers, each keeps its counters in memory-mapped files of its own in one
directory, and whichever worker answers a scrape adds up every file: the scrape reports the whole
replica (prometheus-client's multiprocess mode). This module is that directory's lifecycle, called
from ``gunicorn.conf.py``'s hooks in the master:

- ``prepare()`` (``on_starting``): a fresh, empty directory of this replica's own (under
  ``/dev/shm`` when there is one), named in ``PROMETHEUS_MULTIPROC_DIR`` before any worker forks,
  so that every worker's prometheus-client starts in multiprocess mode. Directories that masters
  killed outright left behind (no ``on_exit`` ran) are removed then: their name carries the
  master's pid, and that process is gone.
- ``worker_exited()`` (``child_exit``): the dead worker is marked (``mark_process_dead`` drops its
  live gauges) and the counters and histograms of every worker no longer alive are folded into one
  ``*_archive.db`` file per type, so restarts never make the directory grow while totals keep
  counting. A scrape reads the files under a shared lock and the fold holds it exclusively, so no
  scrape sees a count twice or not at all: a scrape that cannot get the lock in time fails
  (``FilesBusy``) rather than report a count twice, which Prometheus would take for a reset.
- ``remove()`` (``on_exit``): the directory goes with the replica.

prometheus-client is imported only inside these functions: it picks its mode once, at import, and
the master must not pick "one process" before it has named the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import structlog

logger = structlog.get_logger(__name__)

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"  # stands where a worker's pid would in a folded file's name
_LOCK = ".lock"
_ADDITIVE = ("counter", "histogram", "summary")
# How long the master waits for scrapes in progress before it folds the files (it retries at the
# next worker exit), and how long a scrape waits for a fold in progress.
FOLD_WAIT_SECONDS = 1.0
READ_WAIT_SECONDS = 1.0

_PREFIX = "prometheus-"

_prepared: Path | None = None


class FilesBusy(Exception):
    """A fold held the files for longer than a scrape waits: this scrape has no consistent reading."""


def prepare() -> Path:
    """This replica's fresh, empty directory, named in the environment its workers will inherit.

    Called again (gunicorn re-reads its configuration on ``HUP``), it keeps the same directory.
    """
    global _prepared
    if _prepared is None or not _prepared.is_dir():
        shm = Path("/dev/shm")  # noqa: S108 - tmpfs: the workers write these files on every request
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        _prepared = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))
        _remove_orphans(_prepared.parent)
    os.environ[ENVIRONMENT_VARIABLE] = str(_prepared)
    return _prepared


def directory() -> Path | None:
    """The directory this process's metrics live in, or ``None`` (one process: metrics in memory)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    return Path(value) if value else None


def remove() -> None:
    """The replica stops: its directory goes."""
    global _prepared
    if _prepared is not None:
        shutil.rmtree(_prepared, ignore_errors=True)
        _prepared = None


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Hold off a fold while the files are read (a scrape); ``FilesBusy`` after ``READ_WAIT_SECONDS``."""
    with _locked(path, fcntl.LOCK_SH, READ_WAIT_SECONDS) as locked:
        if not locked:
            raise FilesBusy(f"the metrics files stayed locked for {READ_WAIT_SECONDS} s")
        yield


def _remove_orphans(base: Path) -> None:
    """Remove the directories of masters that are gone (killed before ``on_exit``)."""
    for candidate in base.glob(f"{_PREFIX}*-*"):
        owner = candidate.name.removeprefix(_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or not candidate.is_dir():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
            logger.info("metrics_orphan_directory_removed", directory=str(candidate))
        except PermissionError:
            continue  # alive, another user's


def worker_exited(pid: int, live: Collection[int]) -> bool:
    """In the master, once worker ``pid`` has exited; ``live``: the workers still running.

    Whether the dead workers' files were folded (``False``: scrapes kept the lock; next time).
    """
    if _prepared is None:
        return False
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, str(_prepared))
        with _locked(_prepared, fcntl.LOCK_EX, FOLD_WAIT_SECONDS) as locked:
            if locked:
                fold(_prepared, {int(live_pid) for live_pid in live})
    except Exception:  # the master must go on supervising workers whatever the files do
        logger.exception("metrics_files_not_folded", pid=pid)
        return False
    if not locked:
        logger.info("metrics_files_fold_postponed", pid=pid, reason="scrapes held the lock")
    return locked


def fold(path: Path, live: Collection[int]) -> None:
    """Fold the files of every process not in ``live`` into the archive files, then delete them.

    Counters, histograms and summaries add up into ``<type>_archive.db``; a dead process's gauges
    are dropped (this project's gauges are all ``live*`` modes: they describe live workers only).
    """
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    dead: dict[str, list[Path]] = {}
    for file in path.glob("*.db"):
        kind, _, owner = file.stem.rpartition("_")
        if owner.isdigit() and int(owner) not in live:
            dead.setdefault(kind, []).append(file)
    for kind, files in dead.items():
        if kind in _ADDITIVE:
            archive = path / f"{kind}_{ARCHIVE}.db"
            sources = [str(file) for file in ([archive] if archive.exists() else []) + files]
            # Not *.db: a scrape never globs a half-written file (and none runs meanwhile anyway).
            written = path / f"{kind}_{ARCHIVE}.new"
            written.unlink(missing_ok=True)
            folded = MmapedDict(str(written))
            try:
                for metric in MultiProcessCollector.merge(sources, accumulate=False):
                    for sample in metric.samples:
                        labels: dict[str, Any] = sample.labels
                        entry = mmap_key(
                            metric.name, sample.name, list(labels), list(labels.values()), metric.documentation
                        )
                        folded.write_value(entry, sample.value, 0.0)
            finally:
                folded.close()
            os.replace(written, archive)
        for file in files:
            file.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path, operation: int, wait: float) -> Iterator[bool]:
    """``flock`` on the directory's lock file, polling for at most ``wait`` seconds; yields whether it holds it."""
    with open(path / _LOCK, "a+b") as lock:
        give_up_at = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= give_up_at:
                    yield False
                    return
                time.sleep(0.005)
                continue
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return
