"""OpenTelemetry traces end to end: an orchestrator with ``DURABLE_OTEL=true`` and a
TracerProvider set globally (as opentelemetry-distro would), an app with spans of its
own, each exporting to a file; one run of two steps around a sleep is one trace."""

from __future__ import annotations

import asyncio
import calendar
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from orchestrator.engine.tracing import root_span_id_of
from tests.support import procs


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _ns(stamp: str) -> int:
    """An ISO-8601 time of the REST API (to the microsecond) in nanoseconds."""
    t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (calendar.timegm(t.utctimetuple()) * 1_000_000 + t.microsecond) * 1000


def _close(ns: int, stamp: str) -> bool:
    """``ns`` is the time ``stamp`` shows (both rounded to the microsecond)."""
    return abs(ns - _ns(stamp)) <= 1000


async def test_a_run_is_one_trace_with_the_apps_spans_in_it(tmp_path: Path) -> None:
    orch_spans, app_spans, headers = (tmp_path / "orch.jsonl", tmp_path / "app.jsonl",
                                      tmp_path / "traceparents")
    app, app_url = procs.app(tmp_path, "tests.apps.traced_app:app", extra_env={
        "TRACED_SPANS": str(app_spans), "TRACED_HEADERS": str(headers)})
    orch, base = procs.orchestrator(tmp_path, extra_env={"DURABLE_OTEL": "true"})
    assert orch.args[1:3] == ["-m", "orchestrator"]
    orch.args[1:3] = ["-m", "tests.support.otel_boot", str(orch_spans)]
    assert orch.args[0] == sys.executable
    app.start()
    orch.start()
    try:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, headers={
                "authorization": f"Bearer {procs.API_KEY}"}) as rest:
            r = await rest.post("/apps", json={"url": app_url})
            assert r.status_code == 200, r.text
            r = await rest.post("/runs", json={"function": "traced", "input": 3})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            run = (await rest.get(f"/runs/{rid}/wait", params={"timeout": 20})).json()
            assert run["status"] == "completed" and run["output"] == 7, run
            for _ in range(100):  # the run span is written once its end has committed
                if any(s["name"] == "run traced" for s in _spans(orch_spans)):
                    break
                await asyncio.sleep(0.05)
    finally:
        orch.stop()
        app.stop()

    root = f"{root_span_id_of(rid):016x}"
    mine = [s for s in _spans(orch_spans) if s["attributes"].get("durable.run_id") == rid]
    assert {s["trace_id"] for s in mine} == {rid}  # the run id's bits are its trace id
    calls = [s for s in mine if s["name"] == "call traced"]
    steps = {s["name"]: s for s in mine if s["name"].startswith("step ")}
    [run_span] = [s for s in mine if s["name"] == "run traced"]
    # a call before the sleep, one after it; every span but the run's is its child
    assert len(calls) == 2
    for c in calls:
        assert c["kind"] == "CLIENT" and c["parent_id"] == root
        assert c["attributes"]["http.status_code"] == 200
        assert c["attributes"]["durable.app"] == "traced"
        assert c["attributes"]["durable.call_id"].startswith(f"{rid}:")
    assert [c["attributes"]["durable.outcome"] for c in calls] == ["yield", "complete"]
    assert set(steps) == {"step first", "step second"}
    for s in steps.values():
        assert s["parent_id"] == root and s["attributes"]["durable.status"] == "completed"
        assert s["start"] <= s["end"]
    recorded = {st["id"]: st for st in run["steps"]}
    assert _close(steps["step first"]["end"], recorded["first"]["ended_at"])
    # the run span: the derived ids, emitted at the end, with the run's own times
    assert run_span["span_id"] == root and run_span["parent_id"] is None
    assert run_span["status"] == "UNSET" and run_span["attributes"]["durable.status"] == (
        "completed")
    assert _close(run_span["start"], run["created_at"])
    assert _close(run_span["end"], run["ended_at"])
    assert run_span["start"] < calls[0]["start"] and calls[1]["end"] <= run_span["end"]
    # the app got each call's traceparent, and its own span joined the trace
    sent = [line for line in headers.read_text().splitlines() if line != "-"]
    assert sent == [f"00-{rid}-{c['span_id']}-01" for c in calls]
    [work] = [s for s in _spans(app_spans) if s["name"] == "app work"]
    assert work["service"] == "traced-app" and work["trace_id"] == rid
    assert work["parent_id"] == calls[1]["span_id"] and work["attributes"] == {"app.n": 6}
