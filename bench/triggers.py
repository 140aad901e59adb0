"""Benchmarks of DAG workflows and triggers (issue: DAG workflows and the trigger API).

    python -m bench.triggers [--repeat 15] [--database-url ...]

  * bulk start of 1,000 runs in one call: time to accept (the POST returning ids)
  * a 20-task DAG (root -> 18 parallel tasks -> sink): trigger to complete
  * a 10-deep chain DAG: trigger to complete, and per-task orchestration overhead
    (the chain's time minus one single-task run, divided by 9)
  * 1,000 idle cron triggers: orchestrator CPU time over 10 s between ticks
"""

from __future__ import annotations

import asyncio
import time

from bench.common import cpu_seconds, ms, run
from sdk import Client


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for _ in range(3):
        await client.run("bench-wide", 1, timeout=30)
        await client.run("bench-chain10", 0, timeout=30)

    t: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        handles = await client.run_many("bench-noop", [None] * 1000)
        t.append(time.perf_counter() - t0)
        await asyncio.gather(*(h.result(timeout=120) for h in handles))
    out["bulk start of 1,000 runs in one call (accept)"] = ms(t)

    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert await client.run("bench-wide", 1, timeout=30) is not None
        t.append(time.perf_counter() - t0)
    out["20-task DAG (width 18), trigger to complete"] = ms(t)

    t, single = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = await client.run("bench-chain10", 0, timeout=30)
        t.append(time.perf_counter() - t0)
        assert res["c9"] == 10
        t0 = time.perf_counter()
        await client.run("bench-noop", None, timeout=30)
        single.append(time.perf_counter() - t0)
    chain_ms = sorted(t)[len(t) // 2] * 1000
    single_ms = sorted(single)[len(single) // 2] * 1000
    out["10-deep chain DAG, trigger to complete"] = f"{chain_ms:.1f} ms"
    out["  per-task orchestration overhead"] = f"{(chain_ms - single_ms) / 9:.1f} ms"

    async def idle_cpu() -> float:
        await asyncio.sleep(1.0)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(10.0)
        return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

    base = await idle_cpu()
    crons = [await client.create_cron("bench-noop", "0 0 1 1 *", input=None)
             for _ in range(1000)]
    with_crons = await idle_cpu()
    out["idle orchestrator CPU, no crons"] = f"{base * 1000:.1f} ms/s"
    out["idle orchestrator CPU, 1,000 idle crons"] = (
        f"{with_crons * 1000:.1f} ms/s (difference {(with_crons - base) * 1000:+.1f} ms/s)")
    for c in crons:
        await client.delete_cron(c["id"])
    return out


if __name__ == "__main__":
    run(bench)
