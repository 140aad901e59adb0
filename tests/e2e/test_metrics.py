"""/metrics through a live orchestrator: the counters match the runs made, and the
queue's depth and lag show runs due but not yet called (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.store import Store
from tests.e2e.conftest import running_stack
from tests.support import procs
from tests.unit.test_metrics import test_depth_and_lag_per_function as depth_case


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_counters_match_the_runs_made(request: pytest.FixtureRequest, tmp_path: Path,
                                            db: str) -> None:
    with running_stack(request, tmp_path, db) as stack:
        async with stack.rest() as rest:
            async def start(fn: str, inp: object = None) -> str:
                r = await rest.post("/runs", json={"function": fn, "input": inp})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])
            done = await asyncio.gather(*[start("chain", 2) for _ in range(20)])
            failed = await asyncio.gather(*[start("always-fails") for _ in range(5)])
            sleeping = await asyncio.gather(*[start("sleeper", 600) for _ in range(4)])
            for rid in [*done, *failed]:
                r = await rest.get(f"/runs/{rid}/wait", params={"timeout": 30})
                assert r.json()["status"] in ("completed", "failed"), r.text
            for rid in sleeping:
                for _ in range(100):
                    if (await rest.get(f"/runs/{rid}")).json()["waiting"]:
                        break
                    await asyncio.sleep(0.05)
                r = await rest.post(f"/runs/{rid}/cancel", json={})
                assert r.status_code == 200, r.text
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{stack.base}/metrics",
                                   headers={"authorization": f"Bearer {procs.API_KEY}"})
                no_key = await http.get(f"{stack.base}/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            m = _samples(r.text)
            assert m[("durable_runs_started_total", (("function", "chain"),))] == 20
            assert m[("durable_runs_started_total", (("function", "always-fails"),))] == 5
            assert m[("durable_runs_ended_total",
                      (("function", "chain"), ("status", "completed")))] == 20
            assert m[("durable_runs_ended_total",
                      (("function", "always-fails"), ("status", "failed")))] == 5
            assert m[("durable_runs_ended_total",
                      (("function", "sleeper"), ("status", "cancelled")))] == 4
            steps = sum(v for (n, labels), v in m.items()
                        if n == "durable_steps_total" and ("function", "chain") in labels)
            assert steps >= 20
            calls = sum(v for (n, _), v in m.items()
                        if n == "durable_call_duration_seconds_count")
            assert calls >= 29
            assert no_key.status_code == 401


async def test_queue_depth_on_postgres(store: Store) -> None:
    """The depth query on PostgreSQL (``store``: a fresh PostgreSQL database)."""
    await depth_case(store)
