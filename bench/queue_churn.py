"""The queue table's churn on PostgreSQL, with and without its per-table settings.

    python -m bench.queue_churn [--runs 3000] [--concurrency 50] [--parked 20000]
                                [--defaults] [--database-url postgresql://...]

Parks ``--parked`` rows in the queue (due in 2100: as sleeping or waiting runs' rows
are), then runs ``--runs`` one-step runs (``bench-chain`` of 1) through an orchestrator
on PostgreSQL (a throwaway cluster, unless ``--database-url``), ``--concurrency`` at a
time: each inserts its queue row and deletes it when the run ends. Prints the queue
table's figures from ``pg_stat_user_tables`` before and after: inserts, updates (and how
many were HOT), deletes, dead tuples, autovacuum and autoanalyze counts, and the table's
size with its indexes. ``--defaults`` first resets the table's storage options
(migration 0003) to PostgreSQL's defaults, for comparison; ``--fillfactor`` sets that
one option.

The throwaway cluster checks for tables to vacuum every 5 s (``autovacuum_naptime``;
the default, 1 min, is longer than a run of this bench): that changes how soon a vacuum
starts once the table qualifies, not when it qualifies (the per-table settings).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Connection, text

from bench.common import stack
from orchestrator.store import migrate
from tests.support.pg import PgCluster

STATS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "n_live_tup", "n_dead_tup",
         "autovacuum_count", "autoanalyze_count")


def figures(url: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(text(
            f"SELECT {', '.join(STATS)}, pg_total_relation_size('queue') AS bytes, "
            "(SELECT reloptions FROM pg_class WHERE relname = 'queue') AS options "
            "FROM pg_stat_user_tables WHERE relname = 'queue'")).mappings().one()
        return dict(row)
    return migrate.on_connection(url, read)


async def _naptime(url: str, value: str) -> None:
    conn = await asyncpg.connect(url)  # ALTER SYSTEM runs outside a transaction
    try:
        await conn.execute(f"ALTER SYSTEM SET autovacuum_naptime = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--parked", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--defaults", action="store_true",
                    help="reset the queue table's options to PostgreSQL's defaults first")
    ap.add_argument("--fillfactor", type=int, default=None,
                    help="set the queue table's fillfactor to this first (10-100)")
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    cluster = None
    url = args.database_url
    if url is None:
        cluster = PgCluster().start()
        url = cluster.create_db()
        asyncio.run(_naptime(url, "5s"))
    try:
        migrate.upgrade(url)
        if args.defaults:
            migrate.on_connection(url, lambda c: c.execute(text(
                "ALTER TABLE queue RESET (fillfactor, autovacuum_vacuum_scale_factor, "
                "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor)")))
        if args.fillfactor is not None:
            migrate.on_connection(url, lambda c: c.execute(text(
                f"ALTER TABLE queue SET (fillfactor = {int(args.fillfactor)})")))
        migrate.on_connection(url, lambda c: c.execute(text(
            "INSERT INTO queue (run_id, due_at, claims, delivery_failures) "
            "SELECT 'parked-' || g, 4102444800, 0, 0 FROM generate_series(1, :n) g"),
            {"n": args.parked}))
        time.sleep(12)  # the vacuum and analyze the parked rows make due have run
        with stack(url) as (client, app_url, _orch):
            async def go() -> float:
                await client.register(app_url)
                left = args.runs

                async def worker() -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        h = await client.run_no_wait("bench-chain", 1)
                        await h.result(timeout=120)
                try:
                    print("before:", figures(url))
                    t0 = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                    return time.perf_counter() - t0
                finally:
                    await client.aclose()

            took = asyncio.run(go())
            time.sleep(2)  # the statistics are flushed at most every second
            after = figures(url)
            print(f"{args.runs} runs in {took:.1f} s ({args.runs / took:.0f}/s)")
            print("after: ", after)
            time.sleep(12)  # two naptimes: a vacuum the churn made due has run
            print("+12 s: ", figures(url))
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
