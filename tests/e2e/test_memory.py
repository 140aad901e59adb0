"""The orchestrator gives back what large memos took once their runs have ended
(bench/memory.py prints the figures)."""

from __future__ import annotations

from bench.memory import measure


def test_rss_after_large_memo_runs_comes_back_down() -> None:
    # 6 runs of 15 one-MiB steps: each call carries a memo of up to 15 MiB each way.
    # Before: 290-293 MiB stayed resident (78 MiB at start); now ~234 MiB, of which up
    # to 64 MiB per SQLite connection is its page cache (PRAGMA cache_size).
    before, _peak, after, _took = measure(runs=6, steps=15, concurrency=2)
    assert after - before < 185, (before, after)
