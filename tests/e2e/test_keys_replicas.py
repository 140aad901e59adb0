"""A key revoked on one replica is refused by another within the cache's lifetime
(``CACHE_SECONDS``): two orchestrators on one PostgreSQL database."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from orchestrator.engine.keys import CACHE_SECONDS
from tests.support import procs
from tests.support.pg import PgCluster

ADMIN = {"authorization": f"Bearer {procs.API_KEY}"}


def test_revocation_reaches_the_other_replica(pg: PgCluster, tmp_path: Path) -> None:
    db = pg.create_db()
    (a, base_a), (b, base_b) = (procs.orchestrator(tmp_path, db_url=db) for _ in range(2))
    a.start()
    b.start()
    try:
        r = httpx.post(f"{base_a}/api/v1/keys", json={"name": "r", "scopes": ["read"]},
                       headers=ADMIN, timeout=10)
        assert r.status_code == 201, r.text
        made = r.json()
        mine = {"authorization": f"Bearer {made['key']}"}
        assert httpx.get(f"{base_b}/api/v1/runs", headers=mine).status_code == 200
        assert httpx.delete(f"{base_a}/api/v1/keys/{made['id']}",
                            headers=ADMIN).status_code == 204
        assert httpx.get(f"{base_a}/api/v1/runs", headers=mine).status_code == 401
        deadline = time.monotonic() + CACHE_SECONDS + 1.0
        while httpx.get(f"{base_b}/api/v1/runs", headers=mine).status_code != 401:
            assert time.monotonic() < deadline, "replica b still accepts the revoked key"
            time.sleep(0.1)
    finally:
        a.stop()
        b.stop()
