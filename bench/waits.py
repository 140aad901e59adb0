"""Many runs waiting for events, keyed by customer (issue 14, §3): does an event still
resume its run fast?

    BENCH_WAIT_RUNS=100000 python -m bench.waits [--repeat 50] [--database-url ...]

Starts ``BENCH_WAIT_RUNS`` (100,000) runs of ``bench-wait`` (one per customer, in bulk
requests of 1,000), waits until they all wait for their ``bench.ping`` event, then,
``--repeat`` times, sends one customer's event and times it until its run has ended
(the event's arrival, the wait's match over the ``(event, match_key)`` index, the run's
last call, its end).
Prints the time to park them all, the median and p99 of the event's acceptance (the POST:
its wait matched and taken, its run woken, committed) and of event-to-end, and the same for
a one-step run meanwhile (the latency of new work while they wait).
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.common import cpu_seconds, pct, run
from sdk import Client


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    n = int(os.environ.get("BENCH_WAIT_RUNS", "100000"))
    out: dict[str, str] = {}
    ids: list[str] = []
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        hs = await client.run_many("bench-wait",
                                   [f"c{i}" for i in range(lo, min(n, lo + 1000))])
        ids += [h.id for h in hs]
    started = time.perf_counter() - t0
    # every run has made its call and parked: its wait is recorded (claims go in due
    # order, so the last run parks last; a sample of others is checked too)
    for rid in [ids[-1], *ids[:: max(1, n // 20)]]:
        while not isinstance((await client.get_run(rid)).get("waiting"), dict):  # noqa: ASYNC110
            await asyncio.sleep(0.5)  # (another process's state: polled)
    parked = time.perf_counter() - t0
    out[f"start {n:,} runs (bulk accepted)"] = f"{started:.1f} s"
    out[f"... until all {n:,} wait for their event"] = f"{parked:.1f} s"
    lat: list[float] = []
    sent: list[float] = []
    for k in range(repeat):
        i = (k * 7919) % n
        t = time.perf_counter()
        await client.send_event("bench.ping", {"customer": f"c{i}"})
        sent.append(time.perf_counter() - t)  # accepted: matched, its run woken, committed
        done = await client.wait(ids[i], timeout=30)  # long-polls until the run ended
        lat.append(time.perf_counter() - t)
        assert done["status"] == "completed", done
    out["event accepted (its wait taken, run woken), p50 / p99"] = (
        f"{pct(sent, 0.5):.1f} / {pct(sent, 0.99):.1f} ms")
    out["event -> its waiting run ended, p50 / p99"] = (
        f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ms")
    one: list[float] = []
    for _ in range(100):
        t = time.perf_counter()
        assert await client.run("bench-chain", 1, timeout=30) == 1
        one.append(time.perf_counter() - t)
    out[f"one-step run while {n:,} wait, p50 / p99"] = (
        f"{pct(one, 0.5):.1f} / {pct(one, 0.99):.1f} ms")
    out["orchestrator CPU so far"] = f"{cpu_seconds(pid):.0f} s"
    return out


if __name__ == "__main__":
    run(bench)
