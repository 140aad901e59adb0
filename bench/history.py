"""Listing and filtering runs through the API over a large history (issue 14, §3).

    python -m bench.history [--runs 1000000] [--repeat 20]

Fills a fresh SQLite database (migrated by the orchestrator itself) with ``--runs`` ended
runs of 10 functions, spread over 30 days, in every ended status, written straight into
the ``runs`` table in large transactions (as years of real traffic would leave them,
without running each one); then starts ``orchestrator dev`` on it and times each listing
the dashboard and the API offer: the newest page, by function, by status, by function
and status, by a time window, the next page through a cursor, and the counts per status
(``GET /runs/counts``, which the dashboard's overview reads). Prints the median and
the worst of ``--repeat`` requests each, the database's size and the orchestrator's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import header
from tests.support import procs

FUNCTIONS = [f"history-fn-{i}" for i in range(10)]
STATUSES = ["completed"] * 8 + ["failed", "cancelled"]
DAYS = 30


def fill(db: Path, n: int) -> None:
    """``n`` ended runs, oldest first over the last ``DAYS`` days."""
    now = time.time()
    start = now - DAYS * 86400
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")  # the bench's own bulk load, not the product's
    batch = 50_000
    for lo in range(0, n, batch):
        rows = []
        for i in range(lo, min(n, lo + batch)):
            t = start + (now - start) * i / n
            rid = f"{int(t * 1000):012x}{secrets.token_hex(10)}"
            status = STATUSES[i % len(STATUSES)]
            rows.append((rid, FUNCTIONS[i % len(FUNCTIONS)], status, f'{{"i": {i}}}',
                         "1" if status == "completed" else None, t, t, t + 0.01))
        con.executemany(
            "INSERT INTO runs (id, function, status, attempt, input_json, output_json, "
            "child_index, parent_waits, pending_children, created_at, started_at, "
            "ended_at, priority) VALUES (?, ?, ?, 0, ?, ?, 0, 0, 0, ?, ?, ?, 1)", rows)
        con.commit()
    con.execute("ANALYZE")
    con.commit()
    con.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def timed(rest: httpx.AsyncClient, params: dict[str, str], repeat: int
                ) -> tuple[float, float, int]:
    ts: list[float] = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = await rest.get("/runs", params=params)
        ts.append(time.perf_counter() - t0)
        r.raise_for_status()
        count = len(r.json()["runs"])
    return statistics.median(ts) * 1000, max(ts) * 1000, count


async def measure(base: str, repeat: int) -> dict[str, str]:
    now = time.time()
    out: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60, headers={
            "authorization": f"Bearer {procs.API_KEY}"}) as rest:
        first = (await rest.get("/runs")).json()
        cursor = first.get("next_cursor") or first.get("cursor")
        cases: dict[str, dict[str, str]] = {
            "newest page (no filter)": {},
            "one function": {"function": FUNCTIONS[3]},
            "one status (failed)": {"status": "failed"},
            "function and status": {"function": FUNCTIONS[8], "status": "failed"},
            "a one-hour window 10 days ago": {"since": str(now - 10 * 86400 - 3600),
                                               "until": str(now - 10 * 86400)},
        }
        if cursor:
            cases["the next page (cursor)"] = {"cursor": str(cursor)}
        for name, params in cases.items():
            p50, worst, count = await timed(rest, params, repeat)
            out[name] = f"{p50:.1f} ms median, {worst:.1f} ms worst ({count} runs a page)"
        for name, params in {
                "counts per status, all time": {},
                "counts per status, one function, last day": {
                    "function": FUNCTIONS[3], "since": str(now - 86400)}}.items():
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = await rest.get("/runs/counts", params=params)
                ts.append(time.perf_counter() - t0)
                r.raise_for_status()
            out[name] = (f"{statistics.median(ts) * 1000:.1f} ms median, "
                         f"{max(ts) * 1000:.1f} ms worst (total {r.json()['total']:,})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    db = tmp / "history.db"
    url = f"sqlite:///{db}"
    orch, base = procs.orchestrator(tmp, db_url=url, lease_ttl=None)
    orch.start()  # migrates the empty database
    orch.stop()
    t0 = time.perf_counter()
    fill(db, args.runs)
    filled = time.perf_counter() - t0
    orch, base = procs.orchestrator(tmp, db_url=url, lease_ttl=None)
    orch.start()
    try:
        assert orch.proc is not None
        figures = asyncio.run(measure(base, args.repeat))
        rss = rss_mb(orch.proc.pid)
    finally:
        orch.stop()
    print(header(None, args.repeat))
    print(f"{'ended runs in the database':<40} {args.runs:,} (written in {filled:.0f} s; "
          f"database {os.path.getsize(db) / 2**20:.0f} MiB)")
    for k, v in figures.items():
        print(f"{k:<40} {v}")
    print(f"{'orchestrator RSS after the listings':<40} {rss:.0f} MiB")


if __name__ == "__main__":
    main()
