"""Fault-injection harness: proof that nothing is lost under faults.

    python -m bench.faults --runs 300 --workflows 50 --duration 60 --replicas 3 \\
        --kill-every 5 --seed 1

starts a local cluster (``infra.cluster``: PostgreSQL, the replicas, and
``bench.faults_app``, whose middleware answers some calls with 500, hangs past the call
timeout or drops the connection), creates a cron firing every second, and starts the
runs (a 5-step task, a 5-task DAG workflow) through random replicas over the first part
of ``--duration``. Meanwhile a chaos loop SIGKILLs a random replica every ~``--kill-every``
seconds and starts it again after a short pause (one replica down at most), and
PostgreSQL is crashed (``immediate``) and restarted once, half-way. Then the faults stop,
every run is waited for (a run not ended within ``--settle`` seconds is *stuck*), the
cron is paused and deleted, and the checks run:

- every run completed with the right output (read through the API);
- no step recorded twice (unique step ids in every run's and task run's memo), and every
  step's side effect ran;
- every re-execution of a step's side effect is attributed to a fault that hit a call in
  flight (``attribute``), none unexplained;
- every cron tick from the first fire to the last fired exactly once, but for the ticks
  of the PostgreSQL outage (missed ticks collapse into one fire, by design);
- no run lost: every run the harness was answered for exists and ended.

It prints one JSON summary and exits 1 if a check fails (``summary["failed"]`` says which).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.faults_app import CHAIN_STEPS, chain_expected, dag_expected
from infra.cluster import Cluster

CALL_TIMEOUT = 2.0
"""The replicas' ``DURABLE_CALL_TIMEOUT``; a hung call lasts longer (``HANG_S``)."""
HANG_S = 3.0
LEASE_TTL = 3.0
ENDED = {"completed", "failed", "cancelled", "timed_out", "skipped"}
DAG_TASKS = {"top": ["top"], "left": ["left"], "mid": ["mid-a", "mid-b"],
             "right": ["right"], "bottom": ["bottom"]}


@dataclass
class Params:
    runs: int = 300
    workflows: int = 50
    duration: float = 60.0
    replicas: int = 3
    kill_every: float = 5.0
    seed: int = 1
    p_error: float = 0.03
    p_hang: float = 0.01
    p_drop: float = 0.03
    pg_restart: bool = True
    settle: float = 120.0
    dir: Path | None = None
    keep: bool = False


@dataclass
class Timeline:
    """What the harness did, and when (Unix times)."""

    kills: list[tuple[int, float, frozenset[int] | None]] = field(default_factory=list)
    """(replica, when, the local ports of its connections to the app: None if unknown)."""
    restarts: list[tuple[int, float]] = field(default_factory=list)
    pg: list[tuple[float, float, float]] = field(default_factory=list)
    """(stopped, started, every replica ready again) per PostgreSQL restart."""
    api_retries: int = 0
    submit_errors: list[str] = field(default_factory=list)


def attribute(t: float, call: str | None, faulted: dict[str, str], tl: Timeline,
              call_timeout: float = CALL_TIMEOUT, peer: int | None = None) -> str | None:
    """Why an execution of a step at ``t`` under ``call`` (sent from port ``peer``) may
    have had its answer lost, so that the step ran again: a fault injected on that very
    call (its kind); a replica SIGKILLed while the call could have been in flight (it
    started at most the call timeout before the kill: the execution is within [kill -
    timeout - 1 s, kill + 1 s]) and, when the killed replica's connections are known,
    sent over one of them; or the PostgreSQL restart while it could have been in flight
    (within [stop - timeout - 1 s, every replica ready + 1 s]); None: nothing explains
    it."""
    if call is not None and call in faulted:
        return faulted[call]
    for _, k, ports in tl.kills:
        if (k - call_timeout - 1.0 <= t <= k + 1.0
                and (ports is None or peer is None or peer in ports)):
            return "replica-kill"
    for stop, _, ready in tl.pg:
        if stop - call_timeout - 1.0 <= t <= ready + 1.0:
            return "pg-restart"
    return None


def app_ports(pid: int, app_port: int | None) -> frozenset[int] | None:
    """The local ports of process ``pid``'s TCP connections to ``app_port`` on loopback
    (from /proc: Linux); None if they cannot be read."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == app_port:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        return frozenset(ports)
    except (OSError, IndexError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut off by a kill (the app is never killed: not expected)
    return out


class Harness:
    def __init__(self, p: Params) -> None:
        self.p = p
        self.rng = random.Random(p.seed)
        self.tl = Timeline()
        self.cluster: Cluster | None = None
        self.runs: dict[str, tuple[str, int]] = {}
        """run id -> (function, input) of every run the API answered for."""
        self.cron_id: str | None = None

    # -- the API, through any replica that answers ------------------------------------------

    def _headers(self) -> dict[str, str]:
        assert self.cluster is not None
        return {"authorization": f"Bearer {self.cluster.api_key}"}

    async def call(self, http: httpx.AsyncClient, method: str, path: str,
                   body: Any = None, *, deadline: float = 60.0) -> httpx.Response:
        """A request to a random replica; on a refused connection, a timeout or a 5xx,
        sent again to another after a short pause, until ``deadline`` seconds pass."""
        assert self.cluster is not None
        end = time.monotonic() + deadline
        last = ""
        while True:
            i = self.rng.randrange(len(self.cluster.urls))
            try:
                r = await http.request(method, self.cluster.api(i) + path, json=body,
                                       headers=self._headers(), timeout=10)
                if r.status_code < 500:
                    return r
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            self.tl.api_retries += 1
            if time.monotonic() > end:
                raise RuntimeError(f"{method} {path}: no replica answered ({last})")
            await asyncio.sleep(0.2)

    # -- phases -----------------------------------------------------------------------------

    async def submit(self, http: httpx.AsyncClient, span: float) -> None:
        """Start every run, spread over ``span`` seconds, interleaved at random; each has
        an idempotency key, so a request retried after a lost answer starts no second
        run."""
        work = ([("fp-chain", i) for i in range(self.p.runs)]
                + [("fp-dag", i) for i in range(self.p.workflows)])
        self.rng.shuffle(work)
        start = time.monotonic()
        sem = asyncio.Semaphore(16)

        async def one(k: int, fn: str, x: int) -> None:
            await asyncio.sleep(max(0.0, start + span * k / max(1, len(work))
                                    - time.monotonic()))
            key = f"fp-{self.p.seed}-{fn}-{x}"
            async with sem:
                try:
                    r = await self.call(http, "POST", "/runs", {
                        "function": fn, "input": x, "idempotency_key": key})
                except RuntimeError as exc:
                    self.tl.submit_errors.append(str(exc))
                    return
            if r.status_code != 201:
                self.tl.submit_errors.append(f"{fn} {x}: {r.status_code} {r.text[:200]}")
                return
            self.runs[r.json()["id"]] = (fn, x)

        await asyncio.gather(*(one(k, fn, x) for k, (fn, x) in enumerate(work)))

    async def chaos(self, until: float) -> None:
        """SIGKILL a random replica every ~kill_every s (at random moments), start it
        again 0.5-2 s later; one replica down at most. PostgreSQL restarted once, at the
        first chance after half the time."""
        c = self.cluster
        assert c is not None
        pg_at = time.monotonic() + self.p.duration / 2 if self.p.pg_restart else None
        last = time.monotonic()
        while True:
            # at random moments: the next one ~kill_every after the last one began
            last += self.rng.uniform(0.5, 1.5) * self.p.kill_every
            await asyncio.sleep(max(0.2, last - time.monotonic()))
            last = time.monotonic()
            if time.monotonic() >= until:
                return
            if pg_at is not None and time.monotonic() >= pg_at:
                pg_at = None
                stopped = time.time()
                await asyncio.to_thread(c.stop_postgres, "immediate")
                await asyncio.sleep(self.rng.uniform(0.5, 1.5))
                await asyncio.to_thread(c.start_postgres)
                started = time.time()
                await self.all_ready(60)
                self.tl.pg.append((stopped, started, time.time()))
                continue
            if len(c.replicas) < 2:
                continue  # never all at once
            i = self.rng.randrange(len(c.replicas))
            pid = c.replicas[i].pid
            # stopped first, so the connections read are all it has when it dies
            if pid is not None:
                os.kill(pid, signal.SIGSTOP)
            ports = app_ports(pid, c.app_port) if pid is not None else None
            c.kill_replica(i)
            self.tl.kills.append((i, time.time(), ports))
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            await asyncio.to_thread(c.start_replica, i, 60)
            self.tl.restarts.append((i, time.time()))

    async def all_ready(self, timeout: float) -> bool:
        """Wait until every replica answers /readyz with 200."""
        assert self.cluster is not None
        end = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=3) as http:
            while time.monotonic() < end:
                ok = 0
                for u in self.cluster.urls:
                    try:
                        ok += (await http.get(f"{u}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        pass
                if ok == len(self.cluster.urls):
                    return True
                await asyncio.sleep(0.2)
        return False

    async def settle(self, http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
        """Every run, read once it ended; runs not ended within ``settle`` s are left
        with their last state."""
        got: dict[str, dict[str, Any]] = {}
        end = time.monotonic() + self.p.settle

        while True:
            todo = [rid for rid in self.runs
                    if rid not in got or got[rid]["status"] not in ENDED]
            if not todo:
                break
            got.update(await self.read_runs(http, todo))
            if time.monotonic() > end:
                break
            await asyncio.sleep(1.0)
        return got

    async def read_runs(self, http: httpx.AsyncClient,
                        ids: list[str]) -> dict[str, dict[str, Any]]:
        """GET /runs/{id} of each (16 at a time)."""
        out: dict[str, dict[str, Any]] = {}
        sem = asyncio.Semaphore(16)

        async def read(rid: str) -> None:
            async with sem:
                r = await self.call(http, "GET", f"/runs/{rid}", deadline=30)
            if r.status_code == 200:
                out[rid] = r.json()

        await asyncio.gather(*(read(rid) for rid in ids))
        return out

    async def task_runs(self, http: httpx.AsyncClient,
                        runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The task runs of every workflow run (their memos and side effects)."""
        return await self.read_runs(http, [ch["id"] for run in runs.values()
                                           if run["function"] == "fp-dag"
                                           for ch in run["children"]])

    async def list_ids(self, http: httpx.AsyncClient, function: str) -> list[str]:
        """The ids of every run of ``function`` (GET /runs, page by page)."""
        ids: list[str] = []
        cursor = ""
        while True:
            r = await self.call(http, "GET", f"/runs?function={function}&limit=500"
                                f"{'&cursor=' + cursor if cursor else ''}")
            page = r.json()
            ids += [x["id"] for x in page["runs"]]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return ids

    async def cron_runs(self, http: httpx.AsyncClient) -> list[dict[str, Any]]:
        """Every run of the cron's function."""
        ids = await self.list_ids(http, "fp-tick")
        return list((await self.read_runs(http, ids)).values())

    # -- the whole --------------------------------------------------------------------------

    async def go(self) -> dict[str, Any]:
        p = self.p
        root = p.dir
        cluster = Cluster(p.replicas, root=root, keep=p.keep, lease_ttl=LEASE_TTL,
                          app_target="bench.faults_app:app", env={
                              "DURABLE_CALL_TIMEOUT": str(CALL_TIMEOUT),
                              "DURABLE_DELIVERY_BACKOFF_MAX": "1"})
        folder = cluster.root
        folder.mkdir(parents=True, exist_ok=True)
        effects, faults, switch = (folder / "effects.jsonl", folder / "faults.jsonl",
                                   folder / "faults.switch")
        switch.write_text("off")
        cluster.app_env = {
            "FAULTS_EFFECTS": str(effects), "FAULTS_LOG": str(faults),
            "FAULTS_SWITCH": str(switch), "FAULT_P_ERROR": str(p.p_error),
            "FAULT_P_HANG": str(p.p_hang), "FAULT_P_DROP": str(p.p_drop),
            "FAULT_HANG_S": str(HANG_S), "FAULT_SEED": str(p.seed)}
        self.cluster = cluster
        began = time.time()
        await asyncio.to_thread(cluster.start)
        try:
            async with httpx.AsyncClient() as http:
                r = await self.call(http, "POST", "/crons", {
                    "function": "fp-tick", "expression": "* * * * * *"})
                assert r.status_code == 201, r.text
                self.cron_id = r.json()["id"]
                switch.write_text("on")
                chaos_began = time.time()
                until = time.monotonic() + p.duration
                await asyncio.gather(self.submit(http, p.duration * 0.7),
                                     self.chaos(until))
                await asyncio.sleep(max(0.0, until - time.monotonic()))
                switch.write_text("off")
                chaos_ended = time.time()
                for i, rep in enumerate(cluster.replicas):
                    if not rep.running:
                        await asyncio.to_thread(cluster.start_replica, i, 60)
                runs = await self.settle(http)
                r = await self.call(http, "POST", f"/crons/{self.cron_id}/pause")
                paused = r.status_code == 200
                await asyncio.sleep(1.5)  # a fire begun before the pause ends
                tasks = await self.task_runs(http, runs)
                listed = {fn: set(await self.list_ids(http, fn))
                          for fn in ("fp-chain", "fp-dag")}
                ticks = await self.cron_runs(http)
                r = await self.call(http, "DELETE", f"/crons/{self.cron_id}")
                deleted = r.status_code == 204
        finally:
            await asyncio.to_thread(cluster.stop)
        summary = self.check(runs, tasks, ticks, read_jsonl(effects), read_jsonl(faults),
                             listed)
        summary.update({
            "params": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(p).items()},
            "cron": {**summary["cron"], "paused": paused, "deleted": deleted},
            "duration_s": {"total": round(time.time() - began, 1),
                           "chaos": round(chaos_ended - chaos_began, 1)},
            "folder": str(folder) if (p.keep or p.dir) else None,
        })
        return summary

    def check(self, runs: dict[str, dict[str, Any]], tasks: dict[str, dict[str, Any]],
              ticks: list[dict[str, Any]], effects: list[dict[str, Any]],
              faults: list[dict[str, Any]], listed: dict[str, set[str]]
              ) -> dict[str, Any]:
        failed: list[str] = []
        outcome = Counter(run["status"] for run in runs.values())
        lost = sorted(rid for rid in self.runs if rid not in runs)
        # one run per idempotency key: the API lists no run the harness was not answered
        # (a workflow's task runs may be listed under its name)
        extra = sorted(set().union(*listed.values()) - set(self.runs) - set(tasks))
        stuck = sorted(rid for rid, run in runs.items() if run["status"] not in ENDED)
        wrong: list[str] = []
        dup_memo: list[str] = []
        expected_steps: set[tuple[str, str]] = set()
        for rid, run in runs.items():
            fn, x = self.runs[rid]
            if run["status"] != "completed":
                continue
            if fn == "fp-chain":
                if run["output"] != {"x": x, "result": chain_expected(x)}:
                    wrong.append(rid)
                expected_steps |= {(rid, f"s{i}") for i in range(CHAIN_STEPS)}
            elif run["output"] != dag_expected(x):
                wrong.append(rid)
            memos = [run] + [tasks.get(ch["id"], {"steps": [], "id": ch["id"]})
                             for ch in run["children"]]
            for m in memos:
                ids = [s["id"] for s in m["steps"]]
                if len(ids) != len(set(ids)):
                    dup_memo.append(m["id"])
            for ch in run["children"]:
                if ch["task"] in DAG_TASKS:
                    expected_steps |= {(ch["id"], s) for s in DAG_TASKS[ch["task"]]}
        for t in ticks:
            ids = [s["id"] for s in t["steps"]]
            if len(ids) != len(set(ids)):
                dup_memo.append(t["id"])
            if t["status"] == "completed":
                expected_steps.add((t["id"], "fire"))

        # side effects: executions per (run, step), re-executions attributed
        faulted = {f["call"]: f["kind"] for f in faults if f.get("call")}
        by_step: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for e in effects:
            by_step[(e["run"], e["step"])].append(e)
        never_ran = sorted(f"{r}/{s}" for r, s in expected_steps - set(by_step))
        causes: Counter[str] = Counter()
        unexplained: list[dict[str, Any]] = []
        per_call: Counter[str] = Counter()
        for execs in by_step.values():
            execs.sort(key=lambda e: e["t"])
            for e in execs[:-1]:
                why = attribute(e["t"], e.get("call"), faulted, self.tl,
                                peer=e.get("peer"))
                if why is None:
                    unexplained.append(e)
                else:
                    causes[why] += 1
                    if e.get("call") in faulted:
                        per_call[e["call"]] += 1
        reexec = sum(len(v) - 1 for v in by_step.values())
        stepped = {e.get("call") for e in effects}
        runs_reexec = Counter(r for (r, _), v in by_step.items() if len(v) > 1)
        # one faulted call runs at most the new steps of one call (two: s1 and s2)
        over = {c: n for c, n in per_call.items() if n > 2}

        # cron ticks: fire times from the runs' idempotency keys, cron:<id>:<time>
        fires = Counter(round(float(t["idempotency_key"].rsplit(":", 1)[1]))
                        for t in ticks if t.get("idempotency_key"))
        cron: dict[str, Any] = {"fired": sum(fires.values()), "duplicated": 0,
                                "expected": 0, "gaps": [], "gaps_in_pg_outage": 0,
                                "not_completed": sum(t["status"] != "completed"
                                                     for t in ticks)}
        if fires:
            first, last = min(fires), max(fires)
            expected = range(first, last + 1)
            cron["expected"] = len(expected)
            cron["duplicated"] = sum(n - 1 for n in fires.values())
            gaps = [s for s in expected if s not in fires]
            outage = [g for g in gaps
                      if any(stop - 1 <= g <= ready + 1 for stop, _, ready in self.tl.pg)]
            cron["gaps_in_pg_outage"] = len(outage)
            cron["gaps"] = [g for g in gaps if g not in outage]

        checks = {
            "every run answered for was found (none lost)": not lost,
            "every run ended (none stuck)": not stuck,
            "every run completed": outcome.get("completed", 0) == len(self.runs),
            "every run started (the API answered for each)": not self.tl.submit_errors,
            "one run per start (none started twice by a retried request)": not extra,
            "every output right": not wrong,
            "no step recorded twice (memos)": not dup_memo,
            "every step's side effect ran": not never_ran,
            "every re-execution explained by a fault in flight": not unexplained,
            "a faulted call re-ran at most one call's steps": not over,
            "cron: no tick fired twice": cron["duplicated"] == 0,
            "cron: no gap outside the PostgreSQL outage": not cron["gaps"],
            "cron: ticks fired": cron["fired"] > 0,
            "cron: every tick's run completed": cron["not_completed"] == 0,
        }
        failed = [k for k, ok in checks.items() if not ok]
        return {
            "ok": not failed,
            "failed": failed,
            "runs": {"started": len(self.runs), "chains": sum(
                fn == "fp-chain" for fn, _ in self.runs.values()),
                "workflows": sum(fn == "fp-dag" for fn, _ in self.runs.values()),
                "task_runs": len(tasks), "by_outcome": dict(outcome),
                "wrong_output": wrong[:20], "stuck": stuck[:20], "lost": lost[:20],
                "unexpected": extra[:20], "api_retries": self.tl.api_retries,
                "submit_errors": self.tl.submit_errors[:10]},
            "faults": {"injected": dict(Counter(f["kind"] for f in faults)),
                       "replica_kills": len(self.tl.kills),
                       "replica_restarts": len(self.tl.restarts),
                       "kills_connections_to_app": [None if ports is None else len(ports)
                                                    for _, _, ports in self.tl.kills],
                       "pg_restarts": len(self.tl.pg),
                       "pg_outage_s": [round(ready - stop, 1)
                                       for stop, _, ready in self.tl.pg]},
            "steps": {"executions": len(effects), "distinct": len(by_step),
                      "expected": len(expected_steps),
                      "re_executions": reexec, "re_executions_by_cause": dict(causes),
                      "faulted_calls_that_ran_steps": len(stepped & set(faulted)),
                      "runs_with_re_executions": len(runs_reexec),
                      "most_re_executions_in_one_run": max(runs_reexec.values(),
                                                           default=0),
                      "unexplained": unexplained[:20], "never_ran": never_ran[:20],
                      "duplicates_in_memo": dup_memo[:20]},
            "cron": cron,
        }


def parse(argv: list[str] | None = None) -> Params:
    d = Params()
    ap = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=d.runs, help="runs of the 5-step task")
    ap.add_argument("--workflows", type=int, default=d.workflows, help="DAG workflow runs")
    ap.add_argument("--duration", type=float, default=d.duration,
                    help="seconds of faults (runs are started over the first 70%%)")
    ap.add_argument("--replicas", type=int, default=d.replicas)
    ap.add_argument("--kill-every", type=float, default=d.kill_every,
                    help="mean seconds between replica kills")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--p-error", type=float, default=d.p_error,
                    help="odds of a 500 per call")
    ap.add_argument("--p-hang", type=float, default=d.p_hang,
                    help="odds of a hang past the call timeout per call")
    ap.add_argument("--p-drop", type=float, default=d.p_drop,
                    help="odds of a dropped connection per call")
    ap.add_argument("--no-pg-restart", dest="pg_restart", action="store_false")
    ap.add_argument("--settle", type=float, default=d.settle,
                    help="seconds to wait for the runs to end after the faults")
    ap.add_argument("--dir", type=Path, default=None,
                    help="the cluster's folder, new (kept: logs, effects, faults)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    a = ap.parse_args(argv)
    if a.replicas < 2:
        ap.error("--replicas: at least 2 (one is always up)")
    return Params(**vars(a))


def main(argv: list[str] | None = None) -> int:
    params = parse(argv)
    # SIGTERM as Ctrl-C: the run is cancelled, and the cluster stopped (``go``'s finally)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        summary = asyncio.run(Harness(params).go())
    except KeyboardInterrupt:
        print("python -m bench.faults: interrupted; the cluster is stopped", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
