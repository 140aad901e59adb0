"""A long durable loop (issue 14, §3): does an iteration cost the same at 1,000 as at 10?

    python -m bench.loop [--iterations 1000] [--sleep-ms 10] [--repeat 1]

Runs ``bench-loop``: ``--iterations`` times a step, then a ``--sleep-ms`` durable sleep
(each iteration is two calls: the step's, and the wake-up's). Each step records the app's
clock and CPU time when it ran; from them it prints, for windows of iterations, the wall
time of an iteration (step to step: the sleep, the wake-up, two calls and their
records), the app's CPU per iteration, and the orchestrator's (sampled every 20 ms).
The goal: the cost at iteration 1,000 within 2x of iteration 10.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import statistics
import sys
import time
from typing import Any

from bench.common import cpu_seconds, run
from sdk import Client

WINDOW = 50


def windows(n: int) -> list[int]:
    """The first iteration of each window of ``WINDOW`` reported: from 10, 100, 500, and
    the last (those that fit in ``n``)."""
    starts = [10, 100, 500, n - WINDOW]
    return sorted({s for s in starts if 0 < s <= n - WINDOW})


def interpolate(samples: list[tuple[float, float]], t: float) -> float:
    """The value at time ``t`` of a counter sampled as (time, value), in time order."""
    i = bisect.bisect_left(samples, (t, -math.inf))
    if i <= 0:
        return samples[0][1]
    if i >= len(samples):
        return samples[-1][1]
    (t0, v0), (t1, v1) = samples[i - 1], samples[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def curve(stamps: list[tuple[float, float]], n: int,
          orch: list[tuple[float, float]]) -> dict[int, tuple[float, float, float]]:
    """Per window start i: the median wall time and the app's CPU (ms) of iterations
    i..i+WINDOW-1 (an iteration: from one step's stamp to the next's), and the
    orchestrator's mean CPU per iteration over them (``orch``: its CPU seconds sampled
    as (time, seconds))."""
    out: dict[int, tuple[float, float, float]] = {}
    for i in windows(n):
        ks = [k for k in range(i, i + WINDOW) if k + 1 < len(stamps)]
        if not ks:
            continue
        wall = [stamps[k + 1][0] - stamps[k][0] for k in ks]
        cpu = [stamps[k + 1][1] - stamps[k][1] for k in ks]
        t0, t1 = stamps[ks[0]][0], stamps[ks[-1] + 1][0]
        o = (interpolate(orch, t1) - interpolate(orch, t0)) / len(ks) if orch else 0.0
        out[i] = (statistics.median(wall) * 1000, statistics.median(cpu) * 1000, o * 1000)
    return out


def stamps_of(run: dict[str, Any]) -> list[tuple[float, float]]:
    steps = [s for s in run.get("steps", []) if s["kind"] == "step"]
    return [(float(s["output"][0]), float(s["output"][1])) for s in steps]


async def sample_cpu(pid: int, into: list[tuple[float, float]], every: float = 0.02) -> None:
    """Append (time, CPU seconds of ``pid``) every ``every`` seconds until cancelled."""
    while True:
        into.append((time.time(), cpu_seconds(pid)))
        await asyncio.sleep(every)


_ARGS = argparse.ArgumentParser(add_help=False)
_ARGS.add_argument("--iterations", type=int, default=1000)
_ARGS.add_argument("--sleep-ms", type=float, default=10.0)
ARGS, _rest = _ARGS.parse_known_args()
sys.argv = [sys.argv[0], *_rest]


async def bench(client: Client, app_url: str, pid: int, repeat: int) -> dict[str, str]:
    n = ARGS.iterations
    out: dict[str, str] = {}
    for r in range(max(1, repeat)):
        cpu0 = cpu_seconds(pid)
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_cpu(pid, samples))
        t0 = time.perf_counter()
        h = await client.run_no_wait("bench-loop", {"n": n, "sleep_ms": ARGS.sleep_ms})
        done = await client.wait(h.id, timeout=3600)
        wall = time.perf_counter() - t0
        sampler.cancel()
        cpu = cpu_seconds(pid) - cpu0
        assert done["status"] == "completed" and done["output"] == n, done
        stamps = stamps_of(await client.get_run(h.id))
        for i, (w, c, o) in curve(stamps, n, samples).items():
            out[f"round {r + 1}: iterations {i}-{i + WINDOW - 1}, wall / app / orch."] = (
                f"{w:.1f} / {c:.2f} / {o:.2f} ms")
        out[f"round {r + 1}: whole loop ({n} iterations)"] = (
            f"{wall:.1f} s; orchestrator CPU {cpu * 1000 / n:.2f} ms per iteration")
    return out


if __name__ == "__main__":
    run(bench)
