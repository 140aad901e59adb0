"""Shared by the benchmarks: start the bench app and an orchestrator, time things.

``--pg`` starts a throwaway PostgreSQL cluster at the server's default durability
(``fsync``, ``synchronous_commit``, ``full_page_writes`` on) instead of SQLite;
``--replicas N`` starts N orchestrators on the same database (PostgreSQL only), the
client's runs spread round-robin over them, one app for all.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk import Client, RunHandle
from sdk.transport import AppTransport
from tests.support import procs
from tests.support.pg import PgCluster


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    parts = _stat(pid)
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, of its live children, and of its children that ended
    (PostgreSQL's postmaster: the server's backends and background processes)."""
    parts = _stat(pid)
    total = sum(int(x) for x in parts[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except OSError:
            continue
        if child[1] == str(pid):  # ppid
            total += int(child[11]) + int(child[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """The processes a bench's figures are split over (``cpu``)."""

    orchestrators: list[int] = field(default_factory=list)
    app: int | None = None
    postgres: int | None = None
    """The postmaster of the cluster ``--pg`` started (None for another database)."""
    database_url: str | None = None
    statements: bool = False
    """Whether the cluster loads ``pg_stat_statements``."""

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process, by role (the client is this process)."""
        out = {f"orchestrator {i + 1}": cpu_seconds(p) for i, p in enumerate(self.orchestrators)}
        if self.app is not None:
            out["app"] = cpu_seconds(self.app)
        t = os.times()
        out["client"] = t.user + t.system
        if self.postgres is not None:
            out["postgres"] = tree_cpu_seconds(self.postgres)
        return out


async def pg_counters(url: str) -> dict[str, float]:
    """The database's commits and statements so far, and the server's WAL writes and
    flushes (``pg_stat_database``, ``pg_stat_wal``; both lag by up to a second:
    read them after a pause)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        db = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                 "WHERE datname = current_database()")
        wal = await conn.fetchrow("SELECT wal_records, wal_write, wal_sync FROM pg_stat_wal")
        return {**{k: float(v) for k, v in db.items()}, **{k: float(v) for k, v in wal.items()}}
    finally:
        await conn.close()


async def analyze() -> None:
    """On PostgreSQL, ``ANALYZE`` the database (as autovacuum's first pass over a fresh
    one would, a minute in: longer than a bench). Until then the statistics of the empty
    tables stand, and the plans the server caches per connection for the hot statements
    scan ``steps`` whole (seen: 2,400 sequential scans of it in one throughput loop);
    ANALYZE invalidates them. Nothing on SQLite."""
    url = PROCESSES.database_url
    if url is None:
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


PROCESSES = Processes()
"""The running stack's processes (set by ``stack``)."""


def machine_times() -> tuple[int, int]:
    """(idle, total) jiffies of all the machine's CPUs so far (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait


@contextmanager
def cpu_split(out: dict[str, str], label: str, runs: Callable[[], int]) -> Iterator[None]:
    """Record in ``out[label]`` the CPU milliseconds per run of each process of the stack
    while the block runs (``runs()``: how many runs it did), the wall time's share of the
    machine's cores they used, and how idle the machine was (other processes count: on
    a shared machine, 0% idle means the bench got what was left)."""
    before = PROCESSES.cpu()
    idle0, total0 = machine_times()
    t0 = time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    after = PROCESSES.cpu()
    idle1, total1 = machine_times()
    idle = (idle1 - idle0) / max(1, total1 - total0)
    n = max(1, runs())
    split = {k: after[k] - before[k] for k in after}
    used = sum(split.values()) / (wall * (os.cpu_count() or 1))
    out[label] = ", ".join(f"{k} {v * 1000 / n:.2f}" for k, v in split.items()) + (
        f" (ms CPU per run; {used:.0%} of {os.cpu_count()} cores; machine {idle:.0%} idle)")


class Spread(Client):
    """A client whose runs go round-robin to several orchestrators (replicas of one
    database): ``run`` and ``run_no_wait`` pick the next one, and the run's handle keeps
    asking that one."""

    def __init__(self, clients: list[Client]) -> None:
        super().__init__(orchestrator_url=clients[0].orchestrator_url,
                         api_key=clients[0].api_key)
        self.clients = clients
        self._next = itertools.cycle(clients)

    async def run(self, function: Any, input: Any = None, **kw: Any) -> Any:
        return await next(self._next).run(function, input, **kw)

    async def run_no_wait(self, function: Any, input: Any = None, **kw: Any) -> RunHandle:
        return await next(self._next).run_no_wait(function, input, **kw)

    async def register(self, app_url: str, **kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in self.clients:
            out = await c.register(app_url, **kw)
        return out

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()
        await super().aclose()


@contextmanager
def stack(database_url: str | None = None, replicas: int = 1
          ) -> Iterator[tuple[Client, str, procs.Proc]]:
    """The bench app under uvicorn and ``replicas`` orchestrators, on loopback; a client
    (spreading its runs over the replicas if several); the first orchestrator."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    app, app_url = procs.app(tmp, "bench.app:app")
    orchs = [procs.orchestrator(tmp, db_url=database_url, app_url=app_url,
                                lease_ttl=None)  # the defaults, not the tests' settings
             for _ in range(replicas)]
    app.start()
    try:
        for orch, _ in orchs:  # one by one: replicas creating the schema at once race
            orch.start()
        assert app.proc is not None
        PROCESSES.app = app.proc.pid
        PROCESSES.orchestrators = [o.proc.pid for o, _ in orchs if o.proc is not None]
        # the SDK's lean transport, opted in: the client shares the cores it measures
        clients = [Client(orchestrator_url=base, api_key=procs.API_KEY,
                          transport=AppTransport()) for _, base in orchs]
        yield (clients[0] if len(clients) == 1 else Spread(clients)), app_url, orchs[0][0]
    finally:
        for orch, _ in orchs:
            orch.stop()
        app.stop()


Bench = Callable[[Client, str, int, int], Awaitable[dict[str, str]]]


def run(bench: Bench) -> None:
    """Parse ``--repeat``/``--database-url``/``--pg``/``--replicas``, start the stack,
    run ``bench(client, app url, orchestrator pid, repeat)`` and print its figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--pg", action="store_true",
                    help="a throwaway PostgreSQL cluster at the server's default durability")
    ap.add_argument("--replicas", type=int, default=1,
                    help="orchestrators on the same database (PostgreSQL)")
    ap.add_argument("--statements", action="store_true",
                    help="with --pg: load pg_stat_statements (bench.throughput prints the "
                         "statements per run)")
    args = ap.parse_args()
    cluster: PgCluster | None = None
    url = args.database_url
    if args.pg:
        cluster = PgCluster(durable=True, stat_statements=args.statements).start()
        PROCESSES.statements = args.statements
        url = cluster.create_db()
        PROCESSES.postgres = cluster.postmaster_pid()
    if url and url.startswith("postgres"):
        PROCESSES.database_url = url
    if args.replicas > 1 and not (url or "").startswith("postgres"):
        ap.error("--replicas needs PostgreSQL (--pg or --database-url postgresql://...)")
    try:
        settings = asyncio.run(cluster.settings()) if cluster is not None else None
        with stack(url, args.replicas) as (client, app_url, orch):
            assert orch.proc is not None
            pid = orch.proc.pid

            async def go() -> dict[str, str]:
                await client.register(app_url)
                try:
                    return await bench(client, app_url, pid, args.repeat)
                finally:
                    await client.aclose()

            figures = asyncio.run(go())
    finally:
        if cluster is not None:
            cluster.stop()
    print(header(url, args.repeat, args.replicas, settings))
    for k, v in figures.items():
        print(f"{k:<50} {v}")


def header(database_url: str | None, repeat: int, replicas: int = 1,
           settings: dict[str, str] | None = None) -> str:
    sync = os.environ.get("DURABLE_SQLITE_SYNCHRONOUS", "full").lower()
    db = database_url or f"SQLite (file, WAL, synchronous={sync.upper()})"
    if settings:
        db = "PostgreSQL " + " ".join(f"{k}={v}" for k, v in settings.items())
    return (f"# {platform.node()} {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{db}, {replicas} orchestrator(s), medians of {repeat}")
