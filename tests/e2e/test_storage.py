"""A full database: writes answer 507 (not 500) and /readyz says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import procs

MAX_PAGES = 120  # 4 KiB pages: the schema fits, a few runs with big inputs do not


@pytest.fixture
def small_db(tmp_path: Path) -> Iterator[str]:
    """An orchestrator whose SQLite file may grow to MAX_PAGES pages (the test hook
    DURABLE_TEST_SQLITE_MAX_PAGES: PRAGMA max_page_count on every connection)."""
    orch, base = procs.orchestrator(
        tmp_path, extra_env={"DURABLE_TEST_SQLITE_MAX_PAGES": str(MAX_PAGES)})
    orch.start()
    try:
        yield base
    finally:
        orch.stop()


def test_full_database_answers_507_and_readyz_says_why(small_db: str) -> None:
    headers = {"authorization": f"Bearer {procs.API_KEY}"}
    with httpx.Client(base_url=small_db, headers=headers, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        # events need no app, and are stored: ~100 KB each fill the file
        big = "x" * 100_000
        statuses = []
        for _ in range(20):
            r = http.post("/api/v1/events", json=[{"name": "fill", "data": {"b": big}}])
            statuses.append(r.status_code)
            if r.status_code != 202:
                break
        assert statuses[-1] == 507, (statuses, r.text)
        assert r.json()["error"]["code"] == "storage_full"
        assert "xxxxxxxx" not in r.text and "INSERT" not in r.text  # no data, no SQL
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "storage" in ready.json()["problems"], ready.text
        # reads still work
        assert http.get("/api/v1/runs").status_code == 200


def test_a_database_locked_by_another_process_answers_503(tmp_path: Path) -> None:
    """Another process holding SQLite's write lock past the busy timeout: a write is a 503
    with Retry-After (retry later), not a 500; reads still work (WAL)."""
    import sqlite3

    orch, base = procs.orchestrator(tmp_path)
    orch.start()
    headers = {"authorization": f"Bearer {procs.API_KEY}"}
    locker = sqlite3.connect(tmp_path / "orchestrator.db", isolation_level=None)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            locker.execute("BEGIN IMMEDIATE")  # SQLite's one write lock, held
            r = http.post("/api/v1/events", json=[{"name": "locked", "data": {}}])
            assert r.status_code == 503, r.text
            assert r.headers.get("retry-after"), r.headers
            assert r.json()["error"]["code"] == "database_unavailable", r.text
            assert http.get("/api/v1/runs").status_code == 200
            locker.execute("ROLLBACK")
            r = http.post("/api/v1/events", json=[{"name": "locked", "data": {}}])
            assert r.status_code == 202, r.text
    finally:
        locker.close()
        orch.stop()
