"""The REST contract, against a live orchestrator on each database: every operation of
the route table is called (with valid requests, and its main error cases), and every real
answer's status code is one the generated OpenAPI document lists for it and its body
validates against the schema the document gives for that status."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from orchestrator.api.openapi import document
from orchestrator.api.route_table import OPERATIONS
from tests.e2e.conftest import Stack
from tests.support import procs

OPENAPI = document()

COMPONENTS = {"components": OPENAPI["components"]}


class Contract:
    """An HTTP client that checks each answer against the document, and records which
    (operation, status) it saw."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.seen: set[tuple[str, str, int]] = set()

    async def call(self, method: str, template: str, status: int, *, path: str | None = None,
                   **kw: Any) -> Any:
        r = await self.http.request(method, path or template, **kw)
        assert r.status_code == status, (method, path or template, r.status_code, r.text)
        op = OPENAPI["paths"][template][method.lower()]
        answer = op["responses"].get(str(status))
        assert answer is not None, f"{method} {template} answered {status}, not documented"
        content = answer.get("content")
        if content is None:
            assert not r.content, r.text
        elif "text/plain" in content:
            assert r.headers["content-type"].startswith("text/plain"), r.headers
            self.seen.add((method.lower(), template, status))
            return r.text
        else:
            assert r.headers["content-type"].startswith("application/json")
            schema = {**content["application/json"]["schema"], **COMPONENTS}
            validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
            errors = [e.message for e in validator.iter_errors(r.json())]
            assert not errors, (method, template, status, errors, r.text[:2000])
        self.seen.add((method.lower(), template, status))
        return r.json() if r.content else None


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Contract]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=70, headers={
            "authorization": f"Bearer {procs.API_KEY}"}) as http:
        yield Contract(http)


RUNS = "/api/v1/runs"
ONE = "/api/v1/runs/{run_id}"


async def _runs(api: Contract) -> dict[str, str]:
    """Runs in every state the API shows: completed with steps, failed, with children,
    waiting (sleeping), cancelled, replayed (with a history)."""
    c = api.call
    done = await c("POST", RUNS, 201, params={"wait": 30},
                   json={"function": "chain", "input": 3, "idempotency_key": "k1"})
    assert done["status"] == "completed" and done["steps"], done
    again = await c("POST", RUNS, 201, json={"function": "chain", "input": 3,
                                             "idempotency_key": "k1"})
    assert again == {"id": done["id"]}
    failed = await c("POST", RUNS, 201, params={"wait": 30}, json={"function": "always-fails"})
    assert failed["status"] == "failed" and failed["error"], failed
    parent = await c("POST", RUNS, 201, params={"wait": 30},
                     json={"function": "fan-out", "input": 3})
    assert len(parent["children"]) == 3, parent
    sleeping = await c("POST", RUNS, 201, json={"function": "sleeper", "input": 600})
    for _ in range(100):
        run = await c("GET", ONE, 200, path=f"{RUNS}/{sleeping['id']}")
        if run["waiting"]:
            break
        await asyncio.sleep(0.05)
    assert run["waiting"]["kind"] == "sleep", run
    return {"done": done["id"], "failed": failed["id"], "parent": parent["id"],
            "sleeping": sleeping["id"]}


async def test_every_route_answers_as_the_document_says(stack: Stack, api: Contract) -> None:
    c = api.call
    # -- service, apps, functions
    await c("GET", "/healthz", 200)
    await c("GET", "/readyz", 200)
    await c("GET", "/api/v1/openapi.json", 200)
    assert "durable_runs_started" in await c("GET", "/metrics", 200)
    await c("GET", "/metrics", 401, headers={"authorization": "Bearer nope"})
    await c("POST", "/api/v1/apps", 200, json={"url": stack.app_url})
    await c("POST", "/api/v1/apps", 422, json={"url": "ftp://x"})
    await c("POST", "/api/v1/apps", 413, content=b"x" * (5 * 1024 * 1024),
            headers={"content-type": "application/json"})
    await c("GET", "/api/v1/apps", 200)
    await c("GET", "/api/v1/functions", 200)
    fn = "/api/v1/functions/{name}"
    await c("GET", fn, 200, path="/api/v1/functions/chain")
    await c("GET", fn, 404, path="/api/v1/functions/no-such-function")
    await c("GET", "/api/v1/apps", 401, headers={"authorization": "Bearer nope"})
    # -- an app's time budget and keys (rotated away and back: no call is in flight yet)
    app, keys = "/api/v1/apps/{app_id}", "/api/v1/apps/{app_id}/keys"
    patched = await c("PATCH", app, 200, path="/api/v1/apps/testapp", json={"budget_ms": 900})
    assert patched["budget_ms"] == 900 and not patched["own_key"], patched
    await c("PATCH", app, 200, path="/api/v1/apps/testapp", json={"budget_ms": None})
    await c("PATCH", app, 422, path="/api/v1/apps/testapp", json={"budget_ms": 10**9})
    await c("PATCH", app, 404, path="/api/v1/apps/nope", json={"budget_ms": 1})
    await c("POST", keys, 409, path="/api/v1/apps/testapp/keys",
            json={"key": procs.SIGNING_KEY})
    await c("POST", keys, 404, path="/api/v1/apps/nope/keys")
    await c("POST", keys, 422, path="/api/v1/apps/testapp/keys", json={"key": "short"})
    new = await c("POST", keys, 201, path="/api/v1/apps/testapp/keys")
    assert len(new["signing_key"]) >= 40, new
    await c("POST", keys, 201, path="/api/v1/apps/testapp/keys",
            json={"key": procs.SIGNING_KEY})
    await c("DELETE", f"{keys}/fallback", 204, path="/api/v1/apps/testapp/keys/fallback")
    await c("DELETE", f"{keys}/fallback", 404, path="/api/v1/apps/nope/keys/fallback")
    shown = next(x for x in (await c("GET", "/api/v1/apps", 200))["apps"]
                 if x["id"] == "testapp")
    assert shown["own_key"] and not shown["fallback_key"], shown
    assert procs.SIGNING_KEY not in str(shown) and new["signing_key"] not in str(shown)
    # -- events
    await c("POST", "/api/v1/events", 202, json={"name": "test.trigger", "data": {"a": 1}})
    out = await c("POST", "/api/v1/events", 202, json=[{"name": "x.y", "id": "e1"},
                                                       {"name": "x.y", "id": "e1"}])
    assert out["duplicate"] == [False, True]
    await c("POST", "/api/v1/events", 422, json={"name": "bad name"})
    await c("POST", "/api/v1/events", 422, json=[])
    events = await c("GET", "/api/v1/events", 200, params={"limit": 1})
    assert events["next_cursor"], events
    await c("GET", "/api/v1/events", 200, params={"cursor": events["next_cursor"],
                                                  "name": "x.y"})
    await c("GET", "/api/v1/events", 400, params={"cursor": "not-a-cursor"})
    await c("GET", "/api/v1/events", 422, params={"limit": 0})
    await c("GET", "/api/v1/events/{event_id}", 200, path="/api/v1/events/e1")
    await c("GET", "/api/v1/events/{event_id}", 404, path="/api/v1/events/no-such-event")
    # -- runs
    ids = await _runs(api)
    await c("POST", RUNS, 404, json={"function": "no-such-function"})
    await c("POST", RUNS, 422, json={"function": "chain", "nope": 1})
    page = await c("GET", RUNS, 200, params={"limit": 2})
    assert page["next_cursor"]
    await c("GET", RUNS, 200, params={"cursor": page["next_cursor"], "status": "completed",
                                      "function": "chain"})
    await c("GET", RUNS, 400, params={"cursor": "not-a-cursor"})
    await c("GET", RUNS, 422, params={"status": "exploded"})
    since = await c("GET", RUNS, 200, params={"since": 0, "until": "9999-01-01T00:00:00Z"})
    assert since["runs"], since
    await c("GET", RUNS, 200, params={"event_id": "e1"})
    await c("GET", RUNS, 404, params={"event_id": "no-such-event"})
    await c("GET", RUNS, 422, params={"since": "yesterday"})
    counts = await c("GET", f"{RUNS}/counts", 200, params={"function": "chain", "since": 0})
    assert counts["completed"] >= 1 and counts["total"] >= counts["completed"], counts
    await c("GET", f"{RUNS}/counts", 422, params={"until": "soon"})
    for rid in ids.values():
        await c("GET", ONE, 200, path=f"{RUNS}/{rid}")
    await c("GET", ONE, 404, path=f"{RUNS}/no-such-run")
    await c("GET", f"{ONE}/wait", 200, path=f"{RUNS}/{ids['done']}/wait",
            params={"timeout": 1})
    await c("GET", f"{ONE}/wait", 404, path=f"{RUNS}/nope/wait")
    await c("GET", f"{ONE}/wait", 422, path=f"{RUNS}/{ids['done']}/wait",
            params={"timeout": 99})
    await c("POST", f"{RUNS}/bulk", 201, json={"function": "chain", "inputs": [1, 2]})
    await c("POST", f"{RUNS}/bulk", 201, json={"runs": [{"function": "chain", "input": 1}]})
    await c("POST", f"{RUNS}/bulk", 404, json={"function": "no-such-function", "inputs": [1]})
    await c("POST", f"{RUNS}/bulk", 422, json={"runs": []})
    # -- control
    await c("POST", f"{ONE}/cancel", 200, path=f"{RUNS}/{ids['sleeping']}/cancel",
            json={"reason": "contract"})
    await c("POST", f"{ONE}/cancel", 409, path=f"{RUNS}/{ids['sleeping']}/cancel")
    await c("POST", f"{ONE}/cancel", 404, path=f"{RUNS}/nope/cancel")
    await c("POST", f"{ONE}/replay", 200, path=f"{RUNS}/{ids['failed']}/replay")
    await c("POST", f"{ONE}/replay", 422, path=f"{RUNS}/{ids['done']}/replay",
            json={"input": 1})
    await c("POST", f"{ONE}/replay", 409, path=f"{RUNS}/{ids['done']}/replay")
    await c("POST", f"{ONE}/replay", 404, path=f"{RUNS}/nope/replay")
    replayed = await c("GET", f"{ONE}/wait", 200, path=f"{RUNS}/{ids['failed']}/wait",
                       params={"timeout": 30})
    assert replayed["history"], replayed
    await c("POST", f"{RUNS}/cancel", 200, json={"function": "sleeper"})
    await c("POST", f"{RUNS}/cancel", 422, json={})
    await c("POST", f"{RUNS}/replay", 200, json={"function": "always-fails", "limit": 5})
    await c("POST", f"{RUNS}/replay", 422, json={"status": "failed", "from": "middle"})
    # -- schedules
    sched = await c("POST", "/api/v1/schedules", 201,
                    json={"function": "chain", "at": time.time() + 3600, "input": 1})
    await c("POST", "/api/v1/schedules", 422, json={"function": "chain", "at": 0})
    await c("POST", "/api/v1/schedules", 404,
            json={"function": "no-such", "at": "2999-01-01T00:00:00Z"})
    await c("GET", "/api/v1/schedules", 200, params={"function": "chain"})
    await c("GET", "/api/v1/schedules", 422, params={"function": "a\x00"})
    one = "/api/v1/schedules/{sid}"
    await c("GET", one, 200, path=f"/api/v1/schedules/{sched['id']}")
    await c("DELETE", one, 204, path=f"/api/v1/schedules/{sched['id']}")
    await c("DELETE", one, 404, path=f"/api/v1/schedules/{sched['id']}")
    await c("GET", one, 404, path=f"/api/v1/schedules/{sched['id']}")
    # -- crons
    cron = await c("POST", "/api/v1/crons", 201, json={"function": "chain",
                                                       "expression": "0 0 * * *",
                                                       "timezone": "Europe/Paris"})
    await c("POST", "/api/v1/crons", 422, json={"function": "chain", "expression": "bad"})
    await c("POST", "/api/v1/crons", 404, json={"function": "no-such", "expression": "* * * * *"})
    await c("GET", "/api/v1/crons", 200)
    cid = "/api/v1/crons/{cid}"
    await c("GET", cid, 200, path=f"/api/v1/crons/{cron['id']}")
    await c("GET", cid, 404, path="/api/v1/crons/nope")
    assert (await c("POST", f"{cid}/pause", 200, path=f"/api/v1/crons/{cron['id']}/pause")
            )["paused"] is True
    await c("POST", f"{cid}/pause", 404, path="/api/v1/crons/nope/pause")
    assert (await c("POST", f"{cid}/resume", 200,
                    path=f"/api/v1/crons/{cron['id']}/resume"))["paused"] is False
    await c("POST", f"{cid}/resume", 404, path="/api/v1/crons/nope/resume")
    await c("DELETE", "/api/v1/crons/{cid}", 204, path=f"/api/v1/crons/{cron['id']}")
    await c("DELETE", "/api/v1/crons/{cid}", 404, path=f"/api/v1/crons/{cron['id']}")
    # -- API keys
    key = await c("POST", "/api/v1/keys", 201, json={"name": "contract", "scopes": ["read"]})
    await c("POST", "/api/v1/keys", 422, json={"name": "contract", "scopes": ["root"]})
    await c("GET", "/api/v1/keys", 200)
    await c("POST", "/api/v1/events", 403, json={"name": "x.y"},
            headers={"authorization": f"Bearer {key['key']}"})
    await c("DELETE", "/api/v1/keys/{key_id}", 204, path=f"/api/v1/keys/{key['id']}")
    await c("DELETE", "/api/v1/keys/{key_id}", 404, path="/api/v1/keys/no-such-key")
    # -- webhooks
    hooks, hook = "/api/v1/webhooks", "/api/v1/webhooks/{source_id}"
    src = await c("POST", hooks, 201, json={"kind": "generic", "secret": "k",
                                            "event": {"source": "constant", "key": "x.y"}})
    await c("POST", hooks, 422, json={"kind": "gitlab"})
    await c("GET", hooks, 200)
    await c("GET", hook, 200, path=f"{hooks}/{src['id']}")
    await c("POST", f"{hook}/secret", 200, path=f"{hooks}/{src['id']}/secret",
            json={"secret": "k2"})
    await c("POST", f"{hook}/secret", 404, path=f"{hooks}/nope/secret")
    body = b'{"a": 1}'
    sig = hmac.new(b"k2", body, hashlib.sha256).hexdigest()
    deliver = "/hooks/{source_id}"
    await c("POST", deliver, 200, path=src["path"], content=body,
            headers={"x-signature": sig, "content-type": "application/json"})
    await c("POST", deliver, 401, path=src["path"], content=body)
    await c("POST", deliver, 400, path=src["path"], content=b"{",
            headers={"x-signature": hmac.new(b"k2", b"{", hashlib.sha256).hexdigest()})
    await c("POST", deliver, 413, path=src["path"], content=b"x" * (300 * 1024))
    await c("DELETE", hook, 204, path=f"{hooks}/{src['id']}")
    await c("DELETE", hook, 404, path=f"{hooks}/{src['id']}")
    await c("GET", hook, 404, path=f"{hooks}/{src['id']}")
    await c("POST", deliver, 404, path=src["path"], content=body)

    success = {(op.method, op.path, min(op.responses)) for op in OPERATIONS}
    missing = sorted(success - api.seen)
    assert not missing, f"operations never called with success: {missing}"
