"""The orchestrator's memory after runs with large memos: RSS before, after ``--runs``
runs of ``--steps`` 1 MiB steps each (their memos reach ``--steps`` MiB), and once
idle. What a run's call held (request and answer bodies) should be freed once it ends.

    python -m bench.memory [--runs 6] [--steps 15] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sdk import Client
from tests.support import procs


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _runs(base: str, runs: int, steps: int, concurrency: int) -> None:
    client = Client(orchestrator_url=base, api_key=procs.API_KEY)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            out = await client.run("bench-big-memo", steps, timeout=300)
            assert out > steps * 1000 * 1000, out

    try:
        await asyncio.gather(*(one() for _ in range(runs)))
    finally:
        await client.aclose()


def measure(runs: int, steps: int, concurrency: int) -> tuple[float, float, float, float]:
    """(RSS at start, peak seen, RSS 3 s after the runs ended, seconds) of the
    orchestrator, in MiB."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    app, app_url = procs.app(tmp, "bench.memo_app:app")
    orch, base = procs.orchestrator(tmp, app_url=app_url, lease_ttl=None)
    app.start()
    orch.start()
    try:
        assert orch.proc is not None
        pid = orch.proc.pid
        time.sleep(1.0)
        before = rss_mib(pid)
        t0 = time.monotonic()
        asyncio.run(_runs(base, runs, steps, concurrency))
        took = time.monotonic() - t0
        peak = rss_mib(pid)
        time.sleep(3.0)
        return before, peak, rss_mib(pid), took
    finally:
        orch.stop()
        app.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--concurrency", type=int, default=2)
    a = ap.parse_args()
    before, peak, after, took = measure(a.runs, a.steps, a.concurrency)
    print(f"orchestrator RSS: {before:.0f} MiB before, {peak:.0f} MiB at the end of "
          f"{a.runs} runs of {a.steps} MiB memos, {after:.0f} MiB 3 s later ({took:.1f} s)")


if __name__ == "__main__":
    main()
