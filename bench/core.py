"""Core benchmarks (issue: durable core). Prints figures; docs/benchmarks.md records them.

    python -m bench.core [--repeat 15] [--database-url ...]

Starts the bench app under uvicorn and the orchestrator (`orchestrator dev`, a fresh
SQLite file unless --database-url) as subprocesses on loopback, then measures:
  * one run of 100 sequential steps, trigger to result
  * 200 concurrent runs of 5 steps each, first trigger to last result
  * one run fanning out to 50 children and gathering them
  * one-step run, trigger to result, p50 / p99 (sequential)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sdk import Client
from tests.support import procs


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def bench(client: Client, repeat: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for _ in range(3):  # warm up connections and caches
        await client.run("bench-chain", 5, timeout=30)

    t: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert await client.run("bench-chain", 100, timeout=60) == 100
        t.append(time.perf_counter() - t0)
    out["one run of 100 sequential steps"] = _ms(t)

    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(client.run_no_wait("bench-chain", 5)
                                         for _ in range(200)))
        results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
        t.append(time.perf_counter() - t0)
        assert results == [5] * 200
    out["200 concurrent runs of 5 steps"] = _ms(t)

    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert await client.run("bench-fan", 50, timeout=60) == sum(range(1, 51))
        t.append(time.perf_counter() - t0)
    out["one run fanning out to 50 children, gathered"] = _ms(t)

    lat: list[float] = []
    for _ in range(max(200, repeat * 20)):
        t0 = time.perf_counter()
        assert await client.run("bench-chain", 1, timeout=30) == 1
        lat.append(time.perf_counter() - t0)
    out["one-step run, trigger to result, p50 / p99"] = (
        f"{_pct(lat, 0.5):.1f} / {_pct(lat, 0.99):.1f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    app, app_url = procs.app(tmp, "bench.app:app")
    orch, base = procs.orchestrator(tmp, db_url=args.database_url, app_url=app_url,
                                    extra_env={"DURABLE_LOG_LEVEL": "warning"})
    app.start()
    orch.start()
    try:
        client = Client(orchestrator_url=base, api_key=procs.API_KEY)

        async def go() -> dict[str, str]:
            await client.register(app_url)
            try:
                return await bench(client, args.repeat)
            finally:
                await client.aclose()

        figures = asyncio.run(go())
    finally:
        orch.stop()
        app.stop()
    db = args.database_url or "SQLite (file, WAL)"
    print(f"# {platform.node()} {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{db}, medians of {args.repeat}")
    for k, v in figures.items():
        print(f"{k:<48} {v}")


if __name__ == "__main__":
    main()
