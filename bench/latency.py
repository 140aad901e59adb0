"""Sequential latency on a fresh database, and again after load (for A/B comparisons of
the store, notably on PostgreSQL, whose figures depend on the database's history).

    python -m bench.latency [--repeat 15] [--database-url ...]

Measures, after 30 warm-up runs: one-step run p50 / p90 (200 sequential runs) and a
10-task chain workflow p50; then loads the database with 1,000 five-step runs and three
50-child fan-outs and measures both again.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import pct, run
from sdk import Client


async def _measure(client: Client) -> tuple[str, str]:
    lat: list[float] = []
    for _ in range(200):
        t0 = time.perf_counter()
        assert await client.run("bench-chain", 1, timeout=30) == 1
        lat.append(time.perf_counter() - t0)
    chain: list[float] = []
    for _ in range(10):
        t0 = time.perf_counter()
        await client.run("bench-chain10", 1, timeout=30)
        chain.append(time.perf_counter() - t0)
    return (f"{pct(lat, 0.5):.1f} / {pct(lat, 0.9):.1f} ms", f"{pct(chain, 0.5):.1f} ms")


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for _ in range(30):
        await client.run("bench-chain", 1, timeout=30)
    one, chain = await _measure(client)
    out["fresh: one-step run p50 / p90"] = one
    out["fresh: 10-task chain workflow p50"] = chain
    for _ in range(5):
        handles = await asyncio.gather(*(client.run_no_wait("bench-chain", 5)
                                         for _ in range(200)))
        await asyncio.gather(*(h.result(timeout=120) for h in handles))
    for _ in range(3):
        await client.run("bench-fan", 50, timeout=60)
    one, chain = await _measure(client)
    out["after load: one-step run p50 / p90"] = one
    out["after load: 10-task chain workflow p50"] = chain
    return out


if __name__ == "__main__":
    run(bench)
