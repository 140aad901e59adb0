"""Database outages: the engine survives them, says so in /readyz, and picks up after.

A real PostgreSQL cluster of the test's own is stopped (``pg_ctl stop -m fast``) for a
few seconds while runs sleep, retry and wait, and a schedule and a cron fall due; the
orchestrator keeps running throughout.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack, start_stack
from tests.support import procs
from tests.support.pg import BIN, PgCluster


class PausablePg(PgCluster):
    """A dedicated cluster (not the session's) that can be stopped and started again."""

    def _opts(self) -> str:
        return (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c max_connections=200")

    def pause(self) -> None:
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-o", self._opts(), "-w", "-l",
                  str(self.root / "log"), "start")


@pytest.fixture
def pg_own() -> Iterator[PausablePg]:
    cluster = PausablePg()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_stack(pg_own: PausablePg, tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path, pg_own.create_db())
    try:
        yield s
    finally:
        s.orch.stop()
        s.app.stop()


def _when(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_postgres_outage_is_survived(pg_own: PausablePg, pg_stack: Stack) -> None:
    s = pg_stack
    client = s.client()
    async with s.rest() as rest, httpx.AsyncClient(base_url=s.base, timeout=10) as root:
        assert (await root.get("/readyz")).status_code == 200
        sleepers = [(await client.run_no_wait("sleeper", 3.0)).id for _ in range(3)]
        retrying = (await client.run_no_wait("slow-retry")).id  # retried 3 s later
        timing_out = (await client.run_no_wait("waiter", {"key": "t", "timeout": 3.0})).id
        waiting = (await client.run_no_wait("waiter", {"key": "w"})).id
        r = await rest.post("/schedules", json={"function": "echo", "input": "sched",
                                                "at": _when(3.0)})
        assert r.status_code == 201, r.text
        schedule = r.json()["id"]
        r = await rest.post("/crons", json={"function": "echo", "input": "cron",
                                            "expression": "* * * * * *"})  # every second
        assert r.status_code == 201, r.text
        cron = r.json()["id"]
        await asyncio.sleep(1.0)  # the sleeps and the wait begin; the retry is scheduled
        timed_out = (await client.run_no_wait("run-timeout")).id  # times out in 1 s

        pg_own.pause()
        down_at = time.time()
        try:
            await asyncio.sleep(1.0)
            ready = await root.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert "database" in ready.json()["problems"], ready.text
            write = await rest.post("/runs", json={"function": "echo", "input": 1})
            assert write.status_code == 503, write.text
            assert write.headers.get("retry-after", "").isdigit(), write.headers
            assert write.json()["error"]["code"] == "database_unavailable"
            # everything above fell due by now; keep the database down ~5 s in all
            await asyncio.sleep(max(0.0, down_at + 5.0 - time.time()))
        finally:
            pg_own.resume()
        up_at = time.time()

        deadline = time.monotonic() + 30
        while (await root.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, (await root.get("/readyz")).text
            await asyncio.sleep(0.2)

        for rid in sleepers:
            assert (await client.result(rid, timeout=30))["slept"] >= 3.0
        assert await client.result(retrying, timeout=30) == 1
        assert await client.result(timing_out, timeout=30) == {"event": None}
        run = await client.wait(timed_out, timeout=30)
        assert run["status"] == "timed_out" and run["error"]["type"] == "RunTimeout", run
        await client.send_event("test.go", {"key": "w"})
        assert (await client.result(waiting, timeout=30))["event"]["data"] == {"key": "w"}
        fired = (await rest.get(f"/schedules/{schedule}")).json()
        assert fired["run_id"], fired
        assert await client.result(fired["run_id"], timeout=30) == "sched"
        # the cron fires again after the outage (one fire for the ticks missed, then on)
        cron_runs: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            page = (await rest.get("/runs", params={"function": "echo", "limit": 500})).json()
            cron_runs = [r for r in page["runs"] if r["created_at"] and datetime.fromisoformat(
                str(r["created_at"]).replace("Z", "+00:00")).timestamp() > up_at]
            if len(cron_runs) >= 2:
                break
            await asyncio.sleep(0.3)
        assert len(cron_runs) >= 2, cron_runs
        await rest.delete(f"/crons/{cron}")
    await client.aclose()

    # SIGTERM after the outage: a clean shutdown
    assert s.orch.proc is not None
    s.orch.proc.send_signal(signal.SIGTERM)
    # uvicorn (>= 0.29) re-raises the signal once its shutdown is done: -SIGTERM is its
    # clean exit, as 0 is; a failed lifespan shutdown logs the line checked below
    assert s.orch.proc.wait(20) in (0, -signal.SIGTERM)
    log = s.orch.log()
    assert "Application shutdown failed" not in log, log[-3000:]


def test_readyz_reports_database_down_at_once(pg_own: PausablePg, pg_stack: Stack) -> None:
    """No loop need fail first: the probe itself reaches the database."""
    pg_own.pause()
    try:
        r = httpx.get(f"{pg_stack.base}/readyz", timeout=10)
        assert r.status_code == 503 and "database" in r.json()["problems"], r.text
    finally:
        pg_own.resume()
    deadline = time.monotonic() + 20
    while httpx.get(f"{pg_stack.base}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = httpx.post(f"{pg_stack.base}/api/v1/runs", json={"function": "echo", "input": 2},
                   params={"wait": "20"}, timeout=30,
                   headers={"authorization": f"Bearer {procs.API_KEY}"})
    assert r.status_code == 201 and r.json()["output"] == 2, r.text
