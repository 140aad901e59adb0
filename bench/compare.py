"""Side by side with the fastest peer, in one run: alternate Restate's benchmark
(``../shared/peers/restate-bench.sh``) and ``bench.core``, and print each row's figures
per round and the ratio (how many times faster we are; above 1 is ahead).

    python -m bench.compare --rounds 2 [--repeat 7] [--peer ../shared/peers/restate-bench.sh]
    bash bench/compare.sh                      # the same, with the defaults

Our durability is printed in ``bench.core``'s header (SQLite ``synchronous=FULL`` by
default; ``DURABLE_SQLITE_SYNCHRONOUS=normal`` for the cheaper mode). Restate fsyncs its
log before it acknowledges.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER = ROOT.parent / "shared" / "peers" / "restate-bench.sh"


@dataclass(frozen=True)
class Row:
    title: str
    peer: str
    """The peer table's measurement name (its prefix) and metric."""
    peer_metric: str
    ours: str
    """The line of ``bench.core``'s output."""
    rate: bool = False
    """A rate (higher is better) rather than a time."""
    part: int = 0
    """Which number of our line (``p50 / p99``: 0 is the p50)."""


ROWS = (
    Row("100 sequential steps", "a_chain100", "wall", "one run of 100 sequential steps"),
    Row("200 concurrent runs of 5 steps", "b_200x_chain5", "wall",
        "200 concurrent runs of 5 steps"),
    Row("fan-out to 50 children, gathered", "c_fanout50", "wall",
        "one run fanning out to 50 children, gathered"),
    Row("one-step run p50", "d_latency_chain(1)", "p50 latency",
        "one-step run, trigger to result, p50 / p99"),
    Row("one-step run p99", "d_latency_chain(1)", "p99 latency",
        "one-step run, trigger to result, p50 / p99", part=1),
    Row("one-step runs/s at concurrency 50", "e_throughput_chain1_c50",
        "runs/s (completed in window)", "one-step runs/s at concurrency 50 (p50 latency)",
        rate=True),
)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _number(text: str, part: int = 0) -> float:
    found = _NUMBER.findall(text.replace(",", ""))
    if len(found) <= part:
        raise ValueError(f"no number {part} in {text!r}")
    return float(found[part])


def parse_peer(output: str) -> dict[str, float]:
    """Restate's table (``| measurement | metric | min | median | reps |``): each row's
    median, in ms (times) or per second (rates)."""
    out: dict[str, float] = {}
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in output.splitlines() if line.lstrip().startswith("|")]
    for row in ROWS:
        for c in cells:
            if len(c) >= 4 and c[0].startswith(row.peer) and c[1] == row.peer_metric:
                out[row.title] = _number(c[3])
                break
    return out


def parse_ours(output: str) -> dict[str, float]:
    """``bench.core``'s lines (``<name padded>  <figure>``)."""
    out: dict[str, float] = {}
    for row in ROWS:
        for line in output.splitlines():
            if line.startswith(row.ours):
                out[row.title] = _number(line[len(row.ours):], row.part)
                break
    return out


def ratio(row: Row, peer: float, ours: float) -> float:
    """How many times faster we are (above 1: ahead)."""
    return ours / peer if row.rate else peer / ours


def table(peer: Sequence[dict[str, float]], ours: Sequence[dict[str, float]]) -> str:
    lines = ["| workload | peer (each round) | ours (each round) | ratio (medians) |",
             "|---|---|---|---|"]
    for row in ROWS:
        p = [r[row.title] for r in peer if row.title in r]
        o = [r[row.title] for r in ours if row.title in r]
        unit = "/s" if row.rate else " ms"
        fig = ", ".join
        r = (f"{ratio(row, statistics.median(p), statistics.median(o)):.2f}x"
             if p and o else "n/a")
        lines.append(f"| {row.title} | {fig(f'{x:g}{unit}' for x in p)} | "
                     f"{fig(f'{x:g}{unit}' for x in o)} | {r} |")
    return "\n".join(lines)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    print(f"# {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
        raise SystemExit(f"{cmd[0]} exited with {done.returncode}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7, help="bench.core's --repeat")
    ap.add_argument("--peer", type=Path, default=DEFAULT_PEER)
    args = ap.parse_args()
    peer: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    header = ""
    for i in range(args.rounds):
        print(f"# round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
        peer.append(parse_peer(_run(["bash", str(args.peer)])))
        got = _run([sys.executable, "-m", "bench.core", "--repeat", str(args.repeat)])
        header = next((ln for ln in got.splitlines() if ln.startswith("#")), header)
        ours.append(parse_ours(got))
    print(header)
    print(table(peer, ours))


if __name__ == "__main__":
    main()
