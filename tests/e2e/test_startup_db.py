"""Start-up while the database cannot be reached yet: the orchestrator waits for it
(DURABLE_DB_CONNECT_WAIT), then serves; past the wait it exits with the reason in one
line."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.support import procs
from tests.support.pg import PgCluster


def test_waits_for_a_database_that_comes_up_later(tmp_path: Path) -> None:
    cluster = PgCluster()  # its port is chosen; nothing listens there yet
    url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    orch, base = procs.orchestrator(tmp_path, db_url=url,
                                    extra_env={"DURABLE_DB_CONNECT_WAIT": "60"})

    def start_once_it_waits() -> None:
        # the database comes up once the orchestrator has found it unreachable (a fixed
        # delay raced the orchestrator's start-up on a loaded machine)
        deadline = time.monotonic() + 30
        while "cannot be reached yet" not in orch.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.start()

    orch.log_path.touch()
    started = threading.Thread(target=start_once_it_waits)
    started.start()
    try:
        # healthz answers only once the engine has started (after initdb, too)
        orch.start(timeout=60)
        started.join()
        headers = {"authorization": f"Bearer {procs.API_KEY}"}
        r = httpx.post(f"{base}/api/v1/events", json=[{"name": "late", "data": {}}],
                       headers=headers, timeout=10)
        assert r.status_code == 202, r.text
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        assert "cannot be reached yet" in orch.log()
    finally:
        started.join()
        orch.stop()
        cluster.stop()


def test_gives_up_with_one_line_past_the_wait(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{procs.free_port()}/postgres"
    orch, _ = procs.orchestrator(tmp_path, db_url=url,
                                 extra_env={"DURABLE_DB_CONNECT_WAIT": "1"})
    done = subprocess.run(orch.args, env=orch.env, cwd=procs.ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("orchestrator: could not reach the database within 1 s"), last
    assert "Traceback" not in done.stderr, done.stderr
