"""Shared by the benchmarks: start the bench app and an orchestrator, time things."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sdk import Client
from sdk.transport import AppTransport
from tests.support import procs


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def stack(database_url: str | None = None) -> Iterator[tuple[Client, str, procs.Proc]]:
    """The bench app under uvicorn and an orchestrator, on loopback; a client."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    app, app_url = procs.app(tmp, "bench.app:app")
    orch, base = procs.orchestrator(tmp, db_url=database_url, app_url=app_url,
                                    lease_ttl=None)  # the defaults, not the tests' settings
    app.start()
    orch.start()
    try:
        # the SDK's lean transport, opted in: the client shares the cores it measures
        yield (Client(orchestrator_url=base, api_key=procs.API_KEY, transport=AppTransport()),
               app_url, orch)
    finally:
        orch.stop()
        app.stop()


Bench = Callable[[Client, str, int, int], Awaitable[dict[str, str]]]


def run(bench: Bench) -> None:
    """Parse ``--repeat``/``--database-url``, start the stack, run ``bench(client, app
    url, orchestrator pid, repeat)`` and print its figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    with stack(args.database_url) as (client, app_url, orch):
        assert orch.proc is not None
        pid = orch.proc.pid

        async def go() -> dict[str, str]:
            await client.register(app_url)
            try:
                return await bench(client, app_url, pid, args.repeat)
            finally:
                await client.aclose()

        figures = asyncio.run(go())
    print(header(args.database_url, args.repeat))
    for k, v in figures.items():
        print(f"{k:<50} {v}")


def header(database_url: str | None, repeat: int) -> str:
    db = database_url or "SQLite (file, WAL)"
    return (f"# {platform.node()} {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{db}, medians of {repeat}")
