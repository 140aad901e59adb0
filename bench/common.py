"""Shared by the benchmarks: start the bench app and an orchestrator, time things."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sdk import Client
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
    orch, base = procs.orchestrator(tmp, db_url=database_url, app_url=app_url)
    app.start()
    orch.start()
    try:
        yield Client(orchestrator_url=base, api_key=procs.API_KEY), app_url, orch
    finally:
        orch.stop()
        app.stop()


def header(database_url: str | None, repeat: int) -> str:
    db = database_url or "SQLite (file, WAL)"
    return (f"# {platform.node()} {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{db}, medians of {repeat}")
