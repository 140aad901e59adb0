"""/metrics through a live orchestrator: scraped under load, the counters match the runs
made; the queue's depth and lag show runs due but not yet called (SQLite and
PostgreSQL); a key is needed unless ``metrics_public``."""

from __future__ import annotations

import asyncio
import itertools
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


N_DONE, N_FAILED, N_CANCELLED, N_BRANCHING = 60, 12, 8, 4


def _total(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


COUNTERS = ("durable_runs_started_total", "durable_runs_ended_total", "durable_steps_total",
            "durable_call_duration_seconds_count")


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_counters_match_the_runs_made(request: pytest.FixtureRequest, tmp_path: Path,
                                            db: str) -> None:
    """Many concurrent runs (some failing, some cancelled, some workflows skipping a
    task), /metrics scraped all along: every scrape answers, no counter goes down, and
    at the end they count exactly the runs made, their steps and their calls."""
    with running_stack(request, tmp_path, db) as stack:
        auth = {"authorization": f"Bearer {procs.API_KEY}"}
        scrapes: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []
        loaded = asyncio.Event()

        async def scrape(http: httpx.AsyncClient) -> None:
            while not loaded.is_set():
                r = await http.get(f"{stack.base}/metrics", headers=auth)
                assert r.status_code == 200, r.text
                scrapes.append(_samples(r.text))
                await asyncio.sleep(0.05)

        async with stack.rest() as rest, httpx.AsyncClient(timeout=30) as http:
            async def start(fn: str, inp: object = None) -> str:
                r = await rest.post("/runs", json={"function": fn, "input": inp})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            scraper = asyncio.create_task(scrape(http))
            started = await asyncio.gather(
                *[start("chain", 2) for _ in range(N_DONE)],
                *[start("always-fails") for _ in range(N_FAILED)],
                *[start("sleeper", 600) for _ in range(N_CANCELLED)],
                *[start("branching", {"amount": 5}) for _ in range(N_BRANCHING)])
            done, failed = started[:N_DONE], started[N_DONE:N_DONE + N_FAILED]
            sleeping = started[N_DONE + N_FAILED:N_DONE + N_FAILED + N_CANCELLED]
            flows = started[N_DONE + N_FAILED + N_CANCELLED:]

            async def ended(rid: str) -> str:
                r = await rest.get(f"/runs/{rid}/wait", params={"timeout": 60})
                return str(r.json()["status"])

            async def cancel(rid: str) -> None:
                for _ in range(200):  # asleep: its first step recorded, the sleep begun
                    if (await rest.get(f"/runs/{rid}")).json()["waiting"]:
                        break
                    await asyncio.sleep(0.05)
                r = await rest.post(f"/runs/{rid}/cancel", json={})
                assert r.status_code == 200, r.text

            statuses, _ = await asyncio.gather(
                asyncio.gather(*[ended(rid) for rid in [*done, *failed, *flows]]),
                asyncio.gather(*[cancel(rid) for rid in sleeping]))
            assert statuses == (["completed"] * N_DONE + ["failed"] * N_FAILED
                                + ["completed"] * N_BRANCHING)
            loaded.set()
            await scraper
            r = await http.get(f"{stack.base}/metrics", headers=auth)
            no_key = await http.get(f"{stack.base}/metrics")
            bad_key = await http.get(f"{stack.base}/metrics",
                                     headers={"authorization": "Bearer nope"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        m = _samples(r.text)
        scrapes.append(m)
        # a branching run with a small amount: the workflow run and its tasks check,
        # small and merge complete, big is skipped by its condition (its app says so),
        # after_big is skipped without a call: neither started nor ended
        total = N_DONE + N_FAILED + N_CANCELLED + 5 * N_BRANCHING
        assert any(_total(x, "durable_runs_started_total") > 0
                   and _total(x, "durable_runs_ended_total") < total for x in scrapes), (
            "no scrape while the runs ran")
        for before, after in itertools.pairwise(scrapes):  # counters never go down
            for key, v in before.items():
                if key[0] in COUNTERS:
                    assert after.get(key, 0) >= v, key
        assert m[("durable_runs_started_total", (("function", "chain"),))] == N_DONE
        assert m[("durable_runs_started_total", (("function", "always-fails"),))] == N_FAILED
        assert m[("durable_runs_started_total", (("function", "sleeper"),))] == N_CANCELLED
        assert m[("durable_runs_ended_total",
                  (("function", "chain"), ("status", "completed")))] == N_DONE
        assert m[("durable_runs_ended_total",
                  (("function", "always-fails"), ("status", "failed")))] == N_FAILED
        assert m[("durable_runs_ended_total",
                  (("function", "sleeper"), ("status", "cancelled")))] == N_CANCELLED
        assert m[("durable_runs_started_total", (("function", "branching"),))] == (
            5 * N_BRANCHING)
        assert m[("durable_runs_ended_total",
                  (("function", "branching"), ("status", "completed")))] == 4 * N_BRANCHING
        assert m[("durable_runs_ended_total",
                  (("function", "branching"), ("status", "skipped")))] == N_BRANCHING
        assert _total(m, "durable_runs_started_total") == total
        assert _total(m, "durable_runs_ended_total") == total
        # chain(2): two steps; sleeper: its first step (the sleep is the orchestrator's);
        # always-fails raises outside any step
        assert _total(m, "durable_steps_total", function="chain",
                      status="completed") == 2 * N_DONE
        assert _total(m, "durable_steps_total", function="sleeper") == N_CANCELLED
        assert _total(m, "durable_steps_total") == 2 * N_DONE + N_CANCELLED
        # one call each at least (one is enough for these), a workflow's four tasks
        # called, all to the test app, and none that failed to answer
        calls = _total(m, "durable_call_duration_seconds_count")
        assert calls >= N_DONE + N_FAILED + N_CANCELLED + 4 * N_BRANCHING
        assert _total(m, "durable_call_duration_seconds_count", app="testapp") == calls
        assert _total(m, "durable_invoker_errors_total") == 0
        assert no_key.status_code == bad_key.status_code == 401
        assert no_key.headers["www-authenticate"] == "Bearer"
        assert no_key.json()["error"]["code"] == "unauthorized", no_key.text


async def test_metrics_public_serves_without_a_key(tmp_path: Path) -> None:
    """``DURABLE_METRICS_PUBLIC=true`` opens /metrics, and only /metrics, to no key."""
    orch, base = procs.orchestrator(tmp_path, extra_env={"DURABLE_METRICS_PUBLIC": "true"})
    orch.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            r = await http.get("/metrics")
            runs = await http.get("/api/v1/runs")
    finally:
        orch.stop()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {fam.name for fam in text_string_to_metric_families(r.text)}
    assert {"durable_runs_started", "durable_queue_depth"} <= names
    assert runs.status_code == 401


async def test_queue_depth_on_postgres(store: Store) -> None:
    """The depth query on PostgreSQL (``store``: a fresh PostgreSQL database)."""
    await depth_case(store)
