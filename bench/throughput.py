"""One-step runs per second at concurrency 50, alone (``bench.core``'s last figure, with
more rounds): what to profile against, and to compare one replica with several.

    python -m bench.throughput [--repeat 7] [--pg] [--replicas N] [--database-url ...]

Prints the stack's process ids first (for ``py-spy record --pid``), then the rate (the
median of ``--repeat`` rounds of 50 clients x 20 runs), the p50 / p99 latency, and the
CPU per run of each process over all rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics

from bench.common import PROCESSES, analyze, cpu_split, pct, pg_counters, run
from bench.core import _throughput
from sdk import Client
from tests.support.pg import statement_counts, statement_times


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    print(f"# processes: {PROCESSES}", flush=True)
    out: dict[str, str] = {}
    for _ in range(3):  # warm up connections and caches
        await client.run("bench-chain", 1, timeout=30)
    await _throughput(client, concurrency=50, per_client=20)  # 1,000 runs in the tables
    await analyze()
    rates: list[float] = []
    lat: list[float] = []
    url = PROCESSES.database_url
    if url:
        await asyncio.sleep(1.0)  # the statistics lag
        before = await pg_counters(url)
        if PROCESSES.statements:
            await statement_counts(url, reset=True)
    with cpu_split(out, "CPU per run", lambda: len(lat)):
        for _ in range(repeat):
            rate, one = await _throughput(client, concurrency=50, per_client=20)
            rates.append(rate)
            lat += one
    out["one-step runs/s at concurrency 50"] = (
        f"{statistics.median(rates):.0f}/s (rounds {min(rates):.0f}-{max(rates):.0f})")
    if url:
        await asyncio.sleep(1.0)
        after = await pg_counters(url)
        out["per run: commits, rollbacks, WAL records / writes / flushes"] = ", ".join(
            f"{(after[k] - before[k]) / len(lat):.2f}" for k in before)
        if PROCESSES.statements:
            for q, n, ms in await statement_times(url):
                if n >= len(lat) // 20:
                    print(f"# {n / len(lat):5.2f}/run {ms * 1000 / len(lat):6.1f} us/run  "
                          f"{' '.join(q.split())[:120]}")
    if os.environ.get("BENCH_HOLD"):  # look at the database before it goes
        print(f"# holding {url}", flush=True)
        await asyncio.sleep(float(os.environ["BENCH_HOLD"]))
    out["latency p50 / p99"] = f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ms"
    return out


if __name__ == "__main__":
    run(bench)
