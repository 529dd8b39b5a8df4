"""The replica's multiprocess directory (``apps.common.multiprocess_metrics``) on its own, in process.

The files are written exactly as prometheus-client writes them in a worker (its ``MmapedDict``
and key format), for pids that are "alive" or "dead" by the caller's say-so; what a scrape would
report is read with prometheus-client's ``MultiProcessCollector``. The same directory under a
real gunicorn is in ``tests/test_metrics_processes.py``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from apps.common import multiprocess_metrics
from tests.support import preserved_environ

HELP = "Requests."
BUCKETS = ("0.1", "1.0", "+Inf")


def write_worker(path: Path, pid: int, requests: float, fast: float, slow: float) -> None:
    """What one worker's prometheus-client leaves: a counter, a histogram and a live gauge."""
    counter = MmapedDict(str(path / f"counter_{pid}.db"))
    counter.write_value(mmap_key("requests", "requests_total", ["route"], ["/a/"], HELP), requests, 0.0)
    counter.close()
    histogram = MmapedDict(str(path / f"histogram_{pid}.db"))
    for bound, count in zip(BUCKETS, (fast, slow, 0.0), strict=True):
        key = mmap_key("latency", "latency_bucket", ["route", "le"], ["/a/", bound], HELP)
        histogram.write_value(key, count, 0.0)
    histogram.write_value(mmap_key("latency", "latency_sum", ["route"], ["/a/"], HELP), fast * 0.05 + slow * 0.5, 0.0)
    histogram.close()
    gauge = MmapedDict(str(path / f"gauge_livemostrecent_{pid}.db"))
    gauge.write_value(mmap_key("up", "up", ["check"], ["db"], HELP), 1.0, 1.0)
    gauge.close()


def reported(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in MultiProcessCollector(None, str(path)).collect()
        for sample in metric.samples
    }


def test_dead_workers_are_folded_into_the_archive_and_nothing_is_lost(tmp_path: Path) -> None:
    write_worker(tmp_path, 101, requests=5, fast=4, slow=1)
    write_worker(tmp_path, 102, requests=7, fast=6, slow=1)
    before = reported(tmp_path)

    multiprocess_metrics.fold(tmp_path, live={102})
    assert reported(tmp_path) == before
    assert sorted(file.name for file in tmp_path.glob("*.db")) == [
        "counter_102.db",
        "counter_archive.db",
        "gauge_livemostrecent_102.db",
        "histogram_102.db",
        "histogram_archive.db",
    ]

    # Many generations of workers later, the totals add up and the directory has not grown.
    for generation in range(103, 123):
        write_worker(tmp_path, generation, requests=1, fast=1, slow=0)
        multiprocess_metrics.fold(tmp_path, live={generation})
    totals = reported(tmp_path)
    assert totals[("requests_total", (("route", "/a/"),))] == 5 + 7 + 20
    assert totals[("latency_count", (("route", "/a/"),))] == 5 + 7 + 20
    assert totals[("latency_bucket", (("le", "0.1"), ("route", "/a/")))] == 4 + 6 + 20
    assert totals[("latency_bucket", (("le", "1.0"), ("route", "/a/")))] == 5 + 7 + 20
    assert len(list(tmp_path.glob("*.db"))) == 5
    assert not list(tmp_path.glob("*.new"))


def test_a_live_workers_files_are_left_alone(tmp_path: Path) -> None:
    write_worker(tmp_path, 201, requests=3, fast=3, slow=0)
    multiprocess_metrics.fold(tmp_path, live={201})
    assert sorted(file.name for file in tmp_path.glob("*.db")) == [
        "counter_201.db",
        "gauge_livemostrecent_201.db",
        "histogram_201.db",
    ]


def test_the_master_folds_only_when_no_scrape_is_reading(tmp_path: Path, monkeypatch) -> None:
    """A scrape holds the shared lock: the fold waits, then gives up and leaves everything for next time."""
    monkeypatch.setattr(multiprocess_metrics, "_prepared", tmp_path)
    monkeypatch.setattr(multiprocess_metrics, "FOLD_WAIT_SECONDS", 0.2)
    write_worker(tmp_path, 301, requests=2, fast=2, slow=0)
    write_worker(tmp_path, 302, requests=2, fast=2, slow=0)
    with multiprocess_metrics.reading(tmp_path):
        assert multiprocess_metrics.worker_exited(301, live=[302]) is False
    # Marked dead at once (its live gauge is gone), folded at the next worker exit.
    assert not (tmp_path / "gauge_livemostrecent_301.db").exists()
    assert (tmp_path / "counter_301.db").exists()
    assert multiprocess_metrics.worker_exited(302, live=[]) is True
    assert sorted(file.name for file in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert reported(tmp_path)[("requests_total", (("route", "/a/"),))] == 4


def test_a_scrape_waits_for_a_fold_in_progress(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def fold_in_progress() -> None:
        with open(tmp_path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            started.set()
            release.wait(5)

    holder = threading.Thread(target=fold_in_progress)
    holder.start()
    started.wait(5)
    waited = threading.Event()

    def scrape() -> None:
        with multiprocess_metrics.reading(tmp_path):
            waited.set()

    reader = threading.Thread(target=scrape)
    reader.start()
    assert not waited.wait(0.1)
    release.set()
    reader.join(5)
    holder.join(5)
    assert waited.is_set()


def test_prepare_names_a_fresh_directory_once_and_remove_takes_it_away(monkeypatch) -> None:
    monkeypatch.setattr(multiprocess_metrics, "_prepared", None)
    with preserved_environ():  # the variable must not outlive the test: subprocesses would inherit it
        os.environ.pop(multiprocess_metrics.ENVIRONMENT_VARIABLE, None)
        path = multiprocess_metrics.prepare()
        try:
            assert path.is_dir()
            assert list(path.iterdir()) == []
            assert multiprocess_metrics.directory() == path
            assert multiprocess_metrics.prepare() == path  # gunicorn re-reads its config on HUP
        finally:
            multiprocess_metrics.remove()
    assert not path.exists()
    assert multiprocess_metrics.ENVIRONMENT_VARIABLE not in os.environ


def test_a_scrape_gives_up_rather_than_read_during_a_fold(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(multiprocess_metrics, "READ_WAIT_SECONDS", 0.1)
    with open(tmp_path / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(multiprocess_metrics.FilesBusy), multiprocess_metrics.reading(tmp_path):
            raise AssertionError("read while a fold held the files")


@pytest.mark.slow  # starts a process, for a pid that has exited
def test_prepare_removes_the_directories_of_masters_that_are_gone(monkeypatch) -> None:
    """A master killed outright never ran on_exit: the next replica's master clears what it left."""
    dead_pid = _exited_pid()
    monkeypatch.setattr(multiprocess_metrics, "_prepared", None)
    with preserved_environ():
        os.environ.pop(multiprocess_metrics.ENVIRONMENT_VARIABLE, None)
        path = multiprocess_metrics.prepare()
        try:
            orphan = path.parent / f"prometheus-{dead_pid}-left"
            alive = path.parent / f"prometheus-{os.getppid()}-alive"
            unrelated = path.parent / "prometheus-notapid"
            for directory in (orphan, alive, unrelated):
                directory.mkdir()
                (directory / "counter_1.db").write_bytes(b"")
            monkeypatch.setattr(multiprocess_metrics, "_prepared", None)  # a new master starts
            fresh = multiprocess_metrics.prepare()
            assert fresh != path
            assert fresh.is_dir()
            assert not orphan.exists()
            assert alive.exists()
            assert unrelated.exists()
            assert path.exists()
        finally:
            for directory in (alive, unrelated, path):
                shutil.rmtree(directory, ignore_errors=True)
            multiprocess_metrics.remove()


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
