"""Statements an idle replica runs on PostgreSQL, per minute.

``python -m bench.idle_queries [--seconds 60] [--replicas 1]`` starts a throwaway
PostgreSQL cluster with ``pg_stat_statements``, the test app and the replicas (default
settings: no run, no cron, the app registered), waits for them to settle, then counts
every statement run on their database (BEGIN and COMMIT included) over the window, and
prints the figure per replica and minute and the statements that made it up.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.support.pg import PgCluster, statement_counts
from tests.support.replicas import replicas


async def measure(url: str, seconds: float) -> dict[str, int]:
    """The statements run on ``url`` over the next ``seconds``, by query text."""
    await statement_counts(url, reset=True)
    await asyncio.sleep(seconds)
    return await statement_counts(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="the window counted")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds waited after start before counting")
    args = ap.parse_args()
    cluster = PgCluster(stat_statements=True).start()
    try:
        url = cluster.create_db()
        with replicas(args.replicas, url, Path(tempfile.mkdtemp(prefix="bench-idle-")),
                      lease_ttl=None):
            time.sleep(args.settle)
            counts = asyncio.run(measure(url, args.seconds))
    finally:
        cluster.stop()
    total = sum(counts.values())
    per_min = total / args.seconds * 60 / args.replicas
    print(f"{total} statements in {args.seconds:g} s over {args.replicas} idle replica(s): "
          f"{per_min:.1f} per replica and minute")
    for query, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:6d}  {' '.join(query.split())[:110]}")


if __name__ == "__main__":
    main()
