"""bench/sleepers.py: its options, the database files it sizes, its bulk requests."""

from __future__ import annotations

from pathlib import Path

from bench.sleepers import batches, options, sqlite_files


def test_runs_come_from_the_flag_else_the_environment_and_the_rest_is_passed_on() -> None:
    assert options(["--repeat", "9"], {}) == (1_000_000, 4, ["--repeat", "9"])
    assert options([], {"BENCH_SLEEP_RUNS": "2000"})[0] == 2000
    assert options(["--runs", "300", "--pg", "--concurrency", "2"],
                   {"BENCH_SLEEP_RUNS": "2000"}) == (300, 2, ["--pg"])


def test_the_sqlite_files_are_read_from_the_orchestrators_command_line() -> None:
    cmd = ["python", "-m", "orchestrator", "dev", "--port", "1",
           "--database-url", "sqlite:////tmp/b/orchestrator.db", "--log-level", "warning"]
    assert sqlite_files(cmd) == [Path("/tmp/b/orchestrator.db"),
                                 Path("/tmp/b/orchestrator.db-wal"),
                                 Path("/tmp/b/orchestrator.db-shm")]
    assert sqlite_files(["x", "--database-url", "postgresql://h/db"]) == []
    assert sqlite_files(["x", "--database-url"]) == []


def test_bulk_requests_cover_every_run_once_at_most_a_thousand_each() -> None:
    parts = batches(2500)
    assert [len(r) for r in parts] == [1000, 1000, 500]
    assert [i for r in parts for i in r] == list(range(2500))
    assert batches(0) == []
