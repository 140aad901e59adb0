"""bench/compare.py reads the peer's table and bench.core's lines, and computes ratios."""

from __future__ import annotations

from bench.compare import ROWS, parse_ours, parse_peer, ratio, table

PEER = """
| measurement | metric | min | median | reps |
|---|---|---|---|---|
| a_chain100_single | wall | 160.2 ms | 170.5 ms | 5 |
| a_chain100_single | cores busy (median) | server 0.40 | | |
| b_200x_chain5_concurrent | wall | 850.0 ms | 900.0 ms | 5 |
| c_fanout50_single | wall | 90.0 ms | 95.0 ms | 5 |
| d_latency_noop (n=200 sequential) | p50 latency | 8.0 ms | 8.2 ms | 3 |
| d_latency_chain(1) (n=200 sequential) | p50 latency | 9.0 ms | 9.5 ms | 3 |
| d_latency_chain(1) (n=200 sequential) | p99 latency | 12.0 ms | 13.0 ms | 3 |
| e_throughput_chain1_c50_10s | runs/s (completed in window) | 250.0 | 260.0 | 3 |
| e_throughput_chain1_c50_10s | runs/s (incl. tail after window) | 251.0 | 261.0 | 3 |
"""

OURS = """# vm 2 cores, Python 3.11.7, SQLite (file, WAL, synchronous=FULL), 1 orchestrator(s)
one run of 100 sequential steps                    10.0 ms
200 concurrent runs of 5 steps                     300.0 ms
one run fanning out to 50 children, gathered       38.0 ms
one-step run, trigger to result, p50 / p99         3.8 / 6.5 ms
no-step run, trigger to result, p50 / p99          3.0 / 5.0 ms
  CPU per run at concurrency 50                    orchestrator 1 1.0 (ms CPU per run)
one-step runs/s at concurrency 50 (p50 latency)    1,040/s (45.0 ms)
"""


def test_both_outputs_are_read_row_by_row() -> None:
    peer, ours = parse_peer(PEER), parse_ours(OURS)
    assert peer == {"100 sequential steps": 170.5, "200 concurrent runs of 5 steps": 900.0,
                    "fan-out to 50 children, gathered": 95.0, "one-step run p50": 9.5,
                    "one-step run p99": 13.0, "one-step runs/s at concurrency 50": 260.0}
    assert ours == {"100 sequential steps": 10.0, "200 concurrent runs of 5 steps": 300.0,
                    "fan-out to 50 children, gathered": 38.0, "one-step run p50": 3.8,
                    "one-step run p99": 6.5, "one-step runs/s at concurrency 50": 1040.0}


def test_ratios_say_how_many_times_faster_whichever_way_the_unit_goes() -> None:
    by = {r.title: r for r in ROWS}
    assert ratio(by["100 sequential steps"], 170.5, 10.0) == 17.05  # a time: peer / ours
    assert ratio(by["one-step runs/s at concurrency 50"], 260.0, 1040.0) == 4.0  # a rate
    out = table([parse_peer(PEER)], [parse_ours(OURS)])
    assert "| one-step runs/s at concurrency 50 | 260/s | 1040/s | 4.00x |" in out
    assert "| fan-out to 50 children, gathered | 95 ms | 38 ms | 2.50x |" in out
