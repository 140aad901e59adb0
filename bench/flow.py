"""Flow control: the claim's cost (issue 13). Prints figures; docs/benchmarks.md records them.

    python -m bench.flow [--rounds 3] [--database-url ...]

1. End to end: one-step runs per second with 50 clients at once (each running one after
   another), against an app whose function declares no limit, then against the same app
   declaring ``Concurrency(1000)`` (a limit that never binds), then ``Concurrency(1000)``
   plus ``Concurrency(1000, key="input.k")`` over 50 keys: a fresh orchestrator and
   database each, rounds alternated.
2. Per claim: the time of one claim transaction taking 50 due rows out of 500 (then
   5000), in process on a fresh store: the plain claim (rows in no group), and the
   limited claim (every row in two groups: one across all, one of 50 keys) with its
   candidates read, slots counted and leases taken. ``--claims-only``: just these.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx

from bench.common import header, pct
from orchestrator.engine import concurrency
from orchestrator.engine.registry import FunctionInfo, Registry
from orchestrator.store import Store
from sdk import Client, Concurrency, task
from sdk.function import Retry
from sdk.transport import AppTransport
from tests.support import procs

CASES = {"no limit": {}, "Concurrency(1000)": {"FLOWBENCH_LIMIT": "1000"},
         "Concurrency(1000) + per key": {"FLOWBENCH_LIMIT": "1000", "FLOWBENCH_KEYED": "1"}}


async def _throughput(client: Client, clients: int = 50, per_client: int = 20
                      ) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def worker(w: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            assert await client.run("flow-bench", {"x": i, "k": w}, timeout=60) == i + 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return clients * per_client / (time.perf_counter() - t0), lat


async def _registered(base: str) -> None:
    """Until the orchestrator knows the function (the ``--app`` registration at its start
    may still be in flight)."""
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers={
            "authorization": f"Bearer {procs.API_KEY}"}) as rest:
        for _ in range(200):
            if (await rest.get("/functions/flow-bench")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise TimeoutError("flow-bench was not registered")


def end_to_end(env: dict[str, str], database_url: str | None) -> tuple[float, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    app, app_url = procs.app(tmp, "bench.flow_app:app", extra_env=env)
    orch, base = procs.orchestrator(tmp, db_url=database_url, app_url=app_url, lease_ttl=None)
    app.start()
    orch.start()
    try:
        async def go() -> tuple[float, list[float]]:
            client = Client(orchestrator_url=base, api_key=procs.API_KEY,
                            transport=AppTransport())
            try:
                await client.register(app_url)
                await _registered(base)
                for i in range(20):  # warm up
                    await client.run("flow-bench", {"x": i, "k": 0}, timeout=30)
                rates, lat = [], []
                for _ in range(3):
                    rate, one = await _throughput(client)
                    rates.append(rate)
                    lat += one
                return statistics.median(rates), lat
            finally:
                await client.aclose()

        return asyncio.run(go())
    finally:
        orch.stop()
        app.stop()


class _Registry:
    def __init__(self, info: FunctionInfo) -> None:
        self.info = info

    async def get_many(self, names: set[str]) -> dict[str, FunctionInfo]:
        return {n: self.info for n in names if n == self.info.name}


async def per_claim(database_url: str | None, repeat: int = 100, due: int = 500
                    ) -> dict[str, float]:
    """Median ms of one claim transaction of 50 rows out of ``due`` due, each kind."""
    @task("f", concurrency=[Concurrency(1000), Concurrency(1000, key="input.k")])
    async def f(ctx: Any, x: Any) -> Any:
        return x

    reg = cast(Registry, _Registry(FunctionInfo("f", "a", "http://a", "task", f.config(),
                                                Retry())))
    url = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-claim-')}/c.db"
    store = Store(url)
    await store.open()
    out: dict[str, float] = {}
    try:
        for kind in ("plain", "limited"):
            times = []
            for r in range(repeat):
                now = time.time()
                rows = [{"run_id": f"{kind}{r}-{i}", "due_at": now - 1 - i * 0.001,
                         "priority": 1 + i % 3,
                         "ckey1": "f#0|" if kind == "limited" else None,
                         "ckey2": f"f#1|{i % 50}" if kind == "limited" else None}
                        for i in range(due)]
                async with store.write() as tx:
                    await tx.queue.add_many(rows)  # type: ignore[arg-type]
                t0 = time.perf_counter()
                async with store.write() as tx:
                    if kind == "plain":
                        got = await tx.queue.claim("me", now, now + 30, 50)
                    else:
                        got = await concurrency.claim_limited(tx, reg, "me", now, now + 30, 50)
                times.append(time.perf_counter() - t0)
                assert len(got) == 50
                async with store.write() as tx:
                    await tx.queue.remove([x["run_id"] for x in rows])
            out[kind] = statistics.median(times) * 1000
    finally:
        await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--claims-only", action="store_true")
    args = ap.parse_args()
    if args.claims_only:
        claims(args.database_url)
        return
    rates: dict[str, list[float]] = {k: [] for k in CASES}
    lats: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.rounds):
        for name, env in CASES.items():
            rate, lat = end_to_end(env, args.database_url)
            rates[name].append(rate)
            lats[name] += lat
    print(header(args.database_url, args.rounds))
    for name in CASES:
        print(f"one-step runs/s at concurrency 50, {name:<28} "
              f"{statistics.median(rates[name]):.0f}/s (p50 {pct(lats[name], 0.5):.1f} ms; "
              f"rounds {', '.join(f'{r:.0f}' for r in rates[name])})")
    claims(args.database_url)


def claims(database_url: str | None) -> None:
    for due in (500, 5000):
        for kind, t in asyncio.run(per_claim(database_url, due=due)).items():
            print(f"one claim transaction, 50 of {due} due rows, {kind:<8}  {t:.2f} ms")


if __name__ == "__main__":
    main()
