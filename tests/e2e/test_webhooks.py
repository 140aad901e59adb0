"""Webhook deliveries against a live orchestrator: a signed GitHub push starts the run
its event triggers, a redelivery starts nothing new, and the delivery is answered before
the run starts (its latency is printed: docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

from tests.e2e.conftest import Stack
from tests.support import procs
from tests.support.webhooks import GITHUB_PUSH, github_headers


async def test_github_push_starts_its_run_once(stack: Stack, rest: httpx.AsyncClient) -> None:
    r = await rest.post("/webhooks", json={
        "kind": "github", "secret": "e2e", "event": {"source": "constant",
                                                     "key": "test.trigger"}})
    assert r.status_code == 201, r.text
    src = r.json()
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers("e2e", body, "e2e-delivery-1")
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as hooks:  # no API key
        first = await hooks.post(src["path"], content=body, headers=headers)
        again = await hooks.post(src["path"], content=body, headers=headers)
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert first.json() == {"id": f"{src['id']}:e2e-delivery-1", "duplicate": False}
    assert again.json()["duplicate"] is True
    for _ in range(200):
        runs = (await rest.get("/runs", params={"function": "triggered"})).json()["runs"]
        mine = [x for x in runs if x["status"] == "completed"]
        if mine:
            break
        await asyncio.sleep(0.05)
    done = [(await rest.get(f"/runs/{x['id']}")).json() for x in runs]
    started = [x for x in done if x["output"] and x["output"]["data"] == GITHUB_PUSH]
    assert len(started) == 1, done  # the redelivery started nothing


async def test_delivery_latency(stack: Stack, rest: httpx.AsyncClient) -> None:
    """Signed GitHub deliveries of a push (421 bytes), one at a time on a kept-alive connection,
    each stored as an event that triggers a run: the answer does not wait for the run.
    Alternating with the same event sent to ``POST /api/v1/events``, for comparison."""
    src = (await rest.post("/webhooks", json={"kind": "github", "secret": "lat",
                                             "event": {"source": "constant",
                                                       "key": "test.trigger"}})).json()
    body = json.dumps(GITHUB_PUSH).encode()
    hook_times: list[float] = []
    event_times: list[float] = []
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as hooks:
        for i in range(200):
            headers = github_headers("lat", body, f"lat-{i}")
            t0 = time.perf_counter()
            r = await hooks.post(src["path"], content=body, headers=headers)
            hook_times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            r = await rest.post("/events", json={"name": "test.trigger", "id": f"ev-{i}",
                                                 "data": GITHUB_PUSH})
            event_times.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text
    for what, times in (("webhook delivery", hook_times), ("POST /events", event_times)):
        times.sort()
        p50, p99 = statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000
        print(f"\n{what} latency over 200: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert statistics.median(hook_times) < 0.1  # a sanity bound only; the figures are
    # the output (docs/benchmarks.md)


def cli(stack: Stack, *args: str, key: str = procs.API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DURABLE_ORCHESTRATOR_URL": stack.base, "DURABLE_API_KEY": key,
           "PYTHONPATH": str(procs.ROOT)}
    return subprocess.run([sys.executable, "-m", "orchestrator", "webhooks", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_cli_manages_sources_through_the_rest_api(stack: Stack) -> None:
    made = cli(stack, "create", "--kind", "generic", "--secret", "s", "--event-field",
               "meta.event", "--event-prefix", "shop.", "--id-header", "X-Delivery",
               "--sig-header", "X-Shop-Hmac", "--algorithm", "sha512")
    assert made.returncode == 0, made.stderr
    src = json.loads(made.stdout)
    assert src["secret"] == "s" and src["event"] == {"source": "field", "key": "meta.event",
                                                     "prefix": "shop."}
    assert src["delivery_id"]["key"] == "X-Delivery"
    assert src["signature"]["header"] == "X-Shop-Hmac"
    assert src["signature"]["algorithm"] == "sha512"
    listed = json.loads(cli(stack, "list").stdout)["webhooks"]
    assert src["id"] in [s["id"] for s in listed]
    assert json.loads(cli(stack, "get", src["id"]).stdout)["id"] == src["id"]
    rotated = json.loads(cli(stack, "rotate", src["id"], "--grace", "0").stdout)
    assert rotated["secret"] not in ("s", None) and rotated["previous_secret_until"] is None
    assert cli(stack, "delete", src["id"]).returncode == 0
    gone = cli(stack, "get", src["id"])
    assert gone.returncode == 1 and "404 not_found" in gone.stderr
    bad = cli(stack, "create", "--kind", "generic")  # no event rule
    assert bad.returncode == 1 and "(field event)" in bad.stderr
    unauthorized = cli(stack, "list", key="wrong")
    assert unauthorized.returncode == 1 and "401 unauthorized" in unauthorized.stderr
    warned = cli(stack, "create", "--kind", "none", "--event-constant", "ping")
    assert warned.returncode == 0 and "unauthenticated" in warned.stderr
