"""Many runs asleep at once (issue 14, §3): does the orchestrator's memory stay flat, and
new work as fast?

    BENCH_SLEEP_RUNS=1000000 python -m bench.sleepers [--runs N] [--concurrency 4]
        [--repeat 200] [--database-url ...]

Times ``--repeat`` one-step runs (``bench-chain`` of 1, one after another), then starts
``--runs`` (``BENCH_SLEEP_RUNS``, 1,000,000) runs of ``bench-sleep``, each sleeping a day
(``ctx.sleep_for``), in bulk requests of 1,000 (``client.run_many``), ``--concurrency`` at
a time, waits until they all sleep (the last run of the last requests, and a sample of
the others), and times ``--repeat`` one-step runs again while they sleep.
Prints the time to create them (accepted, and until all asleep), the orchestrator's RSS
before, at its peak while they were created, once they all sleep and after 10 s idle
(with the CPU it spent in those 10 s), the database's size (SQLite: the main file, its
WAL and shared-memory index; again at the end) and the one-step latency before and while
they sleep.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from pathlib import Path

from bench.common import cpu_seconds, pct, run
from bench.memory import rss_mib
from sdk import Client

DAY = 86400.0
BATCH = 1000


def options(argv: list[str], env: dict[str, str]) -> tuple[int, int, list[str]]:
    """(runs, concurrency, the arguments left for ``bench.common.run``) from the command
    line, ``--runs`` defaulting to ``BENCH_SLEEP_RUNS`` (1,000,000)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--runs", type=int, default=int(env.get("BENCH_SLEEP_RUNS", "1000000")))
    ap.add_argument("--concurrency", type=int, default=4)
    known, rest = ap.parse_known_args(argv)
    return known.runs, known.concurrency, rest


def sqlite_files(cmdline: list[str]) -> list[Path]:
    """The files of the SQLite database an orchestrator's command line names with
    ``--database-url sqlite:///<path>`` (main file, WAL, shared memory); none for
    another database."""
    for flag, value in itertools.pairwise(cmdline):
        if flag == "--database-url" and value.startswith("sqlite:///"):
            main = Path(value.removeprefix("sqlite:///").split("?", 1)[0])
            return [main, main.with_name(main.name + "-wal"),
                    main.with_name(main.name + "-shm")]
    return []


def database_mib(pid: int) -> str:
    """The size of the orchestrator's SQLite files, "main + WAL" (or "n/a")."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    files = sqlite_files(cmdline)
    if not files:
        return "n/a (not SQLite)"
    size = [f.stat().st_size / 2**20 if f.exists() else 0.0 for f in files]
    return f"{size[0]:.0f} MiB + WAL {size[1]:.0f} MiB + shm {size[2]:.1f} MiB"


def batches(n: int, size: int = BATCH) -> list[range]:
    """``range(n)`` cut into consecutive ranges of at most ``size``."""
    return [range(lo, min(n, lo + size)) for lo in range(0, n, size)]


async def one_step(client: Client, samples: int) -> str:
    lat: list[float] = []
    for _ in range(samples):
        t = time.perf_counter()
        assert await client.run("bench-chain", 1, timeout=30) == 1
        lat.append(time.perf_counter() - t)
    return f"{pct(lat, 0.5):.1f} / {pct(lat, 0.99):.1f} ms"


async def asleep(client: Client, rid: str) -> None:
    """Until the run sleeps (its ``waiting`` is a sleep)."""
    while True:
        w = (await client.get_run(rid)).get("waiting")
        if isinstance(w, dict) and w.get("kind") == "sleep":
            return
        await asyncio.sleep(0.5)  # (another process's state: polled)


async def create(client: Client, n: int, concurrency: int) -> list[str]:
    """Start ``n`` sleepers in bulk requests, ``concurrency`` at a time: the last run id
    of each request, in creation order."""
    todo = batches(n)
    last: list[str] = [""] * len(todo)
    nxt = iter(enumerate(todo))

    async def worker() -> None:
        for k, r in nxt:
            hs = await client.run_many("bench-sleep", [DAY] * len(r))
            last[k] = hs[-1].id

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return last


async def bench(client: Client, pid: int, repeat: int, runs: int, concurrency: int
                ) -> dict[str, str]:
    out: dict[str, str] = {}
    out["one-step run before the sleepers, p50 / p99"] = await one_step(client, repeat)
    before = rss_mib(pid)
    peak = [before]

    async def watch() -> None:
        while True:
            peak[0] = max(peak[0], rss_mib(pid))
            await asyncio.sleep(1.0)

    watcher = asyncio.create_task(watch())
    t0 = time.perf_counter()
    last = await create(client, runs, concurrency)
    accepted = time.perf_counter() - t0
    # claims go in due order: the last requests' runs sleep last; a sample of the others
    # is checked too
    for rid in [*last[-concurrency:][::-1], *last[:: max(1, len(last) // 50)]]:
        await asleep(client, rid)
    slept = time.perf_counter() - t0
    watcher.cancel()
    asleep_rss = rss_mib(pid)
    peak[0] = max(peak[0], asleep_rss)
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(10.0)
    idle_cpu = cpu_seconds(pid) - cpu0
    idle_rss = rss_mib(pid)
    out[f"start {runs:,} sleepers (bulk accepted)"] = (
        f"{accepted:.1f} s ({runs / accepted:,.0f} runs/s)")
    out[f"... until all {runs:,} sleep"] = f"{slept:.1f} s ({runs / slept:,.0f} runs/s)"
    out["orchestrator RSS before / peak / all asleep"] = (
        f"{before:.0f} / {peak[0]:.0f} / {asleep_rss:.0f} MiB")
    out["... after 10 s idle (CPU in those 10 s)"] = f"{idle_rss:.0f} MiB ({idle_cpu:.2f} s)"
    out["database"] = database_mib(pid)
    out[f"one-step run while {runs:,} sleep, p50 / p99"] = await one_step(client, repeat)
    out["orchestrator RSS at the end"] = f"{rss_mib(pid):.0f} MiB"
    out["database at the end (the WAL cut back once reused)"] = database_mib(pid)
    out["orchestrator CPU so far"] = f"{cpu_seconds(pid):.0f} s"
    return out


def main() -> None:
    runs, concurrency, rest = options(sys.argv[1:], dict(os.environ))
    sys.argv[1:] = rest  # the rest: bench.common.run's options

    async def go(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
        return await bench(client, pid, repeat, runs, concurrency)

    run(go)


if __name__ == "__main__":
    main()
