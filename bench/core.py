"""Core benchmarks (issue: durable core). Prints figures; docs/benchmarks.md records them.

    python -m bench.core [--repeat 15] [--database-url ... | --pg] [--replicas N]

Starts the bench app under uvicorn and the orchestrator (`orchestrator dev`, a fresh
SQLite file unless --database-url) as subprocesses on loopback, then measures:
  * one run of 100 sequential steps, trigger to result
  * 200 concurrent runs of 5 steps each, first trigger to last result
  * one run fanning out to 50 children and gathering them
  * one-step run, trigger to result, p50 / p99 (sequential)
  * no-step run, trigger to result, p50 / p99 (sequential)
  * one-step runs per second with 50 clients at once (each running one after another),
    and the CPU per run of each process meanwhile
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.common import analyze, cpu_split, ms, pct, run
from sdk import Client


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for _ in range(3):  # warm up connections and caches
        await client.run("bench-chain", 5, timeout=30)

    t: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert await client.run("bench-chain", 100, timeout=60) == 100
        t.append(time.perf_counter() - t0)
    out["one run of 100 sequential steps"] = ms(t)

    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(client.run_no_wait("bench-chain", 5)
                                         for _ in range(200)))
        results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
        t.append(time.perf_counter() - t0)
        assert results == [5] * 200
    out["200 concurrent runs of 5 steps"] = ms(t)

    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert await client.run("bench-fan", 50, timeout=60) == sum(range(1, 51))
        t.append(time.perf_counter() - t0)
    out["one run fanning out to 50 children, gathered"] = ms(t)

    lat: list[float] = []
    for _ in range(max(200, repeat * 20)):
        t0 = time.perf_counter()
        assert await client.run("bench-chain", 1, timeout=30) == 1
        lat.append(time.perf_counter() - t0)
    out["one-step run, trigger to result, p50 / p99"] = (
        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ms")

    lat = []
    for _ in range(max(200, repeat * 20)):
        t0 = time.perf_counter()
        assert await client.run("bench-noop", timeout=30) is None
        lat.append(time.perf_counter() - t0)
    out["no-step run, trigger to result, p50 / p99"] = (
        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ms")

    rates: list[float] = []
    lat = []
    await analyze()  # PostgreSQL: the statistics autovacuum would have gathered by now
    with cpu_split(out, "  CPU per run at concurrency 50", lambda: len(lat)):
        for _ in range(max(3, repeat // 3)):
            rate, one = await _throughput(client, concurrency=50, per_client=20)
            rates.append(rate)
            lat += one
    out["one-step runs/s at concurrency 50 (p50 latency)"] = (
        f"{statistics.median(rates):.0f}/s ({pct(lat, 0.5):.1f} ms)")
    return out


async def _throughput(client: Client, concurrency: int, per_client: int
                      ) -> tuple[float, list[float]]:
    """Runs per second with ``concurrency`` clients each running ``per_client`` one-step
    runs one after another; and each run's latency."""
    lat: list[float] = []

    async def worker() -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            assert await client.run("bench-chain", 1, timeout=60) == 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return concurrency * per_client / (time.perf_counter() - t0), lat


if __name__ == "__main__":
    run(bench)
