"""The fault-injection harness (``python -m bench.faults``), small and bounded: 40 task
runs and 8 workflows on 3 replicas and PostgreSQL, ~20 s of chaos (replicas SIGKILLed
and restarted, calls answered 500, hung past the call timeout or dropped, PostgreSQL
crashed and restarted once), then each point of its summary."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from bench.faults import Timeline, attribute
from bench.faults_app import FaultInjector
from tests.support.procs import ROOT, free_port

RUNS, WORKFLOWS = 40, 8


@pytest.mark.timeout(300)
def test_nothing_is_lost_under_faults(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    cmd = [sys.executable, "-m", "bench.faults", "--runs", str(RUNS), "--workflows",
           str(WORKFLOWS), "--duration", "20", "--replicas", "3", "--kill-every", "4",
           "--seed", "7", "--p-error", "0.04", "--p-hang", "0.02", "--p-drop", "0.04",
           "--settle", "90", "--dir", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=270)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the harness stops its cluster on SIGTERM
            out, err = proc.communicate(timeout=25)
            pytest.fail(f"the harness did not finish in 270 s:\n{err[-3000:]}")
    assert out.strip(), err[-3000:]
    s = json.loads(out)
    print(json.dumps({k: s[k] for k in ("runs", "faults", "steps", "cron", "duration_s")}))
    # the faults happened, of every kind
    f = s["faults"]
    assert {"error", "hang", "drop"} <= set(f["injected"]), f
    assert f["replica_kills"] >= 2 and f["replica_restarts"] == f["replica_kills"], f
    assert f["pg_restarts"] == 1, f
    # every run completed, with the right output; none lost, none stuck
    r = s["runs"]
    assert r["started"] == RUNS + WORKFLOWS and not r["submit_errors"], r
    assert r["by_outcome"] == {"completed": RUNS + WORKFLOWS}, r
    assert r["wrong_output"] == [] and r["lost"] == [] and r["stuck"] == [], r
    assert r["unexpected"] == [], r  # no run started twice by a retried request
    assert r["task_runs"] == 5 * WORKFLOWS, r
    # no step recorded twice; every step's side effect ran
    st = s["steps"]
    assert st["duplicates_in_memo"] == [] and st["never_ran"] == [], st
    assert st["distinct"] == st["expected"] == 5 * RUNS + 6 * WORKFLOWS + s["cron"]["fired"]
    # re-executions only for calls a fault hit in flight, and counted
    assert st["unexplained"] == [], st
    assert st["re_executions"] == st["executions"] - st["distinct"]
    assert st["re_executions"] == sum(st["re_executions_by_cause"].values()) > 0, st
    by_call = sum(n for k, n in st["re_executions_by_cause"].items()
                  if k in ("error", "hang", "drop"))
    # a faulted call runs at most two new steps (s1 and s2 of the task share a call)
    assert by_call <= 2 * st["faulted_calls_that_ran_steps"], st
    # cron: each tick from the first fire to the last fired exactly once (the ticks of
    # the PostgreSQL outage collapse into one fire, by design)
    c = s["cron"]
    assert c["duplicated"] == 0 and c["gaps"] == [] and c["not_completed"] == 0, c
    assert c["fired"] >= 15 and c["expected"] == c["fired"] + c["gaps_in_pg_outage"], c
    assert c["paused"] and c["deleted"], c
    assert s["ok"] and s["failed"] == [] and proc.returncode == 0, s["failed"]
    # the logs and side-effect files stay in the folder given
    assert {"effects.jsonl", "faults.jsonl", "replica-0.log", "app.log"} <= {
        p.name for p in folder.iterdir()}


def test_re_executions_are_attributed_to_the_fault_in_flight() -> None:
    tl = Timeline(kills=[(1, 1000.0, frozenset({40001}))], pg=[(2000.0, 2001.0, 2003.0)])
    faulted = {"r:3": "drop"}
    assert attribute(5000.0, "r:3", faulted, tl, call_timeout=2.0) == "drop"
    # a call in flight at the kill: begun at most the call timeout before it
    assert attribute(997.5, "r:1", faulted, tl, call_timeout=2.0) == "replica-kill"
    assert attribute(1000.9, "r:1", faulted, tl, call_timeout=2.0) == "replica-kill"
    assert attribute(996.0, "r:1", faulted, tl, call_timeout=2.0) is None
    # ... and sent over one of the killed replica's connections, when those are known
    assert attribute(999.0, "r:1", faulted, tl, 2.0, peer=40001) == "replica-kill"
    assert attribute(999.0, "r:1", faulted, tl, 2.0, peer=40002) is None
    # the PostgreSQL outage: from before the stop until every replica is ready
    assert attribute(1997.5, "r:2", faulted, tl, call_timeout=2.0) == "pg-restart"
    assert attribute(2003.9, "r:2", faulted, tl, call_timeout=2.0) == "pg-restart"
    assert attribute(2004.5, "r:2", faulted, tl, call_timeout=2.0) is None
    assert attribute(5000.0, None, faulted, tl, call_timeout=2.0) is None


def test_the_injector_answers_500_hangs_and_drops_after_running_the_call(
        tmp_path: Path) -> None:
    ran: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        ran.append(json.loads(body)["call_id"] if body else scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answer"})

    log = tmp_path / "faults.jsonl"
    injector = FaultInjector(inner, hang_s=1.5, log=str(log))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(injector, host="127.0.0.1", port=port,
                                           log_level="critical", http="httptools"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)

        def invoke(call: str, timeout: float = 5.0) -> httpx.Response:
            return httpx.post(f"http://127.0.0.1:{port}/api/durable", timeout=timeout,
                              json={"kind": "invoke", "call_id": call})

        assert invoke("r:1").text == "answer"  # no odds: passed through
        injector.p_error = 1.0
        r = invoke("r:2")
        assert r.status_code == 500 and r.json()["error"]["code"] == "injected"
        injector.p_error, injector.p_hang = 0.0, 1.0
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            invoke("r:3", timeout=1.0)  # past the caller's timeout
        assert time.monotonic() - t0 >= 1.0
        injector.p_hang, injector.p_drop = 0.0, 1.0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            body = b'{"kind": "invoke", "call_id": "r:4"}'
            s.sendall(b"POST /api/durable HTTP/1.1\r\nhost: x\r\ncontent-type: "
                      b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            try:
                got = s.recv(1024)
            except ConnectionResetError:
                got = b""
            assert got == b""  # aborted: not a byte of an answer
        # introspection and other paths are never faulted
        assert httpx.get(f"http://127.0.0.1:{port}/api/durable", timeout=5).text == "answer"
        # every faulted call ran first (its steps' side effects happened), then was logged
        assert ran == ["r:1", "r:2", "r:3", "r:4", "/api/durable"]
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(f["call"], f["kind"]) for f in logged] == [
            ("r:2", "error"), ("r:3", "hang"), ("r:4", "drop")]
    finally:
        server.should_exit = True
        thread.join(10)
