"""JSON logs through the real CLI: with ``DURABLE_LOG_FORMAT=json`` every line the
orchestrator writes to stderr, uvicorn's own included, is one JSON object, and the lines
about a run name it (run, call, app, function); a bad format is refused at start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk import Client
from tests.e2e.test_settings_cli import _refused
from tests.support import procs


def _orchestrator(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``orchestrator dev`` at info level, its stdout and stderr in two files."""
    args = [sys.executable, "-m", "orchestrator", "dev", "--port", str(port),
            "--database-url", f"sqlite:///{tmp / 'orchestrator.db'}", "--log-level", "info",
            "--lease-ttl", "2"]
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")},
            "PYTHONPATH": str(procs.ROOT), "DURABLE_SIGNING_KEY": procs.SIGNING_KEY,
            "DURABLE_API_KEY": procs.API_KEY, "DURABLE_DELIVERY_BACKOFF_MAX": "1", **env}
    with open(tmp / "stdout.log", "wb") as out, open(tmp / "stderr.log", "wb") as err:
        p = subprocess.Popen(args, env=full, cwd=procs.ROOT, stdout=out, stderr=err)
    procs.wait_http(f"http://127.0.0.1:{port}/readyz", p)
    return p


def _json_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return out


async def test_json_logs_name_the_run_a_line_is_about(tmp_path: Path) -> None:
    port = procs.free_port()
    app_port = procs.free_port()
    env = {"TESTAPP_EFFECTS": str(tmp_path / "effects.log"), "TESTAPP_FLAGS": str(tmp_path)}
    good, app_url = procs.app(tmp_path, port=app_port, extra_env=env)
    # a bad deploy (as in test_misconfigured): the orchestrator's key accepted, answers
    # signed with another, so the run's call fails once and the engine says so
    bad, _ = procs.app(tmp_path, port=app_port, extra_env={
        **env, "DURABLE_SIGNING_KEY": "not-the-key-0123456789",
        "DURABLE_SIGNING_KEY_FALLBACK": procs.SIGNING_KEY})
    good.start()
    orch = _orchestrator(tmp_path, port, DURABLE_LOG_FORMAT="json")
    base = f"http://127.0.0.1:{port}"
    client = Client(orchestrator_url=base, api_key=procs.API_KEY,
                    signing_key=procs.SIGNING_KEY)
    try:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, headers={
                "authorization": f"Bearer {procs.API_KEY}"}) as rest:
            r = await rest.post("/apps", json={"url": app_url})
            assert r.status_code == 200, r.text
            app_id = r.json()["id"]
            good.stop()
            bad.start()
            h = await client.run_no_wait("effects", 1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if (await rest.get("/apps")).json()["apps"][0]["status"] == "misconfigured":
                    break
                await asyncio.sleep(0.1)
            bad.stop()
            good.start()  # fixed: the probe verifies, the run goes on and completes
            done = await client.wait(h.id, timeout=30)
            assert done["status"] == "completed", done
            # a run cancelled while its call (a 1.5 s step) is in flight: its answer,
            # when it comes, is discarded by the reducer, which says so
            slow = await client.run_no_wait("slow-step")
            for _ in range(200):
                if (await client.get_run(slow.id))["status"] == "running":
                    break
                await asyncio.sleep(0.05)
            r = await rest.post(f"/runs/{slow.id}/cancel", json={})
            assert r.status_code == 200, r.text
            for _ in range(150):
                if "its lease was lost" in (tmp_path / "stderr.log").read_text():
                    break
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()
        orch.terminate()
        orch.wait(15)
        good.stop()
        bad.stop()
    lines = _json_lines(tmp_path / "stderr.log")  # every line, or it fails here
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line
        assert line["ts"].endswith("Z") and line["level"] in ("INFO", "WARNING"), line
    # uvicorn's own lines went out as JSON too
    assert any(x["logger"].startswith("uvicorn") and "Uvicorn running on" in x["message"]
               for x in lines), lines
    discarded = [x for x in lines if x["message"].startswith("discarded an answer to ")]
    assert len(discarded) == 1, lines
    d = discarded[0]
    assert d["logger"] == "orchestrator.invoker" and d["level"] == "WARNING"
    assert (d["run_id"], d["app"], d["function"]) == (h.id, app_id, "effects"), d
    assert d["call_id"].startswith(h.id + ":") and d["call_id"] in d["message"]
    marked = [x for x in lines if x["message"].startswith(f"app at {app_url} is misconf")]
    assert marked and marked[0]["call_id"] == d["call_id"], lines
    assert any(x["message"].startswith(f"app {app_id} at {app_url} verifies again")
               and x["app"] == app_id for x in lines), lines
    assert any(x["message"].startswith(f"registered app {app_id} ") and x["app"] == app_id
               for x in lines), lines
    late = [x for x in lines if x["message"].startswith("discarded the answer to ")]
    assert len(late) == 1, lines
    assert late[0]["logger"] == "orchestrator.reducer" and late[0]["level"] == "INFO"
    assert (late[0]["run_id"], late[0]["app"], late[0]["function"]) == (
        slow.id, app_id, "slow-step"), late
    assert late[0]["call_id"] == f"{slow.id}:1"
    stdout = (tmp_path / "stdout.log").read_text()
    assert f"listening on {base}" in stdout  # the banner is for people: stdout, as text


def test_dev_s_generated_key_notice_is_json_too(tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    """``orchestrator dev`` on a database without a keys file beside it (PostgreSQL)
    generates a signing key and says so, before logging starts: as JSON in json mode."""
    port = procs.free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")},
           "PYTHONPATH": str(procs.ROOT), "DURABLE_LOG_FORMAT": "json"}
    err_path = tmp_path / "stderr.log"
    with open(tmp_path / "stdout.log", "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "dev", "--port", str(port),
             "--database-url", request.getfixturevalue("pg").create_db()],
            env=env, cwd=tmp_path, stdout=out, stderr=err)
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/readyz", p)
    finally:
        p.terminate()
        p.wait(15)
    lines = _json_lines(err_path)
    assert lines[0]["level"] == "WARNING" and lines[0]["message"].startswith(
        "no DURABLE_SIGNING_KEY set: generated one for this session"), lines
    assert any("Uvicorn running on" in x["message"] for x in lines), lines


def test_a_bad_log_format_is_refused_at_start(tmp_path: Path) -> None:
    out = _refused(tmp_path, "dev", "--database-url", f"sqlite:///{tmp_path}/x.db",
                   DURABLE_LOG_FORMAT="xml")
    assert out == ("orchestrator: DURABLE_LOG_FORMAT: input should be 'text' or 'json', "
                   "got 'xml'")
    assert not (tmp_path / "x.db").exists()


def test_text_is_the_default_and_trace_a_level(tmp_path: Path) -> None:
    """Text by default, as before; ``--log-level trace`` (uvicorn's) is known before
    uvicorn names it."""
    code = ("import logging, sys; from orchestrator import logs; "
            "logs.configure(sys.argv[1], sys.argv[2]); "
            "logging.getLogger('orchestrator.x').log(5, 'deep %s', 'détail', "
            "extra={'run_id': 'r1'})")
    env = {**os.environ, "PYTHONPATH": str(procs.ROOT)}
    for fmt in ("text", "json"):
        p = subprocess.run([sys.executable, "-c", code, "trace", fmt], env=env,
                           capture_output=True, text=True, timeout=30, check=True)
        line, = p.stderr.splitlines()
        if fmt == "text":
            assert line.endswith(" TRACE orchestrator.x: deep détail"), line
        else:
            out = json.loads(line)
            assert (out["level"], out["message"], out["run_id"]) == (
                "TRACE", "deep détail", "r1")
